"""Self-metrics: names declared in loglog.metrics, values from the live counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

import loglog
from loglog.metrics import METRICS
from loglog.testing import ListSink


def test_every_exported_family_is_declared_and_values_track_the_logger():
    """A fresh registry scraped after logging shows the declared families with live values."""
    registry = CollectorRegistry()

    class Fails:
        name = "fails"

        def write(self, records):
            raise OSError("x")

    loglog.configure(console=None, sinks=[ListSink(), Fails()], registry=registry)
    log = loglog.get_logger("m")
    for _ in range(7):
        log.info("i")
    log.warning("w")
    loglog.flush()
    text = generate_latest(registry).decode()
    families = {m.name for m in registry.collect()}
    declared = {name.removesuffix("_total") for name in METRICS}
    assert families == declared
    assert 'loglog_records_total{level="info"} 7.0' in text
    assert 'loglog_delivered_total{level="info",sink="list"} 7.0' in text
    assert 'loglog_dropped_total{level="info",reason="sink_error",sink="fails"} 7.0' in text
    assert 'loglog_sink_errors_total{sink="fails"}' in text
    assert 'loglog_sink_latency_seconds_count{sink="list"}' in text


def test_declared_names_follow_prometheus_conventions():
    """Base units and suffixes: counters end in _total, no colons in instrumented names."""
    for name, (kind, help_text) in METRICS.items():
        assert name.startswith("loglog_") and ":" not in name and help_text
        assert (kind == "counter") == name.endswith("_total"), name
