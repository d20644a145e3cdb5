"""Jobs — for managers (how far along, when done), on-call (backlog, broker, workers) and
developers (which worker or stage holds the fleet back).

Selectors: the jobs API is scraped as ``job="fleet-api"``, workers (http_sd) as
``job="fleet-worker"``, RabbitMQ's own endpoint as ``job="rabbitmq"``.
"""

from __future__ import annotations

from typing import Any

from alerts.config import Config

from . import variables as v
from .builder import Dashboard, gauge, panel, prom, stat, thresholds, timeseries

UID = "loglog-jobs"
API = 'job="fleet-api"'
WORKER = 'job="fleet-worker"'
BROKER = 'job="rabbitmq"'


def build(cfg: Config) -> dict[str, Any]:
    d = Dashboard(
        UID,
        "loglog · Jobs",
        "Analysis jobs across the worker fleet: progress and ETA per job, backlog and its drain time, capacity used, and the worker or stage holding the fleet back.",
        ["loglog", "managers", "fleet"],
        [v.prometheus()],
    )
    d.row("Progress (managers)")
    # "queued" counts pending jobs too: both wait for a worker (a pending one still has
    # segments being published, or the broker is down); the API lists them apart.
    for state, matcher, color in (
        ("succeeded", 'state="succeeded"', "green"),
        ("running", 'state="running"', "blue"),
        ("queued", 'state=~"pending|queued"', "orange"),
        ("failed", 'state="failed"', "red"),
    ):
        what = "pending or queued (not started yet)" if state == "queued" else f"in state {state}"
        d.add(
            stat(
                f"Jobs {state}", f"Jobs {what} now (the store's count).", "short",
                [prom(f"sum(fleet_jobs{{{API}, {matcher}}})", state, instant=True)],
                color={"mode": "fixed", "fixedColor": color},
            ),
            w=4, h=4,
        )  # fmt: skip
    d.add(
        stat(
            "ETA to drain", "Backlog frames ÷ fleet throughput: when the queued work will be done at today's pace (∞ when nothing moves).", "s",
            [prom(f"max(fleet_drain_eta_seconds{{{API}}})", "ETA", instant=True)],
        ),
        w=4, h=4,
    )  # fmt: skip
    d.add(
        gauge(
            "Capacity used", "Fleet throughput ÷ the workers' calibrated capacity: below ~0.7 with a backlog means the fleet is not fed or not at full speed.", "percentunit",
            [prom(f"sum(fleet_throughput_frames_per_second{{{API}}}) / sum(fleet_capacity_frames_per_second{{{API}}})", "used", instant=True)],
            thresholds=thresholds((None, "orange"), (0.7, "green")),
        ),
        w=4, h=4,
    )  # fmt: skip
    d.add(
        panel(
            "bargauge", "Progress per job", "Share of frames done of each unfinished job (at most 50 jobs are exported).", "percentunit",
            [prom(f"max by (job_id) (fleet_job_progress_ratio{{{API}}})", "{{job_id}}", instant=True)],
            defaults={"min": 0, "max": 1},
            options={"orientation": "horizontal", "displayMode": "gradient", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        w=12,
    )  # fmt: skip
    d.add(
        panel(
            "bargauge", "ETA per running job", "Seconds left for each running job at its rate over the last minute; no bar while a job is measuring (just started or resumed) or stalled (no frame for 30 s): `loglog jobs ls` says which.", "s",
            [prom(f"max by (job_id) (fleet_job_eta_seconds{{{API}}})", "{{job_id}}", instant=True)],
            options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Throughput per hour", "Frames analysed per hour by the whole fleet, and jobs completed per hour.", "short",
            [prom(f"sum(rate(fleet_worker_frames_total{{{WORKER}}}[1h])) * 3600", "frames/h"),
             prom(f"sum(increase(fleet_job_duration_seconds_count{{{WORKER}}}[1h]))", "jobs/h")],
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Capacity against demand", "Frames/s the fleet can do (calibrated), does now, and is asked for (frames submitted per second).", "short",
            [prom(f"sum(fleet_capacity_frames_per_second{{{API}}})", "capacity"),
             prom(f"sum(fleet_throughput_frames_per_second{{{API}}})", "throughput"),
             prom(f"sum(rate(fleet_frames_submitted_total{{{API}}}[$__rate_interval]))", "demand")],
        ),
        w=12,
    )  # fmt: skip
    d.row("Backlog and broker (on-call)")
    d.add(
        timeseries(
            "Backlog", "Frames of unfinished jobs not done yet, segments ready in the broker, and segments accepted but not yet confirmed by the broker (it was down).", "short",
            [prom(f"sum(fleet_backlog_frames{{{API}}})", "frames"),
             prom(f"sum(fleet_backlog_segments{{{API}}})", "segments queued"),
             prom(f"sum(fleet_segments_unpublished{{{API}}})", "segments unpublished")],
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Oldest unfinished job", "Age of the oldest queued or running job.", "s",
            [prom(f"max(fleet_oldest_unfinished_job_age_seconds{{{API}}})", "age")],
        ),
        w=6,
    )  # fmt: skip
    d.add(
        timeseries(
            "Broker up", "1 when the API reaches RabbitMQ, and RabbitMQ's own endpoint as Prometheus scrapes it.", "short",
            [prom(f"min(fleet_broker_up{{{API}}})", "from the API"), prom(f"min(up{{{BROKER}}})", "scrape")],
            min=0, max=1,
        ),
        w=6,
    )  # fmt: skip
    d.add(
        timeseries(
            "Workers", "Workers with a live heartbeat, busy and idle, and consumers on the queue as the broker counts them.", "short",
            [prom(f'sum(fleet_workers{{{API}, state="busy"}})', "busy"),
             prom(f'sum(fleet_workers{{{API}, state="idle"}})', "idle"),
             prom(f"sum(fleet_queue_consumers{{{API}}})", "consumers")],
        ),
        w=8,
    )  # fmt: skip
    d.add(
        timeseries(
            "Redeliveries", "Segments that came back to a worker because their first worker died or lost the broker, per second.", "short",
            [prom(f"sum(rate(fleet_worker_redeliveries_total{{{WORKER}}}[$__rate_interval]))", "workers"),
             prom(f"sum(rate(rabbitmq_channel_messages_redelivered_total{{{BROKER}}}[$__rate_interval]))", "broker")],
        ),
        w=8,
    )  # fmt: skip
    d.add(
        timeseries(
            "Broker queue", "RabbitMQ's own counts: messages ready and delivered-not-acknowledged (with prefetch 1, at most one per worker).", "short",
            [prom(f"sum(rabbitmq_queue_messages_ready{{{BROKER}}})", "ready"),
             prom(f"sum(rabbitmq_queue_messages_unacked{{{BROKER}}})", "unacked")],
        ),
        w=8,
    )  # fmt: skip
    d.row("Fleet bottleneck (developers)")
    d.add(
        timeseries(
            "Frames/s per worker against its capacity", "Each worker's delivered frames/s ÷ its calibrated capacity: the low one holds the fleet back.", "percentunit",
            [prom(f"sum by (instance) (rate(fleet_worker_frames_total{{{WORKER}}}[$__rate_interval])) / max by (instance) (fleet_worker_capacity_frames_per_second{{{WORKER}}})", "{{instance}}")],
            min=0,
        ),
        w=12,
    )  # fmt: skip
    d.add(
        panel(
            "table", "Bottleneck stage per worker", "The stage each busy worker's pipeline verdict names (input: the worker waits for frames — decoding or the queue is the limit).", "short",
            [prom(f"max by (instance, stage) (inference_pipeline_bottleneck{{{WORKER}}}) == 1", "", instant=True, fmt="table")],
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Segment duration", "p50 and p95 of one segment's time on a worker (decode to results written); keep p95 far below RabbitMQ's consumer_timeout.", "s",
            [prom(f"histogram_quantile(0.5, sum by (le) (rate(fleet_worker_segment_duration_seconds_bucket{{{WORKER}}}[$__rate_interval])))", "p50"),
             prom(f"histogram_quantile(0.95, sum by (le) (rate(fleet_worker_segment_duration_seconds_bucket{{{WORKER}}}[$__rate_interval])))", "p95")],
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Stage time per worker", "Mean time per call of each pipeline stage across the fleet's workers: the stage that grows is the one to scale.", "s",
            [prom(f"sum by (stage) (rate(inference_stage_duration_seconds_sum{{{WORKER}}}[$__rate_interval])) / sum by (stage) (rate(inference_stage_duration_seconds_count{{{WORKER}}}[$__rate_interval]))", "{{stage}}")],
        ),
        w=12,
    )  # fmt: skip
    return d.json()
