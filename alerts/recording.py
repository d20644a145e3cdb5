"""Recording rules, named ``level:metric:operations``, shared by alerts and dashboards."""

from __future__ import annotations

from typing import Any

from .config import SLO_WINDOWS, Config


def recording_rules(cfg: Config) -> list[dict[str, Any]]:
    """Every recording rule, as Prometheus rule dicts."""
    job = cfg.inference
    le = repr(float(cfg.latency_slo_seconds))
    rules: list[dict[str, Any]] = [
        {
            "record": "job_stage:inference_stage_utilization:ratio",
            "expr": (
                f"sum by (job, stage) (rate(inference_stage_busy_seconds_total{{{job}}}[1m]))"
                f" / sum by (job, stage) (inference_stage_workers{{{job}}})"
            ),
        },
        {
            "record": "job:inference_delivered_items:rate5m",
            "expr": f'sum by (job) (rate(inference_stage_items_total{{{job}, stage="encode"}}[5m]))',
        },
        {
            "record": "job:inference_requests:rate5m",
            "expr": f'sum by (job) (rate(inference_requests_total{{{job}, status=~"ok|error"}}[5m]))',
        },
        {
            "record": "job:inference_pipeline_efficiency:ratio",
            "expr": f"avg by (job) (inference_pipeline_efficiency_ratio{{{job}}})",
        },
        {
            "record": "job:inference_engine_efficiency:ratio",
            "expr": f"avg by (job) (inference_engine_efficiency_ratio{{{job}}})",
        },
        {
            "record": "job:inference_capacity_items:max",
            "expr": f"max by (job) (inference_model_capacity_items_per_second{{{job}}})",
        },
    ]
    for quantile in (0.5, 0.99):
        label = f"p{int(quantile * 100)}"
        rules.append(
            {
                "record": f"job_stage:inference_stage_duration_seconds:{label}",
                "expr": f"histogram_quantile({quantile}, sum by (job, stage, le) "
                f"(rate(inference_stage_duration_seconds_bucket{{{job}}}[5m])))",
            }
        )
    for quantile in (0.5, 0.95, 0.99):
        label = f"p{int(quantile * 100)}"
        rules.append(
            {
                "record": f"job:inference_request_duration_seconds:{label}",
                "expr": f"histogram_quantile({quantile}, sum by (job, le) "
                f"(rate(inference_request_duration_seconds_bucket{{{job}}}[5m])))",
            }
        )
    for window in SLO_WINDOWS:
        # Availability: a request shed under overload (refused with a 503, or dropped from a
        # queue past its deadline) is a failed request, not a slow one; "or … * 0" keeps
        # the ratio for a server that exports no shed series.
        errors = f'sum by (job) (rate(inference_requests_total{{{job}, status="error"}}[{window}]))'
        answered = (
            f'sum by (job) (rate(inference_requests_total{{{job}, status=~"ok|error"}}[{window}]))'
        )
        shed = f"(sum by (job) (rate(inference_requests_shed_total{{{job}}}[{window}])) or {answered} * 0)"
        rules.append(
            {
                "record": f"job:inference_request_errors:ratio_rate{window}",
                "expr": f"({errors} + {shed}) / ({answered} + {shed})",
            }
        )
        # Slow = finished later than the SLO, or still in flight and already older than it
        # (a stuck request is a miss before it ends). The in-flight ones are spread over
        # the window as a rate; one that finishes inside the window may count twice — the
        # error is on the side of paging.
        count = f"sum by (job) (rate(inference_request_duration_seconds_count{{{job}}}[{window}]))"
        fast = f'sum by (job) (rate(inference_request_duration_seconds_bucket{{{job}, le="{le}"}}[{window}]))'
        stuck = (
            f'(sum by (job) (max_over_time(inference_requests_inflight{{{job}, older_than="{cfg.older_than}"}}[{window}]))'
            f" / {_seconds(window)} or {count} * 0)"
        )
        rules.append(
            {
                "record": f"job:inference_request_slow:ratio_rate{window}",
                "expr": f"({count} - {fast} + {stuck}) / ({count} + {stuck})",
            }
        )
    rules += [
        {
            "record": "gpu:gpu_memory_used:ratio",
            "expr": f"gpu_memory_used_bytes{{{cfg.agent}}} / gpu_memory_total_bytes{{{cfg.agent}}}",
        },
        {
            "record": "job:gpu_utilization:avg",
            "expr": f"avg by (job) (gpu_utilization_ratio{{{cfg.agent}}})",
        },
    ]
    return rules


def _seconds(duration: str) -> int:
    """A PromQL duration like 5m, 1h or 3d in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(duration[:-1]) * units[duration[-1]]


def recorded_names(cfg: Config | None = None) -> set[str]:
    """Names of the recording rules (allowed in queries next to declared metrics)."""
    return {rule["record"] for rule in recording_rules(cfg or Config())}
