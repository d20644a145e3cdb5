"""OpenTelemetry context: captured cheaply on the caller, turned into ids on the worker.

The caller only reads the current context (one ``ContextVar.get``, ~50 ns); the span and
its ids are looked up on the worker thread, so tracing costs a log call almost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def context_getter() -> Callable[[], Any]:
    """Return the fastest function that yields the current OpenTelemetry context."""
    try:
        from opentelemetry import context as otel_context
    except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
        return _none
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    getter = getattr(variable, "get", None)
    if callable(getter):
        return getter
    return otel_context.get_current


def span_ids(context: Any) -> tuple[str | None, str | None]:
    """``(trace_id, span_id)`` as lower-case hex of the span current in ``context``."""
    if not context:  # an empty Context is an empty mapping
        return None, None
    try:
        from opentelemetry import trace

        span_context = trace.get_current_span(context).get_span_context()
    except Exception:
        return None, None
    if not span_context.is_valid:
        return None, None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def _none() -> None:
    return None
