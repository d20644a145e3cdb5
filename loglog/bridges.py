"""Bridges from the stdlib ``logging`` module and from loguru into loglog.

Both hand records to the same lock-free hot path as :class:`~loglog.Logger`; a library
that logs through ``logging`` (urllib3, the OpenTelemetry exporters, uvicorn) therefore
inherits every loglog guarantee once :func:`install_stdlib` has run.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from .core import CORE, MAX_LEVEL, MAX_TIME_NS
from .plain import exact_name

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


class StdlibHandler(logging.Handler):
    """A ``logging.Handler`` that forwards to loglog without taking the handler lock.

    ``Handler.handle`` normally holds ``self.lock`` around ``emit``; loglog's emit never
    blocks, so the lock would only add a way to deadlock (a signal handler that logs while
    the interrupted frame is inside ``handle``).
    """

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = min(max(int(record.levelno), 0), MAX_LEVEL)  # an exact int
            if level < CORE.threshold:
                return
            fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
            if record.stack_info:
                fields["stack"] = record.stack_info
            exc = record.exc_info if record.exc_info and record.exc_info[1] is not None else None
            CORE.emit(
                level,
                exact_name(record.name),
                _message(record),
                fields,
                None,
                exc,
                _stamp(record.created, fields),
            )
        except Exception:
            pass  # a log call never raises


def _stamp(seconds: object, fields: dict[str, Any]) -> int:
    """A record's own time in ns, or 0 (now) when it is none that every sink can write —
    NaN, before 1970, after 2262 (``created=1e17``): its value is then kept in the
    ``invalid_ts`` field (emit's contract: a time from 0 to MAX_TIME_NS, loglog/core.py)."""
    ns: int | None = None
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        ns = int(seconds) * 1_000_000_000
    elif isinstance(seconds, float) and math.isfinite(float(seconds) * 1e9):
        ns = int(float(seconds) * 1e9)
    if ns is not None and 0 < ns <= MAX_TIME_NS:
        return ns
    fields["invalid_ts"] = repr(ns) if ns is not None else _seconds_text(seconds)
    return 0


def _seconds_text(seconds: object) -> str:
    return repr(seconds) if type(seconds) is float else "<not a number>"


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``; a message or argument whose ``__str__`` raises costs only
    the text, never the record (the stdlib would print a traceback and lose it)."""
    try:
        return record.getMessage()
    except Exception as exc:
        return f"<unrepresentable message: {type(exc).__name__}>"


def install_stdlib(level: int | str | None = None, *, replace: bool = True) -> StdlibHandler:
    """Route the stdlib ``logging`` module into loglog.

    Installs a :class:`StdlibHandler` on the root logger (``replace=True`` removes the
    handlers already there) and sets the root level (default: loglog's level).

    >>> import logging, loglog
    >>> handler = loglog.install_stdlib()
    >>> logging.getLogger("urllib3").warning("retrying %s", "/push")
    """
    from .types import parse_level

    root = logging.getLogger()
    handler = StdlibHandler()
    if replace:
        for old in list(root.handlers):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level) if level is not None else max(CORE.threshold, 1))
    return handler


def loguru_sink(message: Any) -> None:
    """A loguru sink: ``logger.add(loglog.loguru_sink)`` sends loguru records to loglog.

    loguru calls sinks while holding its handler lock; this returns at once, so a slow
    loglog sink can no longer stall every thread that logs through loguru.
    """
    try:
        record = message.record
        level = min(max(int(record["level"].no), 0), MAX_LEVEL)
        if level < CORE.threshold:
            return
        exc = record["exception"]
        exc_info = (exc.type, exc.value, exc.traceback) if exc and exc.value is not None else None
        fields = dict(record["extra"])
        CORE.emit(
            level,
            exact_name(record["name"] or "loguru"),
            record["message"],
            fields,
            None,
            exc_info,
            _stamp(record["time"].timestamp(), fields),
        )
    except Exception:
        pass
