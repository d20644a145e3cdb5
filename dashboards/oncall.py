"""On-call — what is firing, how fast the budget burns, where the queue is."""

from __future__ import annotations

from typing import Any

from alerts.config import SLO_WINDOWS, Config

from . import variables as v
from .builder import Dashboard, panel, prom, stat, thresholds, timeseries
from .builder import loki as loki_query

UID = "loglog-oncall"
SEL = 'job=~"$job"'


def build(cfg: Config) -> dict[str, Any]:
    budget = cfg.budget
    d = Dashboard(
        UID,
        "loglog · On-call",
        "What is firing, how fast the error budget burns, where the queue is, and the latest errors.",
        ["loglog", "on-call"],
        [v.prometheus(), v.loki(), v.job()],
    )
    d.row("Alerts and targets")
    d.add(
        panel(
            "table", "Firing alerts", "Alerts firing now, with severity; each links to its runbook through its runbook_url annotation in Alertmanager.",
            "short", [prom('ALERTS{alertstate="firing"}', "", instant=True, fmt="table")],
            options={"showHeader": True},
        ),
        w=16, h=8,
    )  # fmt: skip
    d.add(
        stat(
            "Targets down",
            "Scrape targets that do not answer (up == 0). 0 is healthy.",
            "short",
            [prom("count(up == 0) or vector(0)", "down", instant=True)],
            thresholds=thresholds((None, "green"), (1, "red")),
        ),
        w=8,
        h=8,
    )
    d.row("Error budget")
    for ratio, title in (
        ("job:inference_request_errors:ratio_rate", "Error budget burn rate (errors)"),
        (
            "job:inference_request_slow:ratio_rate",
            f"Error budget burn rate (latency > {cfg.latency_slo_seconds:g}s)",
        ),
    ):
        d.add(
            timeseries(
                title,
                f"Burn rate per window = bad-request ratio ÷ budget ({budget:.2%}). Pages at 14.4× (1h and 5m) and 6× (6h and 30m); tickets at 3× (1d and 2h) and 1× (3d and 6h).",
                "suffix:×",
                [prom(f"{ratio}{window}{{{SEL}}} / {budget}", f"{window} {{{{job}}}}") for window in SLO_WINDOWS],
                thresholds=thresholds((None, "green"), (1, "orange"), (6, "red")),
            ),
            w=12,
        )  # fmt: skip
    d.add(
        timeseries(
            "Error ratio",
            "Failed requests ÷ all requests over 5 minutes (client mistakes, counted as rejected, are excluded).",
            "percentunit",
            [prom(f"job:inference_request_errors:ratio_rate5m{{{SEL}}}", "{{job}}")],
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Latency p99",
            "99th percentile of end-to-end item latency.",
            "s",
            [prom(f"job:inference_request_duration_seconds:p99{{{SEL}}}", "{{job}}")],
        ),
        w=12,
    )
    d.row("Pipeline")
    d.add(
        timeseries(
            "Queue saturation",
            "Depth ÷ capacity of the queue in front of each stage; a queue that stays full points at the stage behind it.",
            "percentunit",
            [
                prom(
                    f"inference_queue_depth{{{SEL}}} / inference_queue_capacity{{{SEL}}}",
                    "{{instance}} {{queue}}",
                )
            ],
            max=1,
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Frames dropped",
            "Frames dropped per second by reason (behind: pipeline too slow for a live stream; late: source too slow).",
            "short",
            [
                prom(
                    f"sum by (reason) (rate(inference_frames_dropped_total{{{SEL}}}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
        ),
        w=12,
    )
    d.add(
        panel(
            "logs", "Recent errors", "ERROR and CRITICAL log records of every service, newest first (Loki).", "none",
            [loki_query('{service=~".+", level=~"error|critical"}')],
            options={"showTime": True, "sortOrder": "Descending", "wrapLogMessage": True},
        ),
        w=24, h=10,
    )  # fmt: skip
    return d.json()
