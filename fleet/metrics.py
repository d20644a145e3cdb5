"""Every metric the fleet exports, declared here and nowhere else.

Two processes export them: each worker (``WORKER_METRICS``, next to its pipeline's
``inference_*`` metrics on its own ``/metrics``) and the jobs API (``API_METRICS``,
computed at scrape time from the store, the broker and the worker heartbeats, so a
restarted API exports the same values at once). ``BROKER_METRICS`` are RabbitMQ's own, from
its ``rabbitmq_prometheus`` plugin (aggregated per object), listed so that alerts and
dashboards may name them.

Derived fleet numbers, all in frames (a job's unit of work):

* backlog = frames of unfinished jobs not done yet; segments queued = ready messages in
  the broker's queue;
* throughput = sum of the workers' recent frames/s (heartbeats);
* capacity = sum of the workers' calibrated model-only frames/s;
* ETA to drain = backlog ÷ throughput (+Inf with a backlog and no throughput, 0 without
  a backlog); demand = rate(fleet_frames_submitted_total).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .model import SegmentResult

SEGMENT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
JOB_BUCKETS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

#: name → (type, labels, help): what a worker exports.
WORKER_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "fleet_worker_segments_total": ("counter", ("result",), "Segments this worker finished, by result (done, failed, skipped: job already ended)."),
    "fleet_worker_frames_total": ("counter", (), "Frames this worker analysed for jobs."),
    "fleet_worker_segment_duration_seconds": ("histogram", (), "Time one segment took on this worker, decode to results written."),
    "fleet_worker_redeliveries_total": ("counter", (), "Segments this worker ran again after a worker had started them (the first died, or its ack was lost); not the broker's redelivered flag."),
    "fleet_worker_busy": ("gauge", (), "1 while the worker runs a segment."),
    "fleet_worker_capacity_frames_per_second": ("gauge", (), "Calibrated model-only frames/s of this worker (its share of fleet capacity)."),
    "fleet_job_duration_seconds": ("histogram", (), "Submit-to-done time of jobs this worker completed (observed by the worker that assembled the results)."),
}  # fmt: skip

#: name → (type, labels, help): what the jobs API exports.
API_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "fleet_jobs": ("gauge", ("state",), "Jobs in the store, by state."),
    "fleet_job_progress_ratio": ("gauge", ("job_id",), "Frames done ÷ total of each unfinished job (at most 50 jobs: cardinality budget)."),
    "fleet_job_eta_seconds": ("gauge", ("job_id",), "Seconds left for each running job at its rate over the last minute; no series while its rate is being measured (just started or resumed) or it is stalled (no frame analysed for a minute)."),
    "fleet_job_last_progress_age_seconds": ("gauge", ("job_id",), "Seconds since each running job last finished a segment (since it started when none)."),
    "fleet_backlog_frames": ("gauge", (), "Frames of unfinished jobs not analysed yet."),
    "fleet_backlog_segments": ("gauge", (), "Segments ready in the broker's queue (not yet delivered to a worker)."),
    "fleet_queue_consumers": ("gauge", (), "Consumers (workers) on the segment queue, as the broker counts them."),
    "fleet_segments_unpublished": ("gauge", (), "Segments accepted but not yet confirmed by the broker (it was down)."),
    "fleet_oldest_unfinished_job_age_seconds": ("gauge", (), "Age of the oldest queued or running job."),
    "fleet_workers": ("gauge", ("state",), "Workers with a live heartbeat, by state (busy, idle)."),
    "fleet_throughput_frames_per_second": ("gauge", (), "Sum of the workers' recent frames/s."),
    "fleet_capacity_frames_per_second": ("gauge", (), "Sum of the workers' calibrated frames/s."),
    "fleet_drain_eta_seconds": ("gauge", (), "Backlog frames ÷ fleet throughput (+Inf when nothing moves)."),
    "fleet_frames_submitted_total": ("counter", (), "Frames of jobs accepted by this API (demand: its rate)."),
    "fleet_jobs_submitted_total": ("counter", ("result",), "Job submissions, by result (accepted, rejected)."),
    "fleet_broker_up": ("gauge", (), "1 when the API reached the broker at the last scrape."),
    "fleet_store_up": ("gauge", (), "1 when the API reached the job store at the last scrape."),
}  # fmt: skip

#: RabbitMQ's own metrics (rabbitmq_prometheus, aggregated), as alerts and dashboards use them.
BROKER_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "rabbitmq_queue_messages_ready": ("gauge", (), "Messages ready to be delivered (all queues)."),
    "rabbitmq_queue_messages_unacked": ("gauge", (), "Messages delivered and not yet acknowledged."),
    "rabbitmq_queue_consumers": ("gauge", (), "Consumers on queues."),
    "rabbitmq_connections": ("gauge", (), "Open client connections."),
    "rabbitmq_channel_messages_redelivered_total": ("counter", (), "Messages redelivered to consumers."),
    "rabbitmq_channel_messages_published_total": ("counter", (), "Messages published into the broker."),
    "rabbitmq_channel_messages_confirmed_total": ("counter", (), "Messages published and confirmed to the publisher."),
}  # fmt: skip

METRICS = {**WORKER_METRICS, **API_METRICS, **BROKER_METRICS}


class WorkerMetrics:
    """A worker's fleet metrics on ``registry`` (shared with its pipeline's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        spec = WORKER_METRICS
        self.segments_total = Counter(
            "fleet_worker_segments_total",
            spec["fleet_worker_segments_total"][2],
            ["result"],
            registry=registry,
        )
        self.frames_total = Counter(
            "fleet_worker_frames_total", spec["fleet_worker_frames_total"][2], registry=registry
        )
        self.segment_duration_seconds = Histogram(
            "fleet_worker_segment_duration_seconds",
            spec["fleet_worker_segment_duration_seconds"][2],
            buckets=SEGMENT_BUCKETS,
            registry=registry,
        )
        self.redeliveries_total = Counter(
            "fleet_worker_redeliveries_total",
            spec["fleet_worker_redeliveries_total"][2],
            registry=registry,
        )
        self.busy = Gauge("fleet_worker_busy", spec["fleet_worker_busy"][2], registry=registry)
        self.capacity = Gauge(
            "fleet_worker_capacity_frames_per_second",
            spec["fleet_worker_capacity_frames_per_second"][2],
            registry=registry,
        )
        self.job_duration_seconds = Histogram(
            "fleet_job_duration_seconds",
            spec["fleet_job_duration_seconds"][2],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        for result in SegmentResult:
            self.segments_total.labels(result.value)
