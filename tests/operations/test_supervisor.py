"""The restart policy of `loglog up`, driven with a fake clock and fake children: restart
after the backoff and never before, doubling then reset, a crash loop left down with one
line while the rest keeps running, a retry on request, metrics read from the same state."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from alerts.names import declared
from stack.metrics import METRICS, SupervisorCollector
from stack.processes import StackError, describe_exit
from stack.supervisor import DEFAULT_POLICY, RestartPolicy, Supervisor, Tracker, down_summary
from stack.types import BACKOFF, FAILED, RUNNING, STARTING


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class FakeChild:
    """A component whose death, readiness and start failures the test decides."""

    name: str
    starts: int = 0
    stops: int = 0
    ended: str | None = None
    is_ready: bool = True
    refuse_start: bool = False
    output: str = "    last line of this run"

    def start(self) -> None:
        if self.refuse_start:
            raise StackError("no such binary")
        self.starts += 1
        self.ended = None

    def exit_status(self) -> str | None:
        return self.ended

    def ready(self) -> bool:
        return self.is_ready

    def stop(self, grace: float = 10.0) -> None:
        self.stops += 1
        self.ended = "was killed by SIGTERM"

    def tail(self, lines: int = 15) -> str:
        return self.output

    def where(self) -> str:
        return f"fake {self.name}"


def _stack(
    policy: RestartPolicy = DEFAULT_POLICY, names: tuple[str, ...] = ("inference", "agent")
) -> tuple[Supervisor, FakeClock, dict[str, FakeChild], list[str]]:
    clock, lines = FakeClock(), []
    supervisor = Supervisor(
        lines.append, policy=policy, clock=clock, wall=clock, retry_hint="kill -USR1 7"
    )
    children = {name: FakeChild(name) for name in names}
    for name, child in children.items():
        supervisor.watch(child, start_timeout=60, alerting=name == "prometheus")
    return supervisor, clock, children, lines


def _state(supervisor: Supervisor, name: str) -> str:
    return next(s.state for s in supervisor.status() if s.name == name)


def _crash(supervisor: Supervisor, clock: FakeClock, child: FakeChild) -> None:
    """Kill ``child`` and let the supervisor bring it back (through its backoff)."""
    child.ended = "was killed by SIGKILL"
    supervisor.tick()
    while _state(supervisor, child.name) == BACKOFF:
        clock.advance(0.5)
        supervisor.tick()
    supervisor.tick()  # the readiness probe


def test_a_killed_child_is_restarted_after_its_backoff_and_the_rest_is_untouched():
    """The exit is reported with how it ended and what the child wrote since it started;
    the restart happens after the first delay, not before; the other child is never
    stopped or started again; the restart is counted and the line says it is back."""
    supervisor, clock, children, lines = _stack()
    inference, agent = children["inference"], children["agent"]
    inference.ended = "was killed by SIGKILL"
    supervisor.tick()
    assert _state(supervisor, "inference") == BACKOFF
    assert "inference was killed by SIGKILL (fake inference); restarting it in 1 s" in lines[-1]
    assert "last line of this run" in lines[-1]
    clock.advance(0.9)
    supervisor.tick()
    assert inference.starts == 0, "not before its delay"
    clock.advance(0.2)
    supervisor.tick()
    assert inference.starts == 1 and _state(supervisor, "inference") == STARTING
    supervisor.tick()
    assert _state(supervisor, "inference") == RUNNING
    assert "✓ inference is back" in lines[-1] and "1.1 s after it went down" in lines[-1]
    assert (agent.starts, agent.stops) == (0, 0)
    assert [(s.name, s.restarts, s.last_restart, s.up) for s in supervisor.status()] == [
        ("inference", 1, 1001.1, True),
        ("agent", 0, 0.0, True),
    ]


def test_the_delay_doubles_on_each_exit_in_a_row_and_resets_after_a_long_run():
    """1, 2, 4 s for exits in a row; after running ``reset_after_s`` the next exit waits
    the first delay again (Kubernetes' back-off reset)."""
    policy = RestartPolicy(burst=100, reset_after_s=600)
    supervisor, clock, children, lines = _stack(policy)
    delays = []
    for _ in range(3):
        _crash(supervisor, clock, children["agent"])
        delays.append(next(line for line in reversed(lines) if "restarting it in" in line))
    assert [d.split("restarting it in ")[1].split(" s")[0] for d in delays] == ["1", "2", "4"]
    clock.advance(601)
    _crash(supervisor, clock, children["agent"])
    assert "restarting it in 1 s" in next(x for x in reversed(lines) if "restarting" in x)


def test_a_crash_loop_is_left_down_with_one_line_and_the_rest_keeps_running():
    """Five exits within two minutes: the component is left down (no more starts, however
    long we wait), the line says crash loop, LEFT DOWN and how to retry; the other child
    was never touched; the status and the metrics say which one and why."""
    supervisor, clock, children, lines = _stack()
    inference, agent = children["inference"], children["agent"]
    inference.is_ready = False  # it dies before it is ever ready again
    for _ in range(5):
        inference.ended = "exited with status 2"
        supervisor.tick()
        for _ in range(200):
            clock.advance(0.5)
            supervisor.tick()
            if inference.ended is None or _state(supervisor, "inference") == FAILED:
                break
    assert _state(supervisor, "inference") == FAILED
    assert inference.starts == 4, "four restarts, then the fifth exit leaves it down"
    crash = [line for line in lines if "crash loop" in line]
    assert len(crash) == 1
    assert "inference exited with status 2" in crash[0] and "LEFT DOWN" in crash[0]
    assert "the rest of the stack keeps running" in crash[0] and "kill -USR1 7" in crash[0]
    clock.advance(3600)
    supervisor.tick()
    assert inference.starts == 4 and _state(supervisor, "inference") == FAILED
    assert (agent.starts, agent.stops, _state(supervisor, "agent")) == (0, 0, RUNNING)
    summary = down_summary(supervisor.status())
    assert "inference failed (crash loop: 5 exits" in summary and "agent" not in summary
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(supervisor.status))
    value = registry.get_sample_value
    assert value("loglog_up_component_failed", {"component": "inference"}) == 1
    assert value("loglog_up_component_up", {"component": "inference"}) == 0
    assert value("loglog_up_component_restarts_total", {"component": "inference"}) == 4
    restarted = value(
        "loglog_up_component_last_restart_timestamp_seconds", {"component": "inference"}
    )
    assert restarted is not None and 1000 < restarted < clock.now
    assert value("loglog_up_component_last_restart_timestamp_seconds", {"component": "agent"}) == 0
    assert value("loglog_up_component_failed", {"component": "agent"}) == 0
    assert value("loglog_up_component_up", {"component": "agent"}) == 1


