"""Keep ``loglog up``'s components running: restart with backoff, give up on a crash loop.

The policy follows the anchors every operator knows:

- systemd ``Restart=on-failure`` + ``RestartSec``: an unexpected exit (any exit: every
  component is a server that should never end by itself) is restarted after a delay;
- Kubernetes CrashLoopBackOff: the delay doubles on each exit in a row (here 1 s → 30 s,
  not 10 s → 5 min: a local stack should come back in seconds) and goes back to the first
  delay once the component has run for ``reset_after_s`` (10 min, as the kubelet does);
- systemd ``StartLimitBurst`` / ``StartLimitIntervalSec`` and supervisord's FATAL state: a
  component that exits ``burst`` times within ``interval_s`` (5 in 2 min) is left down with
  one clear line, and the rest of the stack keeps running. ``kill -USR1`` on ``loglog up``
  retries it (systemd's ``reset-failed`` + ``start``) once its cause is fixed.

A start that does not become ready within the component's start-up timeout counts as an
exit ("not ready after N s"). So does a running component that stops answering its
readiness check ``liveness_failures`` times in a row, one check every
``liveness_interval_s`` (Kubernetes' liveness probe, 10 s × 3): it is stopped and restarted,
where a stopped (SIGSTOP) or deadlocked process used to stay "running" forever.
When the main process of a component exits, whatever it left
in its process group is killed before the restart (systemd's control-group clean-up), so a
leftover grandchild cannot hold the port the new start needs.

:class:`Tracker` is the policy's arithmetic for one component (pure, clock injected);
:class:`Supervisor` applies it to :class:`stack.types.Child` ren, one :meth:`tick` at a time
from ``loglog up``'s main loop, and reports on the console what happened and why.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable

from .processes import StackError
from .types import BACKOFF, FAILED, RUNNING, STARTING, Child, ComponentStatus


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestartPolicy:
    """When to restart a component that exited, and when to give up on it."""

    first_delay_s: float = 1.0  # systemd RestartSec
    max_delay_s: float = 30.0  # the doubling stops here
    factor: float = 2.0
    burst: int = 5  # StartLimitBurst: this many exits …
    interval_s: float = 120.0  # … within StartLimitIntervalSec: a crash loop, left down
    reset_after_s: float = 600.0  # running this long resets the doubling (Kubernetes)
    liveness_interval_s: float = 10.0  # a running component's readiness, checked this often …
    liveness_failures: int = 3  # … failed this many times in a row: stopped and restarted

    def __post_init__(self) -> None:
        if not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError("restart delays: need 0 <= first_delay_s <= max_delay_s")
        if self.factor < 1 or self.burst < 1 or self.interval_s <= 0 or self.reset_after_s <= 0:
            raise ValueError("restart policy: factor >= 1, burst >= 1, positive intervals")
        if self.liveness_interval_s <= 0 or self.liveness_failures < 1:
            raise ValueError("liveness: need liveness_interval_s > 0, liveness_failures >= 1")

    def delay(self, streak: int) -> float:
        """Seconds before the next start after the ``streak``-th exit in a row (1-based)."""
        exponent = min(max(streak, 1) - 1, 64)  # 2**64 s is far past any cap
        return float(min(self.first_delay_s * self.factor**exponent, self.max_delay_s))

    def describe(self) -> str:
        return (
            f"restart after {self.first_delay_s:g} s doubling to {self.max_delay_s:g} s; "
            f"left down after {self.burst} exits within {self.interval_s:g} s"
        )


DEFAULT_POLICY = RestartPolicy()


class Tracker:
    """One component's exit history under ``policy``; answers "restart when, or give up?"."""

    def __init__(self, policy: RestartPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.clock = policy, clock
        self.exits: collections.deque[float] = collections.deque()
        self.streak = 0  # exits in a row without a long-enough run between them
        self.ready_at: float | None = None

    def ready(self) -> None:
        """The component answered its readiness check."""
        self.ready_at = self.clock()

    def exited(self) -> float | None:
        """Record an exit now; the delay before the next start, or None: a crash loop."""
        now = self.clock()
        if self.ready_at is not None and now - self.ready_at >= self.policy.reset_after_s:
            self.streak = 0
        self.ready_at = None
        self.exits.append(now)
        while self.exits and now - self.exits[0] > self.policy.interval_s:
            self.exits.popleft()
        if len(self.exits) >= self.policy.burst:
            return None
        self.streak += 1
        return self.policy.delay(self.streak)

    def window_seconds(self) -> float:
        """Seconds from the first to the last exit counted in the window."""
        return self.exits[-1] - self.exits[0] if self.exits else 0.0

    def reset(self) -> None:
        """Forget the history (a retry asked for by the operator)."""
        self.exits.clear()
        self.streak = 0
        self.ready_at = None


@dataclasses.dataclass
class _Entry:
    child: Child
    tracker: Tracker
    start_timeout: float
    alerting: bool
    state: str = RUNNING
    since: float = 0.0  # when the current state began
    restart_at: float = 0.0
    restarts: int = 0
    last_restart: float = 0.0  # Unix time (exported: alerts need no history to see it)
    down_since: float | None = None  # the exit that started this outage
    detail: str = ""
    last_exit: str = ""
    next_check: float = 0.0  # when a running component's readiness is checked next
    misses: int = 0  # readiness checks failed in a row while running


class Supervisor:
    """Restarts the children it watches; ``tick()`` from one loop, ``status()`` from any
    thread.

    ``say`` prints one console line (``loglog up`` stamps it with the time). Children in
    ``alerting`` are the alerting path (Prometheus, Alertmanager, the receiver): while one
    of them is down nothing can page, and every line about it says so.
    """

    def __init__(
        self,
        say: Callable[[str], None],
        *,
        policy: RestartPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        retry_hint: str = "",
    ) -> None:
        self.say, self.policy, self.clock, self.wall = say, policy, clock, wall
        self.retry_hint = retry_hint
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()  # status() runs on the metrics server's threads

    def watch(self, child: Child, *, start_timeout: float, alerting: bool = False) -> None:
        """Supervise ``child``, which was started and found ready."""
        tracker = Tracker(self.policy, self.clock)
        tracker.ready()
        with self._lock:
            now = self.clock()
            self._entries.append(
                _Entry(child, tracker, start_timeout, alerting, since=now,
                       next_check=now + self.policy.liveness_interval_s)
            )  # fmt: skip

    def children(self) -> list[Child]:
        return [entry.child for entry in self._entries]

    # -- one pass of the loop --------------------------------------------------------

    def tick(self) -> None:
        """Look at every child once: notice exits, probe starting ones, restart due ones."""
        for entry in list(self._entries):
            if entry.state in (STARTING, RUNNING):
                status = entry.child.exit_status()
                if status is not None:
                    self._exited(entry, status)
                elif entry.state == STARTING:
                    self._probe(entry)
                else:
                    self._check_alive(entry)
            elif entry.state == BACKOFF and self.clock() >= entry.restart_at:
                self._restart(entry)

    def _probe(self, entry: _Entry) -> None:
        if entry.child.ready():
            entry.tracker.ready()
            now = self.clock()
            entry.misses, entry.next_check = 0, now + self.policy.liveness_interval_s
            outage = now - (entry.down_since if entry.down_since is not None else entry.since)
            self._set(entry, RUNNING, "")
            entry.down_since = None
            self.say(
                f"✓ {entry.child.name} is back ({entry.child.where()}), {outage:.1f} s "
                f"after it went down; restarts so far: {entry.restarts}"
            )
        elif self.clock() - entry.since > entry.start_timeout:
            entry.child.stop(grace=5.0)
            self._exited(entry, f"was not ready after {entry.start_timeout:.0f} s")

    def _check_alive(self, entry: _Entry) -> None:
        now = self.clock()
        if now < entry.next_check:
            return
        entry.next_check = now + self.policy.liveness_interval_s
        if entry.child.ready():
            entry.misses = 0
            return
        entry.misses += 1
        if entry.misses >= self.policy.liveness_failures:
            silent = entry.misses * self.policy.liveness_interval_s
            entry.child.stop(grace=5.0)
            self._exited(
                entry,
                f"did not answer its readiness check {entry.misses} times in a row (about "
                f"{silent:.0f} s; stopped, deadlocked or overloaded) and was stopped",
            )

    def _exited(self, entry: _Entry, how: str) -> None:
        name = entry.child.name
        tail = entry.child.tail()
        if entry.down_since is None:
            entry.down_since = self.clock()
        delay = entry.tracker.exited()
        nothing_pages = " While it is down NOTHING CAN PAGE." if entry.alerting else ""
        log = f"\n  its output since it started:\n{tail}" if tail.strip() else ""
        if delay is None:
            exits, window = len(entry.tracker.exits), entry.tracker.window_seconds()
            self._set(entry, FAILED, f"crash loop: {exits} exits in {window:.0f} s, last it {how}")
            self.say(
                f"✗ {name} {how} ({entry.child.where()}): crash loop, {exits} exits in "
                f"{window:.0f} s (limit {self.policy.burst} in {self.policy.interval_s:g} s). "
                f"{name} is LEFT DOWN; the rest of the stack keeps running.{nothing_pages} "
                f"Fix the cause, then {self.retry_hint or 'restart loglog up'}.{log}"
            )
            return
        self._set(entry, BACKOFF, f"it {how}; next start in {delay:g} s")
        entry.last_exit = how
        entry.restart_at = self.clock() + delay
        self.say(
            f"✗ {name} {how} ({entry.child.where()}); restarting it in {delay:g} s "
            f"(exit {len(entry.tracker.exits)} of {self.policy.burst} allowed within "
            f"{self.policy.interval_s:g} s).{nothing_pages}{log}"
        )

    def _restart(self, entry: _Entry) -> None:
        try:
            entry.child.start()
        except (StackError, OSError) as exc:  # OSError: a Child that did not translate it
            self._count_restart(entry)
            self._exited(entry, f"could not be started ({exc})")
            return
        self._count_restart(entry)
        self._set(entry, STARTING, f"restart {entry.restarts}, after it {entry.last_exit}")

    def _count_restart(self, entry: _Entry) -> None:
        with self._lock:
            entry.restarts += 1
            entry.last_restart = self.wall()

    def _set(self, entry: _Entry, state: str, detail: str) -> None:
        with self._lock:
            entry.state, entry.detail, entry.since = state, detail, self.clock()

    # -- operator actions and reports ------------------------------------------------

    def retry_failed(self) -> list[str]:
        """Start again every component left down by a crash loop; their names."""
        retried = []
        for entry in self._entries:
            if entry.state == FAILED:
                entry.tracker.reset()  # down_since stays: the outage began at the first exit
                entry.last_exit = "was left down (retry asked for)"
                self._set(entry, BACKOFF, "retry asked for")
                entry.restart_at = self.clock()
                retried.append(entry.child.name)
        return retried

    def status(self) -> list[ComponentStatus]:
        with self._lock:
            return [
                ComponentStatus(
                    name=e.child.name,
                    state=e.state,
                    restarts=e.restarts,
                    last_restart=e.last_restart,
                    detail=e.detail,
                    alerting=e.alerting,
                )
                for e in self._entries
            ]

    def stop(self, order: Iterable[Child] | None = None) -> list[str]:
        """Stop every child (in ``order`` if given); the names of those still alive."""
        children = list(order) if order is not None else self.children()[::-1]
        with self._lock:
            self._entries = []  # nothing is restarted from here on
        for child in children:
            child.stop()
        return [child.name for child in children if child.exit_status() is None]


def down_summary(statuses: Iterable[ComponentStatus]) -> str:
    """What the status line says about components not running ("" when all run)."""
    statuses = list(statuses)
    parts = [f"{s.name} {s.state} ({s.detail})" for s in statuses if not s.up]
    alerting_down = [s.name for s in statuses if s.alerting and not s.up]
    text = "; ".join(parts)
    if alerting_down:
        text += f". NOTHING CAN PAGE while {', '.join(alerting_down)} is down"
    return text
