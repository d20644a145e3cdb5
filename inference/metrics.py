"""Every metric the runtime exports, declared here and nowhere else.

Names are the contract for dashboards and alerts (a test checks that they only use names
declared in a ``metrics.py``). Base units, ``_total`` on counters, histograms — not
summaries — so percentiles aggregate across replicas.

**Stage buckets.** ``inference_stage_duration_seconds`` has buckets *per stage*
(:data:`STAGE_BANDS`, from each stage's ``band``): inside a stage's band, bounds grow by ×1.1, so a p50 or p99 that
``histogram_quantile`` interpolates inside one bucket is off by at most 10 % (the width of
the bucket); outside the band a few ×3 buckets reach down to 1/10 of it and up to 30 s, so
nothing is lost, only coarser. The bands come from the durations measured here (2-core
CPU, default model, 2026-11-28) with room on both sides: a 640×480 JPEG decode 3–35 ms, a
stream frame's 1–10 ms; preprocess 0.3–1 ms; infer 5–60 ms per batch on CPU (a GPU
engine's 1–5 ms is inside too); postprocess and encode 20–300 µs. That is 48–61 buckets a
stage, ~280 series in all (85 before): the price of ±10 %. The same stage has the same
buckets on every replica, so per-stage quantiles aggregate; summing *across* stages by
``le`` no longer makes sense (the bounds differ) — select a stage first.

:class:`RuntimeMetrics` builds them all on a given registry, so tests use a fresh one.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import _validate_exemplar
from prometheus_client.samples import Exemplar

from .types import PIPELINE

if TYPE_CHECKING:
    from .analysis.stats import StageLedger

#: Growth of bucket bounds inside a stage's band: the worst-case quantile error.
FINE_RATIO = 1.1
#: Growth outside the band (the tails are coarse on purpose: few series).
COARSE_RATIO = 3.0
#: The largest finite bound of every stage histogram.
CEILING = 30.0


def band_buckets(low: float, high: float, *, ratio: float = FINE_RATIO) -> tuple[float, ...]:
    """Bounds ×``ratio`` from ``low`` to ``high``, ×3 tails down to ``low``/10 and up to
    30 s, rounded to three significant digits (readable ``le`` labels).

    Example: ``band_buckets(0.001, 0.0015)`` is ``(0.0001, 0.000333, 0.001, 0.0011,
    0.00121, 0.00133, 0.00146, 0.0015, 0.0045, 0.0135, …, 30.0)``.
    """
    bounds = [_round3(low / 10), _round3(low / COARSE_RATIO)]
    value = _round3(low)
    while value < high:
        bounds.append(value)
        # Rounded down from the rounded bound: no step inside the band exceeds ``ratio``.
        value = _round3(value * ratio, down=True)
    if bounds[-1] < high / 1.02:  # no sliver of a bucket just under ``high``
        bounds.append(high)
    value = high * COARSE_RATIO
    while value < CEILING / 1.5:  # nor just under the ceiling
        bounds.append(_round3(value))
        value *= COARSE_RATIO
    bounds.append(CEILING)
    return tuple(sorted(set(bounds)))


def _round3(value: float, *, down: bool = False) -> float:
    """Three significant digits (readable ``le`` labels), rounded down when asked."""
    scale = 10 ** (math.floor(math.log10(value)) - 2)
    return round((math.floor(value / scale + 1e-9) if down else round(value / scale)) * scale, 12)


#: stage → (low, high) seconds: where its p50 and p99 are resolved to ±10 % (see above);
#: each stage declares its band in :data:`inference.types.PIPELINE`.
STAGE_BANDS: dict[str, tuple[float, float]] = {spec.name: spec.band for spec in PIPELINE}
#: stage → bucket bounds of ``inference_stage_duration_seconds``, declared once here.
STAGE_BUCKETS_BY_STAGE: dict[str, tuple[float, ...]] = {
    stage: band_buckets(low, high) for stage, (low, high) in STAGE_BANDS.items()
}

#: Buckets of the other latency histograms (queue waits, batch waits) and of a stage
#: missing from :data:`STAGE_BANDS`.
STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

#: name → (type, labels, help). The one list of names this package exports.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "inference_stage_duration_seconds": ("histogram", ("stage",), "Time a stage spent on one call (one item, or one batch for infer)."),
    "inference_stage_items_total": ("counter", ("stage",), "Items a stage finished."),
    "inference_stage_busy_seconds_total": ("counter", ("stage",), "Seconds the stage's workers spent working (utilization = rate ÷ workers)."),
    "inference_stage_drilled_seconds_total": ("counter", ("stage",), "Seconds of the stage's finished calls spent in drill delays (inside busy seconds): a drill, not the stage, made them slow."),
    "inference_stage_workers": ("gauge", ("stage",), "Workers (threads) of the stage; for decode, the live sources."),
    "inference_stage_errors_total": ("counter", ("stage",), "Items that failed in the stage."),
    "inference_stage_utilization_ratio": ("gauge", ("stage",), "Busy time ÷ (wall time × workers) over the last window."),
    "inference_queue_depth": ("gauge", ("queue",), "Items waiting in the queue in front of a stage."),
    "inference_queue_capacity": ("gauge", ("queue",), "Capacity of the queue in front of a stage."),
    "inference_queue_wait_seconds": ("histogram", ("queue",), "Time an item waited in the queue."),
    "inference_batch_size": ("histogram", (), "Items per batch sent to the engine."),
    "inference_batch_wait_seconds": ("histogram", (), "Time the batcher held a batch's first item before dispatch."),
    "inference_request_duration_seconds": ("histogram", (), "End-to-end time of an item, from ingest (or HTTP receipt) to output."),
    "inference_requests_total": ("counter", ("status",), "Items finished end to end, by status (ok, error, rejected)."),
    "inference_frames_total": ("counter", ("stream",), "Frames a stream's source produced."),
    "inference_frames_dropped_total": ("counter", ("stream", "reason"), "Frames dropped, by stream and reason."),
    "inference_stream_lag_seconds": ("gauge", ("stream",), "How far behind real time the stream's newest ingested frame is."),
    "inference_streams_active": ("gauge", (), "Streams currently running."),
    "inference_model_info": ("gauge", ("model", "engine", "device", "input_shape"), "The loaded model (always 1)."),
    "inference_model_capacity_items_per_second": ("gauge", ("model", "batch_size"), "Model-only throughput measured at start-up, by batch size (median of the calibration rounds)."),
    "inference_model_capacity_range_items_per_second": ("gauge", ("model", "batch_size", "bound"), "Lowest (bound=min) and highest (bound=max) model-only items/s over the calibration rounds at start-up."),
    "inference_model_capacity_spread_ratio": ("gauge", ("model", "batch_size"), "(max − min) ÷ median capacity over the calibration rounds: efficiency changes smaller than this are noise."),
    "inference_model_flops_per_item": ("gauge", ("model",), "FLOPs of one item's forward pass, counted from the model (ONNX graph or PyTorch module; 2 per multiply-add)."),
    "inference_model_flops_total": ("counter", ("model",), "FLOPs the engine executed (items × FLOPs per item)."),
    "inference_engine_efficiency_ratio": ("gauge", ("model",), "Calibrated engine time ÷ actual engine time for the batches run: is the model itself at full speed?"),
    "inference_pipeline_efficiency_ratio": ("gauge", ("model",), "Delivered items/s ÷ model-only capacity at the maximum batch size: is the pipeline feeding it?"),
    "inference_mfu_ratio": ("gauge", ("model",), "Achieved model FLOP/s ÷ the GPU's dense peak (only when the peak is known)."),
    "inference_pipeline_bottleneck": ("gauge", ("stage",), "1 for the stage that limits throughput now (stage=input: the offered load does)."),
    "inference_engine_starved": ("gauge", (), "1 when infer waits for input with low utilization."),
    "inference_config_reloads_total": ("counter", ("result",), "Config file reloads, by result (applied, rejected)."),
    "inference_ready": ("gauge", (), "1 once the model is loaded and calibrated."),
    "inference_drill_delay_seconds": ("gauge", ("stage",), "Delay a drill adds per item to a stage (0 when none)."),
    "inference_stage_inflight": ("gauge", ("stage",), "Items the stage is working on right now (read at scrape time)."),
    "inference_stage_oldest_inflight_seconds": ("gauge", ("stage",), "How long the stage's oldest call in progress has been running (0 when idle; read at scrape time)."),
    "inference_stage_last_completion_timestamp_seconds": ("gauge", ("stage",), "Unix time the stage last finished a call (its start time until the first)."),
    "inference_stage_stalled": ("gauge", ("stage",), "1 while a call in the stage has run far longer than the stage's normal duration (hung, not slow)."),
    "inference_decode_processes": ("gauge", (), "Decode processes running (decode_processes > 0: streams are decoded and preprocessed there, not on threads of the server)."),
    "inference_decode_process_restarts_total": ("counter", (), "Decode processes that died and were restarted; their streams went on in the new process."),
    "inference_decode_process_heartbeat_age_seconds": ("gauge", ("process",), "Seconds since each decode process last stamped its heartbeat (every 0.25 s while it runs; read at scrape time)."),
    "inference_requests_admitted_total": ("counter", (), "HTTP inference requests admitted to the pipeline; those offered are these plus the ones shed at admission (reason predicted_wait or queue_full)."),
    "inference_requests_shed_total": ("counter", ("reason",), "HTTP inference requests shed with a 503 and Retry-After: refused at admission (predicted_wait: the predicted answer time was past the request's deadline; queue_full), dropped from a queue before the engine when their deadline would pass first (expired), or refused past max_connections before reaching the app (max_connections)."),
    "inference_admission_capacity_items_per_second": ("gauge", (), "HTTP requests per second the admission control expects the pipeline to serve: the slowest stage's measured rate less the live streams' frames (which go first)."),
    "inference_requests_inflight": ("gauge", ("older_than",), "Items in the pipeline (entered, not finished) older than older_than seconds; older_than=\"0\" counts them all."),
}  # fmt: skip

#: Computed when Prometheus scrapes (see :class:`ScrapeCollector`), so they are true
#: between completions; the others are updated as work happens.
SCRAPED = frozenset({
    "inference_stage_busy_seconds_total",
    "inference_stage_drilled_seconds_total",
    "inference_stage_inflight",
    "inference_stage_oldest_inflight_seconds",
    "inference_stage_last_completion_timestamp_seconds",
    "inference_requests_inflight",
    "inference_decode_process_heartbeat_age_seconds",
})  # fmt: skip


#: What ``loglog loadgen --pushgateway`` pushes for each run (a batch job: Pushgateway).
LOADGEN_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "loglog_loadgen_requests_total": ("counter", ("status",), "Requests loadgen sent in its last run, by HTTP status class."),
    "loglog_loadgen_latency_seconds": ("histogram", (), "Request latency loadgen measured in its last run."),
    "loglog_loadgen_achieved_rps": ("gauge", (), "Requests per second loadgen completed in its last run."),
    "loglog_loadgen_goodput_rps": ("gauge", (), "Requests per second of loadgen's last run answered 2xx within its SLO (--slo-ms), per second of the schedule."),
    "loglog_loadgen_late_requests": ("gauge", (), "Requests loadgen's last run sent more than 10 ms after their scheduled time (the client fell behind its schedule)."),
    "loglog_loadgen_last_run_timestamp_seconds": ("gauge", (), "When loadgen's last run ended."),
}  # fmt: skip


class LabelledBucketsHistogram(Histogram):
    """A histogram whose children take their buckets from their first label's value.

    prometheus_client gives every child the parent's buckets; a stage that takes 0.3 ms
    and one that takes 30 ms cannot both be resolved to ±10 % by one set without a
    hundred-odd buckets each. This keeps one metric name and label set (the contract) and
    gives each stage its own bounds. ``observe`` finds the bucket by bisection, so 50
    buckets cost what 16 did (~2 µs).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets_by_label: Mapping[str, Sequence[float]],
        buckets: Sequence[float] = STAGE_BUCKETS,
        registry: CollectorRegistry | None = None,
        _labelvalues: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        chosen = buckets_by_label.get(_labelvalues[0], buckets) if _labelvalues else buckets
        super().__init__(
            name,
            documentation,
            labelnames,
            registry=registry,
            _labelvalues=_labelvalues,
            buckets=chosen,
            **kwargs,
        )
        # Children are built from _kwargs: they get the map and the default again.
        self._kwargs["buckets_by_label"] = buckets_by_label
        self._kwargs["buckets"] = buckets

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """As Histogram.observe — same bucket (the first bound ≥ amount), same exemplar."""
        self._raise_if_not_observable()
        self._sum.inc(amount)
        bucket = self._buckets[bisect.bisect_left(self._upper_bounds, amount)]
        bucket.inc(1)
        if exemplar:
            _validate_exemplar(exemplar)
            bucket.set_exemplar(Exemplar(exemplar, amount, time.time()))


