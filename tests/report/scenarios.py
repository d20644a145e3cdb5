"""Golden scenarios for `loglog report`: the good day and the bad days, as known data.

Each scenario is two hours and ten minutes of series (every 15 s, like a scrape) ending at
its own ``end``; all of them are backfilled (promtool) into one Prometheus, 40 days apart,
so one server answers every scenario and no scenario's 30-day figures see another's data.

promtool's OpenMetrics backfill cannot write Prometheus' staleness markers (its ``NaN`` is a
plain NaN), so the golden Prometheus runs with ``--query.lookback-delta=30s``: a series
stops 30 s after its last sample, as a failed scrape's staleness marker makes it stop at
once. What is *not* simulated away: a 5-minute rate outlives its counter by up to 5 minutes
(the outage scenario records it so), and a new counter's rate fills its window as a ramp.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.report import known

SCRAPE = known.SCRAPE
HISTORY = known.HISTORY
INF = 'job="inference"'
SPACING = 40 * 86400  # between scenario ends: past every 30-day window
RANGE = 2 * 3600


@dataclass
class Data:
    """Series name{labels} → (unix time, value) samples."""

    end: int
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def times(self, ago_from: int = HISTORY, ago_to: int = 0) -> range:
        return range(self.end - ago_from, self.end - ago_to + 1, SCRAPE)

    def gauge(self, name: str, value: Callable[[int], float | None], **span: int) -> None:
        """A gauge sampled at every scrape; ``value`` returning None leaves a gap."""
        points = [(t, v) for t in self.times(**span) if (v := value(t)) is not None]
        self.series.setdefault(name, []).extend(points)

    def counter(self, name: str, per_s: Callable[[int], float], **span: int) -> None:
        """A counter increasing ``per_s(t)`` a second (0: flat); a ``None`` from ``alive``
        is handled by the caller's gauges."""
        total, last, points = 0.0, None, []
        for t in self.times(**span):
            if last is not None:
                total += per_s(t) * (t - last)
            points.append((t, round(total, 3)))
            last = t
        self.series.setdefault(name, []).extend(points)

    def firing(self, alertname: str, severity: str, ago: int, minutes: int) -> None:
        """An alert firing for ``minutes`` from ``ago`` seconds before the end (a NaN ends
        it, the stand-in for the resolved alert's staleness marker)."""
        labels = f'alertname="{alertname}",alertstate="firing",severity="{severity}"'
        first = self.end - ago
        last = min(first + 60 * minutes, self.end + 1)
        points: list[tuple[int, float]] = [(t, 1.0) for t in range(first, last, SCRAPE)]
        if last <= self.end:
            points.append((last, math.nan))
        self.series.setdefault(f"ALERTS{{{labels}}}", []).extend(points)

    def openmetrics(self) -> str:
        """OpenMetrics text: each metric family's samples together, in time order."""
        out: list[str] = []
        for name in sorted(self.series, key=lambda n: (n.split("{")[0], n)):
            for t, v in sorted(self.series[name]):
                out.append(f"{name} {'NaN' if math.isnan(v) else f'{v:.6g}'} {t}")
        return "\n".join(out) + "\n"


