"""Every metric the runtime exports, declared here and nowhere else.

Names are the contract for dashboards and alerts (a test checks that they only use names
declared in a ``metrics.py``). Base units, ``_total`` on counters, histograms — not
summaries — so percentiles aggregate across replicas. Buckets are chosen to cover both a
sub-millisecond preprocess and a 10–100 ms inference.

:class:`RuntimeMetrics` builds them all on a given registry, so tests use a fresh one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
    "inference_model_capacity_items_per_second": ("gauge", ("model", "batch_size"), "Model-only throughput measured at start-up, by batch size."),
    "inference_model_flops_per_item": ("gauge", ("model",), "FLOPs of one item's forward pass, counted from the ONNX graph (2 per multiply-add)."),
    "inference_model_flops_total": ("counter", ("model",), "FLOPs the engine executed (items × FLOPs per item)."),
    "inference_engine_efficiency_ratio": ("gauge", ("model",), "Calibrated engine time ÷ actual engine time for the batches run: is the model itself at full speed?"),
    "inference_pipeline_efficiency_ratio": ("gauge", ("model",), "Delivered items/s ÷ model-only capacity at the maximum batch size: is the pipeline feeding it?"),
    "inference_mfu_ratio": ("gauge", ("model",), "Achieved model FLOP/s ÷ the GPU's dense peak (only when the peak is known)."),
    "inference_pipeline_bottleneck": ("gauge", ("stage",), "1 for the stage that limits throughput now (stage=input: the offered load does)."),
    "inference_engine_starved": ("gauge", (), "1 when infer waits for input with low utilization."),
    "inference_config_reloads_total": ("counter", ("result",), "Config file reloads, by result (applied, rejected)."),
    "inference_ready": ("gauge", (), "1 once the model is loaded and calibrated."),
    "inference_drill_delay_seconds": ("gauge", ("stage",), "Delay a drill adds per item to a stage (0 when none)."),
}  # fmt: skip


#: What ``loglog loadgen --pushgateway`` pushes for each run (a batch job: Pushgateway).
LOADGEN_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "loglog_loadgen_requests_total": ("counter", ("status",), "Requests loadgen sent in its last run, by HTTP status class."),
    "loglog_loadgen_latency_seconds": ("histogram", (), "Request latency loadgen measured in its last run."),
    "loglog_loadgen_achieved_rps": ("gauge", (), "Requests per second loadgen completed in its last run."),
    "loglog_loadgen_late_requests": ("gauge", (), "Requests loadgen's last run sent more than 10 ms after their scheduled time (the client fell behind its schedule)."),
    "loglog_loadgen_last_run_timestamp_seconds": ("gauge", (), "When loadgen's last run ended."),
}  # fmt: skip


class RuntimeMetrics:
    """All runtime metrics on one registry; attributes are named after the metric."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        for name, (kind, labels, help_text) in METRICS.items():
            short = name.removeprefix("inference_")
            if kind == "counter":
                metric: Counter | Gauge | Histogram = Counter(
                    name, help_text, labels, registry=registry
                )
            elif kind == "gauge":
                metric = Gauge(name, help_text, labels, registry=registry)
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
    stage_busy_seconds_total: Counter
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