class RuntimeMetrics:
    """All runtime metrics on one registry; attributes are named after the metric."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        for name, (kind, labels, help_text) in METRICS.items():
            short = name.removeprefix("inference_")
            if name in SCRAPED:
                continue  # built at scrape time by ScrapeCollector
            if kind == "counter":
                metric: Counter | Gauge | Histogram = Counter(
                    name, help_text, labels, registry=registry
                )
            elif kind == "gauge":
                metric = Gauge(name, help_text, labels, registry=registry)
            elif name == "inference_stage_duration_seconds":
                metric = LabelledBucketsHistogram(
                    name,
                    help_text,
                    labels,
                    buckets_by_label=STAGE_BUCKETS_BY_STAGE,
                    registry=registry,
                )
            else:
                buckets = {
                    "inference_batch_size": BATCH_BUCKETS,
                    "inference_request_duration_seconds": REQUEST_BUCKETS,
                }.get(name, STAGE_BUCKETS)
                metric = Histogram(name, help_text, labels, buckets=buckets, registry=registry)
            setattr(self, short, metric)

    # Typed accessors for the ones used on hot paths (attributes are set dynamically).
    stage_duration_seconds: Histogram
    stage_items_total: Counter
    stage_workers: Gauge
    stage_errors_total: Counter
    stage_utilization_ratio: Gauge
    queue_depth: Gauge
    queue_capacity: Gauge
    queue_wait_seconds: Histogram
    batch_size: Histogram
    batch_wait_seconds: Histogram
    request_duration_seconds: Histogram
    requests_total: Counter
    frames_total: Counter
    frames_dropped_total: Counter
    stream_lag_seconds: Gauge
    streams_active: Gauge
    model_info: Gauge
    model_capacity_items_per_second: Gauge
    model_capacity_range_items_per_second: Gauge
    model_capacity_spread_ratio: Gauge
    model_flops_per_item: Gauge
    model_flops_total: Counter
    engine_efficiency_ratio: Gauge
    pipeline_efficiency_ratio: Gauge
    mfu_ratio: Gauge
    pipeline_bottleneck: Gauge
    engine_starved: Gauge
    config_reloads_total: Counter
    ready: Gauge
    drill_delay_seconds: Gauge
    stage_stalled: Gauge
    decode_processes: Gauge
    decode_process_restarts_total: Counter
    requests_admitted_total: Counter
    requests_shed_total: Counter
    admission_capacity_items_per_second: Gauge


class ScrapeCollector:
    """Per-stage in-flight numbers and busy seconds, computed when Prometheus scrapes.

    ``ledgers`` maps stage → :class:`inference.analysis.stats.StageLedger`; ``request_ages`` returns
    the ages (seconds) of the items in the pipeline now. ``clock`` is the ledgers' clock;
    ``wall`` turns their times into Unix timestamps.
    """

    def __init__(
        self,
        ledgers: Mapping[str, StageLedger],
        request_ages: Callable[[], list[float]],
        *,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._ledgers = ledgers
        self._request_ages = request_ages
        self._clock = clock
        self._wall = wall

    def collect(self) -> Iterator[Metric]:
        def family(name: str, kind: str) -> Any:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            return cls(name, METRICS[name][2], labels=METRICS[name][1])

        busy = family("inference_stage_busy_seconds_total", "counter")
        drilled = family("inference_stage_drilled_seconds_total", "counter")
        inflight = family("inference_stage_inflight", "gauge")
        oldest = family("inference_stage_oldest_inflight_seconds", "gauge")
        last = family("inference_stage_last_completion_timestamp_seconds", "gauge")
        now, wall = self._clock(), self._wall()
        for stage, ledger in self._ledgers.items():
            snap = ledger.snapshot(now)
            busy.add_metric([stage], snap.busy)
            drilled.add_metric([stage], snap.drilled)
            inflight.add_metric([stage], snap.inflight)
            oldest.add_metric([stage], snap.oldest_age)
            last.add_metric([stage], wall - (now - snap.last_completion))
        requests = family("inference_requests_inflight", "gauge")
        ages = self._request_ages()
        for bound in (0.0, *REQUEST_BUCKETS):
            requests.add_metric([f"{bound:g}"], sum(age > bound for age in ages))
        yield from (busy, drilled, inflight, oldest, last, requests)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no eager collect at registration: the ledgers may be empty