def test_a_retry_starts_a_component_left_down_with_a_fresh_history():
    """SIGUSR1's action: the failed component starts again and gets five more exits."""
    supervisor, clock, children, _ = _stack()
    inference = children["inference"]
    for _ in range(5):
        _crash(supervisor, clock, inference)
    assert _state(supervisor, "inference") == FAILED
    assert supervisor.retry_failed() == ["inference"]
    assert supervisor.retry_failed() == []
    supervisor.tick()
    supervisor.tick()
    assert _state(supervisor, "inference") == RUNNING and inference.starts == 5
    _crash(supervisor, clock, inference)
    assert _state(supervisor, "inference") == RUNNING, "the old exits were forgotten"


def test_exits_spread_wider_than_the_window_are_never_a_crash_loop():
    """An exit every 31 s: never five within 120 s, so it is restarted every time."""
    supervisor, clock, children, _ = _stack(RestartPolicy(max_delay_s=1))
    for _ in range(20):
        _crash(supervisor, clock, children["agent"])
        clock.advance(31)
    assert _state(supervisor, "agent") == RUNNING and children["agent"].starts == 20


def test_a_start_that_never_gets_ready_is_stopped_and_counted_as_an_exit():
    supervisor, clock, children, lines = _stack()
    agent = children["agent"]
    agent.ended, agent.is_ready = "was killed by SIGKILL", False
    supervisor.tick()
    clock.advance(1)
    supervisor.tick()
    assert _state(supervisor, "agent") == STARTING
    clock.advance(61)
    supervisor.tick()
    assert agent.stops == 1 and _state(supervisor, "agent") == BACKOFF
    assert "agent was not ready after 60 s" in lines[-1]


