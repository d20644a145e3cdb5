"""The object callers hold: ``loglog.get_logger("decoder").info("frame decoded", ms=3.2)``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .core import CORE, MAX_LEVEL, Core, Fmt, _speedups
from .plain import exact_bound, exact_name
from .types import CRITICAL, DEBUG, ERROR, INFO, TRACE, WARNING


class PyLevels:
    """The level methods in Python: what runs where the C extension is not built.

    ``name`` and ``_bound`` are normalised as they are set (loglog/plain.py), as the C
    ``LoggerBase`` does; the level methods read the normalised slots directly.
    """

    __slots__ = ("_core", "_fields", "_name")
    _name: str
    _fields: dict[str, Any] | None
    _core: Core

    @property
    def name(self) -> str:
        """The logger's name (an exact ``str``)."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = exact_name(value)

    @property
    def _bound(self) -> dict[str, Any] | None:
        """A copy of the fields bound to every record, or None (the logger's own dict is
        never handed out, so nobody can add a key to it)."""
        fields = self._fields
        return dict(fields) if fields else None

    @_bound.setter
    def _bound(self, value: dict[str, Any] | None) -> None:
        self._fields = exact_bound(value)

    def trace(self, msg: object = "", /, *args: Any, **fields: Any) -> None:
        core = self._core
        if core.threshold <= TRACE:
            core.emit(TRACE, self._name, Fmt(msg, args) if args else msg, fields, self._fields)

    def debug(self, msg: object = "", /, *args: Any, **fields: Any) -> None:
        core = self._core
        if core.threshold <= DEBUG:
            core.emit(DEBUG, self._name, Fmt(msg, args) if args else msg, fields, self._fields)

    def info(self, msg: object = "", /, *args: Any, **fields: Any) -> None:
        core = self._core
        if core.threshold <= INFO:
            core.emit(INFO, self._name, Fmt(msg, args) if args else msg, fields, self._fields)

    def warning(self, msg: object = "", /, *args: Any, **fields: Any) -> None:
        core = self._core
        if core.threshold <= WARNING:
            core.emit(WARNING, self._name, Fmt(msg, args) if args else msg, fields, self._fields)

    def error(self, msg: object = "", /, *args: Any, **fields: Any) -> None:
        core = self._core
        if core.threshold <= ERROR:
            core.emit(ERROR, self._name, Fmt(msg, args) if args else msg, fields, self._fields)

    def critical(self, msg: object = "", /, *args: Any, **fields: Any) -> None:
        core = self._core
        if core.threshold <= CRITICAL:
            core.emit(CRITICAL, self._name, Fmt(msg, args) if args else msg, fields, self._fields)


# With the C extension the level methods (and the slots) come from C: the same behaviour,
# without a Python frame per call (loglog/_speedups.c).
if TYPE_CHECKING:
    _Base = PyLevels
else:
    _Base = _speedups.LoggerBase if _speedups is not None else PyLevels


class Logger(_Base):
    """A named logger with bound fields. Cheap to create; safe to share between threads.

    Every method returns immediately: the record is queued and rendered later on loglog's
    worker thread. Values are rendered there, so pass values that you will not mutate
    afterwards (or copies). A disabled level costs one comparison.

    >>> log = get_logger("decoder").bind(stream="cam1")
    >>> log.info("frame decoded", frame=12, ms=3.2)
    >>> log.warning("decoded %d of %d frames", 10, 12)   # %-args, formatted lazily
    """

    __slots__ = ()

    def __init__(self, name: str, bound: dict[str, Any] | None = None, core: Core = CORE) -> None:
        self.name = name  # an exact str from here on (loglog/plain.py)
        self._bound = bound  # a plain dict of exact-str keys that only this logger holds
        self._core = core

    def bind(self, **fields: Any) -> Logger:
        """Return a child logger whose records all carry ``fields``."""
        bound = self._bound  # a copy
        if bound:
            bound.update(fields)
        return Logger(self.name, bound or fields, self._core)

    def is_enabled_for(self, level: int) -> bool:
        return level >= self._core.threshold

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (and copied) by name and bound fields: the copy logs through this
        process's loglog, never through a copy of its state (a multiprocessing child gets
        a logger of its own configuration)."""
        return (Logger, (self.name, self._bound))

    def exception(self, msg: object = "", /, *args: Any, **fields: Any) -> None:
        """Log at ERROR with the exception being handled (its traceback is rendered later)."""
        core = self._core
        if core.threshold <= ERROR:
            msg = Fmt(msg, args) if args else msg
            core.emit(ERROR, self.name, msg, fields, _bound_of(self), sys.exc_info())

    def log(self, level: int, msg: object = "", /, *args: Any, **fields: Any) -> None:
        """Log at any numeric level (clamped to 0–100)."""
        core = self._core
        try:
            level = min(max(int(level), 0), MAX_LEVEL)  # an exact int from here on
        except Exception:
            level = ERROR
        if level >= core.threshold:
            msg = Fmt(msg, args) if args else msg
            core.emit(level, self.name, msg, fields, _bound_of(self))

    warn = _Base.warning

    def __repr__(self) -> str:
        return f"<loglog.Logger {self.name!r} bound={sorted(self._bound or ())}>"


if TYPE_CHECKING or _speedups is None:

    def _bound_of(logger: PyLevels) -> dict[str, Any] | None:
        """The logger's own bound dict (``_bound`` returns a copy); emit only reads it."""
        return logger._fields

else:
    _bound_of = _speedups.bound_of


def get_logger(name: str = "root", **bound: Any) -> Logger:
    """Return a logger called ``name``, optionally with fields bound to every record."""
    return Logger(name, bound or None)
