"""The OTLP sink, through the real opentelemetry-exporter-otlp, to a protobuf receiver."""

from __future__ import annotations

import loglog
from tests.doubles.otlp import OtlpReceiver


def test_records_arrive_as_otlp_log_records_with_severity_attributes_and_trace(monkeypatch):
    """Body, severity, attributes, logger name, trace context and the OTEL_SERVICE_NAME
    resource all survive the trip through the standard exporter."""
    from opentelemetry.sdk.trace import TracerProvider

    monkeypatch.setenv("OTEL_SERVICE_NAME", "inference-test")
    tracer = TracerProvider().get_tracer("t")
    with OtlpReceiver() as receiver:
        loglog.configure(console=None, otlp_endpoint=receiver.endpoint, registry=None)
        log = loglog.get_logger("decoder")
        with tracer.start_as_current_span("frame") as span:
            log.warning("slow frame", stream="cam1", ms=41.5, tags=["a", "b"])
            trace_id = span.get_span_context().trace_id
        log.info("plain")
        assert loglog.flush(timeout=10)
        records = receiver.records
    assert len(records) == 2
    resource, warning = records[0]
    assert resource["service.name"] == "inference-test"
    assert warning.body.string_value == "slow frame"
    assert warning.severity_text == "WARNING" and warning.severity_number == 13
    attributes = {a.key: a.value for a in warning.attributes}
    assert attributes["stream"].string_value == "cam1"
    assert attributes["ms"].double_value == 41.5
    assert attributes["tags"].string_value == '["a", "b"]'
    assert attributes["logger.name"].string_value == "decoder"
    assert int.from_bytes(warning.trace_id, "big") == trace_id
    assert records[1][1].trace_id == b""
    assert loglog.stats()["delivered"][("otlp", "warning")] == 1


def test_otlp_is_enabled_by_the_standard_environment(monkeypatch):
    """OTEL_LOGS_EXPORTER=otlp plus OTEL_EXPORTER_OTLP_LOGS_ENDPOINT turns the sink on."""
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", receiver.endpoint)
        loglog.configure(console=None, registry=None)
        loglog.get_logger("env").error("from env")
        assert loglog.flush(timeout=10)
        assert [r.body.string_value for _, r in receiver.records] == ["from env"]
