"""OpenTelemetry context: captured cheaply on the caller, turned into ids on the worker.

The caller only reads the current context (one ``ContextVar.get``, ~50 ns); the span and
its ids are looked up on the worker thread, so tracing costs a log call almost nothing.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from typing import Any

try:
    from opentelemetry.context import Context as CONTEXT
except ImportError:  # the logger alone (no 'otlp' extra): no context is ever captured

    class CONTEXT(dict):  # type: ignore[no-redef]
        """Stands in for OpenTelemetry's Context where it is missing."""


def context_getter() -> Callable[[], Any]:
    """Return the fastest function that yields the current OpenTelemetry context: the
    ``get`` of the ContextVar that holds it (~30 ns, a log call pays it), else the API's
    ``get_current`` (~130 ns: two Python frames around the same read)."""
    try:
        from opentelemetry import context as otel_context
    except ImportError:  # the logger alone (no 'otlp' extra): no context to capture
        return _none
    variable = _context_variable(otel_context)
    if variable is not None:
        return variable.get
    return otel_context.get_current


def _context_variable(otel_context: Any) -> contextvars.ContextVar[Any] | None:
    """The ContextVar behind OpenTelemetry's runtime context, found through public API only:
    attach a fresh context inside an empty ``contextvars.Context`` and see which variable
    holds it. None where the runtime context is not kept in a ContextVar."""
    marker = otel_context.Context()

    def find() -> contextvars.ContextVar[Any] | None:
        token = otel_context.attach(marker)
        try:
            for variable, value in contextvars.copy_context().items():
                if value is marker:
                    return variable
            return None
        finally:
            otel_context.detach(token)

    try:
        return contextvars.Context().run(find)
    except Exception:  # pragma: no cover - a runtime context that refuses: the slow getter
        return None


def default_context() -> Any:
    """What :func:`context_getter`'s function returns while no context is attached (the
    variable's default, read in an empty ``contextvars.Context``); None without it."""
    try:
        return contextvars.Context().run(context_getter())
    except Exception:  # pragma: no cover - a getter that cannot run outside a context
        return None


def span_ids(context: Any, *, foreign: bool = False) -> tuple[str | None, str | None]:
    """``(trace_id, span_id)`` as lower-case hex of the span current in ``context``.

    Runs no code of anyone's but OpenTelemetry's unless ``foreign``: a span of a class
    that is not the API's or the SDK's (a vendor's tracer) is asked for its ids only with
    ``foreign=True``, which the bounded render helper passes (see :func:`plain_context`).
    """
    if type(context) is not CONTEXT or not context:  # not len() of just anything
        return None, None
    known = _known()
    span: Any = dict.get(context, known.span_key)
    if span is None or (not foreign and not known.is_span(type(span))):
        return None, None
    try:
        span_context: Any = span.get_span_context()
        if not isinstance(span_context, known.span_context):
            return None, None
        # SpanContext is a tuple: (trace_id, span_id, is_remote, flags, state, is_valid).
        trace_id, span_id, valid = (tuple.__getitem__(span_context, i) for i in (0, 1, 5))
    except Exception:
        return None, None
    if valid is not True or type(trace_id) is not int or type(span_id) is not int:
        return None, None
    return "%032x" % trace_id, "%016x" % span_id  # noqa: UP031 - no __format__ of anyone's


def plain_context(context: Any) -> bool:
    """True when :func:`span_ids` needs no code but OpenTelemetry's for ``context``
    (nearly always: no span, or a span of one of OpenTelemetry's own classes)."""
    if type(context) is not CONTEXT or not context:
        return True  # no span, or not a Context: no ids, and nothing of it is called
    known = _known()
    span = dict.get(context, known.span_key)
    return span is None or known.is_span(type(span))


class _Known:
    """OpenTelemetry's context and span classes, imported on the first non-empty context
    (a process that never traces never imports them)."""

    def __init__(self) -> None:
        from opentelemetry.trace import (
            INVALID_SPAN,
            NonRecordingSpan,
            SpanContext,
            set_span_in_context,
        )

        self.span_context: Any = SpanContext
        # The key a span is stored under, through public API: the one key of an empty
        # context with a span set in it.
        (self.span_key,) = set_span_in_context(INVALID_SPAN, CONTEXT()).keys()
        self._spans: set[type] = {NonRecordingSpan}
        self._sdk_seen = False

    def is_span(self, kind: type) -> bool:
        if kind in self._spans:
            return True
        sdk = sys.modules.get("opentelemetry.sdk.trace")  # the SDK, once someone imported it
        if sdk is not None and not self._sdk_seen:
            self._sdk_seen = True
            classes = (getattr(sdk, "Span", None), getattr(sdk, "_Span", None))
            self._spans = self._spans | {c for c in classes if isinstance(c, type)}
            return kind in self._spans
        return False


_KNOWN: list[_Known] = []


def _known() -> _Known:
    if not _KNOWN:
        _KNOWN.append(_Known())
    return _KNOWN[0]


def _none() -> None:
    return None