def inference(
    d: Data,
    *,
    slow_ratio: float = 0.002,
    up: Callable[[int], bool] = lambda t: True,
    delivered: Callable[[int], float] = lambda t: 10.0,
    rate5m: Callable[[int], float] | None = None,
    efficiency: float = 0.25,
    rejected_per_s: float = 0.0,
    shed_per_s: dict[str, float] | None = None,
    dropped_per_s: float = 0.0,
    stalled: Callable[[int], bool] | None = None,
) -> None:
    """An inference server's series: ``up(t)`` False is an outage (no sample at all);
    ``delivered(t)`` items/s; the recorded 5-minute rate follows ``rate5m`` (default: the
    delivered rate wherever the server is up)."""
    rate = rate5m or (lambda t: delivered(t) if up(t) else None)  # type: ignore[return-value]

    def alive(value: float) -> Callable[[int], float | None]:
        return lambda t: value if up(t) else None

    d.gauge(f"job:inference_delivered_items:rate5m{{{INF}}}", rate)
    d.gauge(f"job:inference_request_duration_seconds:p50{{{INF}}}", alive(0.05))
    d.gauge(f"job:inference_request_duration_seconds:p95{{{INF}}}", alive(0.12))
    d.gauge(f"job:inference_request_duration_seconds:p99{{{INF}}}", alive(0.3))
    d.gauge(f"job:inference_request_slow:ratio_rate5m{{{INF}}}", alive(slow_ratio))
    d.gauge(f"job:inference_capacity_items:max{{{INF}}}", alive(40.0))
    d.gauge(f"job:inference_pipeline_efficiency:ratio{{{INF}}}", alive(efficiency))
    d.gauge(f"inference_streams_active{{{INF}}}", alive(2.0))
    if stalled is not None:
        for stage in ("decode", "preprocess", "infer", "postprocess", "encode"):
            hung = stalled if stage == "preprocess" else (lambda t: False)
            d.gauge(
                f'inference_stage_stalled{{{INF},stage="{stage}"}}',
                lambda t, h=hung: (1.0 if h(t) else 0.0) if up(t) else None,
            )
    # Counters: a restart after an outage starts them from 0 again (increase() sees a reset).
    spans = _spans(d, up)
    requests = 10.0
    for first, last in spans:
        span = {"ago_from": d.end - first, "ago_to": d.end - last}
        d.counter(f'inference_stage_items_total{{{INF},stage="encode"}}', delivered, **span)
        d.counter(f'inference_requests_total{{{INF},status="ok"}}', lambda t: requests, **span)
        d.counter(f'inference_requests_total{{{INF},status="error"}}', lambda t: 0.01, **span)
        d.counter(f"inference_request_duration_seconds_count{{{INF}}}", lambda t: requests, **span)
        d.counter(
            f'inference_request_duration_seconds_bucket{{{INF},le="1.0"}}',
            lambda t: requests * (1 - slow_ratio),
            **span,
        )
        if rejected_per_s:
            d.counter(
                f'inference_requests_total{{{INF},status="rejected"}}',
                lambda t: rejected_per_s,
                **span,
            )
        for reason, per_s in (shed_per_s or {}).items():
            d.counter(
                f'inference_requests_shed_total{{{INF},reason="{reason}"}}',
                lambda t, r=per_s: r,
                **span,
            )
        if dropped_per_s:
            d.counter(
                f'inference_frames_dropped_total{{{INF},stream="cam1",reason="late"}}',
                lambda t: dropped_per_s,
                **span,
            )


def _spans(d: Data, up: Callable[[int], bool]) -> list[tuple[int, int]]:
    """(first, last) sample times of each stretch the server is up."""
    spans: list[tuple[int, int]] = []
    for t in d.times():
        if not up(t):
            continue
        if spans and spans[-1][1] == t - SCRAPE:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return spans


# -- the scenarios -------------------------------------------------------------------------


def healthy(end: int) -> str:
    """tests/report/known.py's data: 10 items/s in an hourly wave, 99.8 % within 1 s."""
    return known.openmetrics(end).removesuffix("# EOF\n")


def slo_missed(end: int) -> str:
    """71.1 % of requests slower than the 1 s objective: the budget burns 71×, the 30-day
    attainment is 28.9 %, and the old headroom stat still says 6 streams."""
    d = Data(end)
    inference(d, slow_ratio=0.711)
    d.firing("InferenceLatencyBudgetBurn", "critical", 100 * 60, 100)
    return d.openmetrics()


#: The outage scenario: no sample from 50 to 44 minutes before the end (a 6-minute outage),
#: then a restarted server whose counters start from zero.
OUTAGE_FROM, OUTAGE_TO = 50 * 60, 44 * 60


