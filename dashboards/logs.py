"""Logs — volume by level and service (Loki), and loglog's own health (drops, spill, latency)."""

from __future__ import annotations

from typing import Any

from alerts.config import Config

from . import variables as v
from .builder import Dashboard, panel, prom, timeseries
from .builder import loki as loki_query

UID = "loglog-logs"


def build(cfg: Config) -> dict[str, Any]:
    d = Dashboard(
        UID,
        "loglog · Logs",
        "Log volume by level and service (Loki) and the logger's own health: drops by reason, the disk spill, sink latency.",
        ["loglog", "logs"],
        [v.prometheus(), v.loki()],
    )
    d.row("Volume")
    d.add(
        timeseries(
            "Log lines by level and service", "Lines per interval from Loki, by service and level.", "short",
            [loki_query('sum by (service, level) (count_over_time({service=~".+"}[$__interval]))', "{{service}} {{level}}")],
        ),
        w=12,
    )  # fmt: skip
    d.add(
        timeseries(
            "Records emitted by level",
            "Log calls per second seen by loglog in each process (before any drop).",
            "short",
            [
                prom(
                    "sum by (job, level) (rate(loglog_records_total[$__rate_interval]))",
                    "{{job}} {{level}}",
                )
            ],
        ),
        w=12,
    )
    d.row("Logger health")
    d.add(
        timeseries(
            "Drops by sink and reason",
            "Records lost per second, with why: queue_full, sink_backlog, sink_timeout, spill_full, http_400… recursion is by design (loglog's own records kept from network sinks).",
            "short",
            [
                prom(
                    "sum by (job, sink, reason) (rate(loglog_dropped_total[$__rate_interval]))",
                    "{{job}} {{sink}} {{reason}}",
                )
            ],
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Delivered by sink",
            "Records delivered per second to each sink.",
            "short",
            [
                prom(
                    "sum by (job, sink) (rate(loglog_delivered_total[$__rate_interval]))",
                    "{{job}} {{sink}}",
                )
            ],
        ),
        w=12,
    )
    d.add(
        timeseries(
            "Spill on disk",
            "Bytes of log batches waiting on disk for Loki (grows while Loki is down).",
            "bytes",
            [prom("sum by (job, instance) (loglog_spill_bytes)", "{{job}} {{instance}}")],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "Sink write latency p99",
            "99th percentile of one batch write per sink.",
            "s",
            [
                prom(
                    "histogram_quantile(0.99, sum by (job, sink, le) (rate(loglog_sink_latency_seconds_bucket[$__rate_interval])))",
                    "{{job}} {{sink}}",
                )
            ],
        ),
        w=8,
    )
    d.add(
        timeseries(
            "Caller-side queue",
            "Records waiting for the worker, against its capacity.",
            "short",
            [
                prom("sum by (job) (loglog_queue_records)", "{{job}} queued"),
                prom("sum by (job) (loglog_queue_capacity_records)", "{{job}} capacity"),
            ],
        ),
        w=8,
    )
    d.add(
        panel(
            "logs", "Warnings and errors", "WARNING and above from every service (Loki), newest first.", "none",
            [loki_query('{service=~".+", level=~"warning|error|critical"}')],
            options={"showTime": True, "sortOrder": "Descending", "wrapLogMessage": True},
        ),
        w=24, h=10,
    )  # fmt: skip
    return d.json()
