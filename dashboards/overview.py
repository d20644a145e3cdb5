"""Service overview — for managers: how much, on target, how much headroom."""

from __future__ import annotations

from typing import Any

from alerts.config import Config

from . import variables as v
from .builder import Dashboard, gauge, prom, stat, text_variable, thresholds, timeseries

UID = "loglog-overview"
SEL = 'job=~"$job"'


def build(cfg: Config) -> dict[str, Any]:
    budget = cfg.budget
    d = Dashboard(
        UID,
        "loglog · Service overview",
        "How much was processed, whether we are on target, and how much headroom is left.",
        ["loglog", "managers"],
        [v.prometheus(), v.job(), text_variable("daily_target", "Daily target (items)", "1000000")],
    )
    processed_day = f'sum(increase(inference_stage_items_total{{{SEL}, stage="encode"}}[1d]))'
    processed_week = f'sum(increase(inference_stage_items_total{{{SEL}, stage="encode"}}[7d]))'
    d.row("Volume and target")
    d.add(
        stat(
            "Items processed, last 24 h",
            "Frames and requests that came out of the pipeline in the last 24 hours.",
            "short",
            [prom(processed_day, "items", instant=True)],
        ),
        w=6,
        h=5,
    )
    d.add(
        stat(
            "Items processed, last 7 days",
            "Frames and requests that came out of the pipeline in the last 7 days.",
            "short",
            [prom(processed_week, "items", instant=True)],
        ),
        w=6,
        h=5,
    )
    d.add(
        stat(
            "Last 24 h vs daily target", "Items processed in the last 24 hours as a share of the daily target (set the target in the variable above).",
            "percentunit", [prom(f"{processed_day} / $daily_target", "of target", instant=True)],
            thresholds=thresholds((None, "red"), (0.8, "orange"), (1.0, "green")),
        ),
        w=6, h=5,
    )  # fmt: skip
    d.add(
        stat(
            "Last 7 days vs weekly target", "Items processed in the last 7 days against seven daily targets.",
            "percentunit", [prom(f"{processed_week} / (7 * $daily_target)", "of target", instant=True)],
            thresholds=thresholds((None, "red"), (0.8, "orange"), (1.0, "green")),
        ),
        w=6, h=5,
    )  # fmt: skip
    d.row("Service level")
    d.add(
        timeseries(
            "Throughput",
            "Items delivered per second, per job (recording rule job:inference_delivered_items:rate5m).",
            "reqps",
            [prom(f"job:inference_delivered_items:rate5m{{{SEL}}}", "{{job}}")],
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Latency", "End-to-end latency of items (from ingest or HTTP receipt to output), percentiles across replicas.",
            "s",
            [prom(f"job:inference_request_duration_seconds:p50{{{SEL}}}", "p50 {{job}}"),
             prom(f"job:inference_request_duration_seconds:p95{{{SEL}}}", "p95 {{job}}"),
             prom(f"job:inference_request_duration_seconds:p99{{{SEL}}}", "p99 {{job}}")],
        ),
        w=12,
    )  # fmt: skip
    # A request is bad when it failed, finished later than the latency SLO, or is still
    # in flight and already older than it (a stuck request is a miss before it ends).
    le = repr(float(cfg.latency_slo_seconds))
    bad_30d = (
        f'(sum(increase(inference_requests_total{{{SEL}, status="error"}}[30d]))'
        f" + sum(increase(inference_request_duration_seconds_count{{{SEL}}}[30d]))"
        f' - sum(increase(inference_request_duration_seconds_bucket{{{SEL}, le="{le}"}}[30d]))'
        f' + (sum(inference_requests_inflight{{{SEL}, older_than="{cfg.older_than}"}}) or vector(0)))'
        f' / (sum(increase(inference_requests_total{{{SEL}, status=~"ok|error"}}[30d]))'
        f' + (sum(inference_requests_inflight{{{SEL}, older_than="{cfg.older_than}"}}) or vector(0)))'
    )
    slo = f"fail, or take longer than {cfg.latency_slo_seconds:g}s (in flight and older counts too)"
    d.add(
        stat(
            "SLO attainment, 30 days",
            f"Share of requests that succeeded within {cfg.latency_slo_seconds:g}s over 30 days; the SLO is {cfg.slo_target:.0%}. Bad requests {slo}.",
            "percentunit",
            [prom(f"1 - {bad_30d}", "attainment", instant=True)],
            thresholds=thresholds((None, "red"), (cfg.slo_target, "green")),
        ),
        w=6,
        h=5,
    )
    d.add(
        stat(
            "Error budget left, 30 days",
            f"Share of the 30-day error budget ({budget:.2%} of requests) not yet spent, errors and latency together; below 0 the SLO is missed.",
            "percentunit",
            [prom(f"1 - {bad_30d} / {budget}", "budget left", instant=True)],
            thresholds=thresholds((None, "red"), (0.25, "orange"), (0.5, "green")),
        ),
        w=6,
        h=5,
    )
    d.add(
        stat(
            "Live streams",
            "Video streams currently being processed.",
            "short",
            [prom(f"sum(inference_streams_active{{{SEL}}})", "streams", instant=True)],
        ),
        w=6,
        h=5,
    )
    headroom = (
        f"(sum(job:inference_capacity_items:max{{{SEL}}}) - sum(job:inference_delivered_items:rate5m{{{SEL}}}))"
        f" / (sum(job:inference_delivered_items:rate5m{{{SEL}}}) / sum(inference_streams_active{{{SEL}}}))"
        # No headroom while a stage is stalled: delivered drops, but nothing more would fit.
        f" and on () (max(inference_stage_stalled{{{SEL}}}) or vector(0)) == 0"
    )
    d.add(
        stat(
            "Capacity headroom (streams)",
            "How many more streams like the current ones fit before the model is the limit: spare model capacity ÷ items/s per stream. Empty when no stream runs, and while a stage is stalled (nothing more would fit).",
            "short",
            [prom(headroom, "streams", instant=True)],
            decimals=1,
        ),
        w=6,
        h=5,
    )
    d.row("Efficiency")
    d.add(
        gauge(
            "Pipeline efficiency",
            "Delivered items/s ÷ the model's own capacity (calibrated at start-up): how much of what the model can do the pipeline delivers.",
            "percentunit",
            [prom(f"job:inference_pipeline_efficiency:ratio{{{SEL}}}", "{{job}}")],
            thresholds=thresholds((None, "red"), (0.5, "orange"), (0.9, "green")),
        ),
        w=8,
        h=7,
    )
    d.add(
        gauge(
            "GPU fleet utilization",
            "Mean NVML GPU utilization over all GPUs (share of time any kernel ran). No data on CPU-only nodes.",
            "percentunit",
            [prom("avg(gpu_utilization_ratio)", "GPUs")],
        ),
        w=8,
        h=7,
    )
    d.add(
        timeseries(
            "Capacity vs delivered",
            "Model-only capacity (best batch size) against items delivered per second.",
            "reqps",
            [
                prom(f"job:inference_capacity_items:max{{{SEL}}}", "capacity {{job}}"),
                prom(f"job:inference_delivered_items:rate5m{{{SEL}}}", "delivered {{job}}"),
            ],
        ),
        w=8,
        h=7,
    )
    return d.json()
