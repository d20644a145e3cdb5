"""Every metric loglog exports, declared here and nowhere else.

Values are read at scrape time from loglog's lock-free counters (see
:mod:`loglog.counters`) by :class:`LoglogCollector`; nothing on the logging path touches
prometheus_client, whose values are guarded by locks. The collector needs the
``prometheus`` extra; the names and :data:`METRICS` are the table of what it exports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .errors import MissingExtra
from .stats import Stats

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # the logger alone: the names above are all it lacks
    raise MissingExtra("prometheus", "loglog.metrics", exc.name) from None

RECORDS_TOTAL = "loglog_records_total"
DROPPED_TOTAL = "loglog_dropped_total"
DELIVERED_TOTAL = "loglog_delivered_total"
QUEUE_RECORDS = "loglog_queue_records"
QUEUE_CAPACITY = "loglog_queue_capacity_records"
SINK_ERRORS_TOTAL = "loglog_sink_errors_total"
SINK_LATENCY_SECONDS = "loglog_sink_latency_seconds"
SPILL_BYTES = "loglog_spill_bytes"
REPLAYED_TOTAL = "loglog_replayed_total"
TRUNCATED_TOTAL = "loglog_truncated_total"
INTERNAL_ERRORS_TOTAL = "loglog_internal_errors_total"
SPOOL_OVERWRITTEN_TOTAL = "loglog_spool_overwritten_total"
SINK_RESTARTS_TOTAL = "loglog_sink_restarts_total"
RENDER_TIMEOUTS_TOTAL = "loglog_render_timeouts_total"
SPOOL_ENABLED = "loglog_spool_enabled"

#: name → (type, help). Dashboards and alerts may only use names declared here.
METRICS: dict[str, tuple[str, str]] = {
    RECORDS_TOTAL: ("counter", "Records emitted by log calls, by level."),
    DROPPED_TOTAL: (
        "counter",
        "Records dropped, by level, reason and sink (sink=all: dropped before any sink).",
    ),
    DELIVERED_TOTAL: ("counter", "Records delivered, by sink and level."),
    QUEUE_RECORDS: ("gauge", "Records waiting in the caller-side queue."),
    QUEUE_CAPACITY: ("gauge", "Capacity of the caller-side queue (DEBUG/INFO plus WARNING+)."),
    SINK_ERRORS_TOTAL: ("counter", "Sink write failures, by sink."),
    SINK_LATENCY_SECONDS: ("histogram", "Time one sink write of a batch took, by sink."),
    SPILL_BYTES: ("gauge", "Bytes of batches waiting in the disk spill."),
    REPLAYED_TOTAL: ("counter", "Records recovered from an earlier process, by source."),
    TRUNCATED_TOTAL: ("counter", "Records whose line was truncated to the sink's limit."),
    INTERNAL_ERRORS_TOTAL: ("counter", "Failures inside loglog itself (a bug: please report)."),
    SPOOL_OVERWRITTEN_TOTAL: (
        "counter",
        "WARNING+ records that lost crash protection because the spool ring was full.",
    ),
    SINK_RESTARTS_TOTAL: (
        "counter",
        "Sink or sender threads that died on an exception and were restarted, by sink.",
    ),
    RENDER_TIMEOUTS_TOTAL: (
        "counter",
        "Records whose user __str__/__repr__ outlasted render_timeout (written <timed out>).",
    ),
    SPOOL_ENABLED: (
        "gauge",
        "1 when WARNING+ records are crash-protected; 0 without spill_dir or with no room.",
    ),
}


class LoglogCollector(Collector):
    """Exposes the stats of the current pipeline; register once per registry."""

    def __init__(self, stats: Callable[[], Stats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:
            return
        records = CounterMetricFamily(RECORDS_TOTAL, METRICS[RECORDS_TOTAL][1], labels=["level"])
        for level, count in sorted(stats.emitted.items()):
            records.add_metric([level], count)
        yield records
        dropped = CounterMetricFamily(
            DROPPED_TOTAL, METRICS[DROPPED_TOTAL][1], labels=["level", "reason", "sink"]
        )
        for (sink, level, reason), count in sorted(stats.dropped.items()):
            dropped.add_metric([level, str(reason), sink], count)  # the value, as a plain str
        yield dropped
        delivered = CounterMetricFamily(
            DELIVERED_TOTAL, METRICS[DELIVERED_TOTAL][1], labels=["sink", "level"]
        )
        for (sink, level), count in sorted(stats.delivered.items()):
            delivered.add_metric([sink, level], count)
        yield delivered
        yield GaugeMetricFamily(QUEUE_RECORDS, METRICS[QUEUE_RECORDS][1], value=stats.queued)
        yield GaugeMetricFamily(QUEUE_CAPACITY, METRICS[QUEUE_CAPACITY][1], value=stats.capacity)
        errors = CounterMetricFamily(
            SINK_ERRORS_TOTAL, METRICS[SINK_ERRORS_TOTAL][1], labels=["sink"]
        )
        latency = HistogramMetricFamily(
            SINK_LATENCY_SECONDS, METRICS[SINK_LATENCY_SECONDS][1], labels=["sink"]
        )
        for sink, histogram in sorted(stats.latency.items()):
            errors.add_metric([sink], stats.sink_errors.get(sink, 0))
            buckets, total = histogram.cumulative()
            latency.add_metric([sink], buckets, total)
        yield errors
        yield latency
        yield GaugeMetricFamily(SPILL_BYTES, METRICS[SPILL_BYTES][1], value=stats.spill_bytes)
        replayed = CounterMetricFamily(
            REPLAYED_TOTAL, METRICS[REPLAYED_TOTAL][1], labels=["source"]
        )
        for source, count in sorted(stats.replayed.items()):
            replayed.add_metric([source], count)
        yield replayed
        truncated = CounterMetricFamily(
            TRUNCATED_TOTAL, METRICS[TRUNCATED_TOTAL][1], labels=["sink"]
        )
        for sink, count in sorted(stats.truncated.items()):
            truncated.add_metric([sink], count)
        yield truncated
        yield CounterMetricFamily(
            INTERNAL_ERRORS_TOTAL,
            METRICS[INTERNAL_ERRORS_TOTAL][1],
            value=stats.internal_errors,
        )
        restarts = CounterMetricFamily(
            SINK_RESTARTS_TOTAL, METRICS[SINK_RESTARTS_TOTAL][1], labels=["sink"]
        )
        for sink in sorted(stats.latency):
            restarts.add_metric([sink], stats.sink_restarts.get(sink, 0))
        yield restarts
        yield CounterMetricFamily(
            RENDER_TIMEOUTS_TOTAL,
            METRICS[RENDER_TIMEOUTS_TOTAL][1],
            value=stats.render_timeouts,
        )
        yield GaugeMetricFamily(
            SPOOL_ENABLED, METRICS[SPOOL_ENABLED][1], value=int(stats.spool.enabled)
        )
        yield CounterMetricFamily(
            SPOOL_OVERWRITTEN_TOTAL,
            METRICS[SPOOL_OVERWRITTEN_TOTAL][1],
            value=stats.spool_overwritten,
        )
