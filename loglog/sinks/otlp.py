"""OTLP logs through ``opentelemetry-exporter-otlp`` (HTTP/protobuf).

Endpoint, headers, timeout, compression and certificates follow the standard
``OTEL_EXPORTER_OTLP_[LOGS_]*`` variables; the resource follows ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``. The exporter retries transient failures within its own
timeout on this sink's thread; a batch it gives up on is counted as dropped
(``sink_error``). Whatever the exporter logs about it reaches loglog as an internal
record, which is delivered to local sinks only — never back to this sink.

The exporter encodes a whole batch at once, so one value it cannot encode would cost every
record in it: ints outside int64 are sent as text, trace ids that are not hex are left
out, and a record that still fails to convert is sent as a placeholder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..errors import MissingExtra
from ..format import safe_record
from ..types import CRITICAL, DEBUG, ERROR, INFO, WARNING, Record

_SEVERITY = ((CRITICAL, 21), (ERROR, 17), (WARNING, 13), (INFO, 9), (DEBUG, 5), (0, 1))
_INT64 = 2**63


class OtlpSink:
    """Exports batches with ``OTLPLogExporter``; one export call per batch."""

    local = False
    name = "otlp"

    def __init__(self, endpoint: str | None = None, *, exporter: Any = None) -> None:
        try:
            # The SDK's logs API lives in its underscored modules (still "development"
            # status upstream): these are its documented import paths.
            from opentelemetry._logs import LogRecord, SeverityNumber
            from opentelemetry.sdk._logs import ReadableLogRecord
            from opentelemetry.sdk._logs.export import LogRecordExportResult
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope

            if exporter is None:
                from opentelemetry.exporter.otlp.proto.http._log_exporter import (
                    OTLPLogExporter,
                )

                exporter = OTLPLogExporter(endpoint=endpoint)
        except ImportError as exc:
            raise MissingExtra("otlp", "the OTLP sink", exc.name, option="otlp_endpoint") from None
        self._exporter = exporter
        self._success = LogRecordExportResult.SUCCESS
        self._log_record = LogRecord
        self._readable = ReadableLogRecord
        self._severity = SeverityNumber
        self._resource = Resource.create()
        self._scope = InstrumentationScope("loglog")

    def write(self, records: Sequence[Record]) -> None:
        batch = [self._convert_or_placeholder(record) for record in records]
        if self._exporter.export(batch) != self._success:
            raise RuntimeError("OTLP export failed; the exporter's own log says why")

    def _convert_or_placeholder(self, record: Record) -> Any:
        try:
            return self._convert(record)
        except Exception:  # this record only: the batch is encoded as a whole
            return self._convert(safe_record(record))

    def _convert(self, record: Record) -> Any:
        attributes: dict[str, Any] = {}
        for key, value in record.fields.items():
            kind = type(value)
            if kind is int:
                attributes[key] = value if -_INT64 <= value < _INT64 else str(value)
            elif kind is str or kind is bool or kind is float:
                attributes[key] = value
            else:
                attributes[key] = json.dumps(value, ensure_ascii=False)
        attributes["logger.name"] = record.logger
        if record.thread:
            attributes["thread.name"] = record.thread
        if record.exc_text:
            attributes["exception.stacktrace"] = record.exc_text
        number = next(num for level, num in _SEVERITY if record.level >= level)
        log_record = self._log_record(
            timestamp=record.time_ns,
            observed_timestamp=record.time_ns,
            context=_span_context(record.trace_id, record.span_id),
            severity_text=record.levelname.upper(),
            severity_number=self._severity(number),
            body=record.message,
            attributes=attributes,
        )
        return self._readable(
            log_record=log_record, resource=self._resource, instrumentation_scope=self._scope
        )

    def close(self, timeout: float) -> None:
        self._exporter.shutdown()


def _span_context(trace_id: str | None, span_id: str | None) -> Any:
    """A context whose current span carries the record's ids (how the SDK reads them)."""
    if not trace_id or not span_id or not _hex(trace_id, 32) or not _hex(span_id, 16):
        return None  # a trace_id= field may hold any text
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    span = NonRecordingSpan(
        SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(span)


def _hex(text: str, digits: int) -> bool:
    """Whether ``text`` is ``digits`` hex digits, not all zero (what OTLP accepts)."""
    return (
        len(text) == digits
        and text.isascii()
        and all(c in "0123456789abcdefABCDEF" for c in text)
        and text.strip("0") != ""
    )
