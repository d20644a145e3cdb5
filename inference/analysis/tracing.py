"""OpenTelemetry traces: a span per sampled frame or request, a child span per stage.

Sampling is decided once, when an item enters the pipeline (``ratio``, reloadable); an
unsampled item costs one random number. Stage spans are created after the fact with the
measured start and end times, so no context has to follow items across threads.
Spans are exported over OTLP when ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is set
(``OTEL_TRACES_EXPORTER=none`` turns that off); trace ids also become exemplars on the
stage histograms and a ``trace_id`` on every log record of the item.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from ..types import Item

_WALL_OFFSET_NS = time.time_ns() - time.perf_counter_ns()


def wall_ns(perf_seconds: float) -> int:
    """Convert a ``time.perf_counter()`` reading into epoch nanoseconds."""
    return _WALL_OFFSET_NS + int(perf_seconds * 1e9)


class Tracing:
    """Owns the tracer provider and the sampling decision."""

    def __init__(self, ratio: float, *, service: str = "inference", exporter: Any = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.ratio = ratio
        attributes = {"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}
        self.provider = TracerProvider(resource=Resource.create(attributes))
        if exporter is None and _exporting():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("loglog.inference")
        self._random = random.random

    def start(self, item: Item, kind: str) -> None:
        """Decide sampling for ``item``; open its root span when sampled."""
        if self.ratio <= 0 or self._random() >= self.ratio:
            return
        span = self.tracer.start_span(kind, attributes={"stream": item.stream, "frame": item.frame})
        item.span = span
        item.trace_id = format(span.get_span_context().trace_id, "032x")

    def stage(self, item: Item, stage: str, started: float, ended: float) -> None:
        """Record a finished stage as a child span (perf_counter seconds)."""
        from opentelemetry import trace

        context = trace.set_span_in_context(item.span)
        child = self.tracer.start_span(stage, context=context, start_time=wall_ns(started))
        child.end(end_time=wall_ns(ended))

    def finish(self, item: Item) -> None:
        if item.span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        if item.error is not None:
            item.span.set_status(Status(StatusCode.ERROR, str(item.error)))
        item.span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def _exporting() -> bool:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