def test_a_child_that_cannot_be_started_is_an_exit_too():
    supervisor, clock, children, lines = _stack()
    agent = children["agent"]
    agent.ended, agent.refuse_start = "was killed by SIGKILL", True
    supervisor.tick()
    clock.advance(1)
    supervisor.tick()
    assert "could not be started (no such binary)" in lines[-1]
    assert _state(supervisor, "agent") == BACKOFF


def test_the_alerting_path_says_loudly_that_nothing_can_page():
    """Prometheus down: every line about it and the status line say nothing can page."""
    supervisor, _, children, lines = _stack(names=("prometheus", "agent"))
    children["prometheus"].ended = "was killed by SIGKILL"
    supervisor.tick()
    assert "NOTHING CAN PAGE" in lines[-1]
    assert "NOTHING CAN PAGE while prometheus is down" in down_summary(supervisor.status())
    children["agent"].ended = "exited with status 1"
    supervisor.tick()
    assert "NOTHING CAN PAGE" not in lines[-1]


def test_stop_restarts_nothing_and_reports_survivors():
    supervisor, clock, children, _ = _stack()
    assert supervisor.stop() == []
    assert all(child.stops == 1 for child in children.values())
    clock.advance(100)
    supervisor.tick()
    assert all(child.starts == 0 for child in children.values())


@given(
    first=st.floats(0, 10),
    extra=st.floats(0, 100),
    factor=st.floats(1, 4),
    streaks=st.lists(st.integers(1, 10_000), min_size=2, max_size=20),
)
def test_delays_start_at_the_first_never_shrink_and_stay_under_the_cap(
    first, extra, factor, streaks
):
    policy = RestartPolicy(first_delay_s=first, max_delay_s=first + extra, factor=factor)
    assert policy.delay(1) == first
    ordered = sorted(streaks)
    delays = [policy.delay(n) for n in ordered]
    assert delays == sorted(delays)
    assert all(first <= d <= first + extra for d in delays)


@given(gaps=st.lists(st.floats(0, 300), min_size=1, max_size=40))
def test_the_tracker_gives_up_exactly_when_burst_exits_fall_within_the_interval(gaps):
    """Against a direct count: give up iff the last ``burst`` exits span ≤ interval."""
    clock = FakeClock()
    policy = RestartPolicy()
    tracker = Tracker(policy, clock)
    times: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        times.append(clock.now)
        answer = tracker.exited()
        recent = [t for t in times if clock.now - t <= policy.interval_s]
        assert (answer is None) == (len(recent) >= policy.burst)
        if answer is None:
            tracker.reset()
            times.clear()


def test_bad_policies_are_refused_at_set_up():
    with pytest.raises(ValueError):
        RestartPolicy(first_delay_s=5, max_delay_s=1)
    with pytest.raises(ValueError):
        RestartPolicy(burst=0)


def test_exits_are_described_by_signal_name_or_status():
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-15) == "was killed by SIGTERM"
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(0) == "exited with status 0"


def test_every_exported_metric_is_declared_for_alerts_and_dashboards():
    registry = CollectorRegistry()
    supervisor, *_ = _stack()
    registry.register(SupervisorCollector(supervisor.status))
    exported = {s.name for m in registry.collect() for s in m.samples}
    assert exported == set(METRICS)
    assert exported <= declared()