def outage(end: int, ago: tuple[int, int] = (OUTAGE_FROM, OUTAGE_TO)) -> str:
    """The server is down for 6 minutes; its 5-minute rate outlives it by 5 minutes (the
    recording rule still had samples in its window) and ramps up after the restart."""
    down_from, down_to = end - ago[0], end - ago[1]

    def up(t: int) -> bool:
        return not down_from < t < down_to

    def rate5m(t: int) -> float | None:
        if t <= down_from + 300 and t >= down_from:  # the rate outlives the counter …
            return 10.0
        if down_from < t < down_to:
            return None
        if down_to <= t < down_to + 300:  # … and ramps up as its window fills
            return 10.0 * (t - down_to) / 300
        return 10.0

    d = Data(end)
    inference(d, up=up, rate5m=rate5m)  # type: ignore[arg-type]
    d.firing("InferenceDown", "critical", ago[0] - 60, (ago[0] - ago[1]) // 60)
    return d.openmetrics()


#: The restart scenario: down from 10 to 2 minutes before the end, so the range ends while
#: the restarted server's 5-minute rate is still filling (a ramp: 4 /s of its 10).
RESTART_FROM, RESTART_TO = 10 * 60, 2 * 60


def restarted(end: int) -> str:
    """An outage that ends 2 minutes before the range does: the headroom stat at the end
    reads the ramp (delivered looks low, so headroom looks large) and must not be claimed."""
    return outage(end, (RESTART_FROM, RESTART_TO))


def overload(end: int) -> str:
    """More offered than the server takes: it delivers 38 items/s (95 % of its 40), yet 2
    requests/s are rejected (bad input) and 3/s shed with a 503 (2 at admission, queue full;
    1 dropped from a queue, expired) and 1 frame/s dropped for the whole range, the queue is
    full, and latency eats 80 % of the budget."""
    d = Data(end)
    inference(
        d,
        slow_ratio=0.008,
        delivered=lambda t: 38.0,
        efficiency=0.95,
        rejected_per_s=2.0,
        shed_per_s={"queue_full": 2.0, "expired": 1.0},
        dropped_per_s=1.0,
    )
    d.firing("InferenceQueueSaturated", "warning", 110 * 60, 110)
    return d.openmetrics()


#: The stall scenario: preprocess hangs for the last 12 minutes.
STALL_FROM = 12 * 60


def stalled(end: int) -> str:
    """preprocess hangs 12 minutes before the end: nothing is delivered from then on, the
    stalled gauge is 1, the headroom stat is empty, InferenceStalled pages."""

    def hung(t: int) -> bool:
        return t > end - STALL_FROM

    d = Data(end)
    inference(
        d,
        delivered=lambda t: 0.0 if hung(t) else 10.0,
        rate5m=lambda t: 10.0 * max(0.0, 1 - max(0, t - (end - STALL_FROM)) / 300),
        stalled=hung,
    )
    d.firing("InferenceStalled", "critical", STALL_FROM - 60, 11)
    return d.openmetrics()


def empty(end: int) -> str:
    """Nothing at all in the range (a new stack)."""
    return ""


#: The broker scenario: RabbitMQ unreachable from 30 to 24 minutes before the end.
BROKER_FROM, BROKER_TO = 30 * 60, 24 * 60
FLEET_API, BROKER = 'job="fleet-api"', 'job="rabbitmq"'


def fleet_broker_outage(end: int) -> str:
    """A healthy inference server and a fleet whose broker is down for 6 minutes: the API
    says so (fleet_broker_up 0), the broker's own scrape fails (up 0), its queue series
    stop, unpublished segments pile up, and FleetBrokerDown pages."""
    down_from, down_to = end - BROKER_FROM, end - BROKER_TO

    def broker_up(t: int) -> float:
        return 0.0 if down_from <= t < down_to else 1.0

    d = Data(end)
    inference(d)
    d.gauge(f"fleet_broker_up{{{FLEET_API}}}", broker_up)
    d.gauge(f"up{{{BROKER}}}", broker_up)
    d.gauge(
        f'rabbitmq_queue_messages_ready{{{BROKER},queue="segments"}}',
        lambda t: None if broker_up(t) == 0 else 40.0,
    )
    d.gauge(
        f"fleet_segments_unpublished{{{FLEET_API}}}",
        lambda t: 12.0 if down_from <= t < down_to else 0.0,
    )
    for state, count in (("succeeded", 31.0), ("running", 2.0), ("queued", 5.0), ("failed", 0.0)):
        d.gauge(f'fleet_jobs{{{FLEET_API},state="{state}"}}', lambda t, c=count: c)
    d.gauge(f"fleet_drain_eta_seconds{{{FLEET_API}}}", lambda t: 5400.0)
    d.gauge(f"fleet_throughput_frames_per_second{{{FLEET_API}}}", lambda t: 30.0)
    d.gauge(f"fleet_capacity_frames_per_second{{{FLEET_API}}}", lambda t: 40.0)
    d.firing("FleetBrokerDown", "critical", BROKER_FROM - 60, 5)
    return d.openmetrics()


SCENARIOS: dict[str, Callable[[int], str]] = {
    "healthy": healthy,
    "slo_missed": slo_missed,
    "outage": outage,
    "restarted": restarted,
    "overload": overload,
    "stalled": stalled,
    "empty": empty,
    "fleet_broker_outage": fleet_broker_outage,
}
