"""The caller's side: what a log call does, and the shared state every logger reads.

A log call must never block, never take a lock that another thread could hold (a signal
handler or a ``__del__`` may run it in the middle of another log call on the same thread),
and never raise. So the hot path is a closure built once per configuration, made only of
operations that are atomic in CPython and take no lock:

    next(seq) · time_ns() · ContextVar.get() · get_ident() · len(deque) · deque.append()

A record is a plain tuple; all rendering happens later on the worker thread. The only
system call a log call can make is a non-blocking one-byte ``os.write`` to wake the worker
(for WARNING+, at half full, and for the first record while the worker idles), which is
async-signal-safe.

Where the C extension ``loglog._speedups`` is built, the level methods and the DEBUG/INFO
half of this closure run in C (the same steps, without a Python frame: a third of the
instructions); the closure below still takes WARNING+ and everything unusual, and all where
the extension is missing or ``LOGLOG_PURE_PYTHON=1`` is set (read once, at import).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .counters import AtomicCounter
from .message import Fmt
from .plain import exact_bound, exact_name
from .stderr import stderr_line
from .types import WARNING


class CrashSpool(Protocol):
    """What the hot path needs of the crash spool (:class:`loglog.spool.Spool`)."""

    def protect(
        self,
        stamp: int,
        level: int,
        name: str,
        msg: object,
        fields: dict[str, Any],
        bound: dict[str, Any] | None,
        context: Any,
        exc: Any,
    ) -> int: ...


def _load_speedups() -> Any:
    """The C hot path, or None: not built here, or disabled by ``LOGLOG_PURE_PYTHON``."""
    if os.environ.get("LOGLOG_PURE_PYTHON", "").strip() not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    if getattr(_speedups, "API", None) != SPEEDUPS_API:
        stderr_line("loglog: loglog/_speedups is a stale build, running the pure-Python "
                    "hot path; rebuild it with `pip install -e .` (or `make`)\n")  # fmt: skip
        return None
    # Its state is process-wide C statics: a subinterpreter runs the Python path.
    return _speedups if _speedups.usable() else None


#: The interface version of loglog/_speedups.c this module is written against.
SPEEDUPS_API = 5


_speedups = _load_speedups()
#: Whether log calls run loglog's C hot path (``loglog._speedups``) in this process.
SPEEDUPS = _speedups is not None

# Layout of the raw record tuple that travels from the caller to the worker.
SEQ, TIME, LEVEL, NAME, MSG, FIELDS, BOUND, CONTEXT, THREAD, EXC, SLOT = range(11)
RawRecord = tuple[Any, ...]


def _fields_dict(flat: tuple[Any, ...]) -> dict[str, Any]:
    return {exact_name(k): v for k, v in zip(flat[::2], flat[1::2], strict=True)}


#: The dict of a flat ``(name, value, …)`` fields tuple; the C one refuses a name that is
#: not an exact str (the C level methods queue only those).
fields_dict: Callable[[tuple[Any, ...]], dict[str, Any]] = (
    _speedups.fields_dict if _speedups is not None else _fields_dict
)


def as_fields(fields: Any) -> dict[str, Any]:
    """A raw record's fields as a dict. The Python path queues the call's ``**fields``
    dict; the C path a flat tuple ``(name, value, …)`` (cheaper on the caller's thread),
    turned into the dict here, on the worker."""
    return fields_dict(fields) if type(fields) is tuple else fields


MAX_LEVEL = 100
#: The latest record time every sink can write (Loki and OTLP take int64 nanoseconds:
#: the year 2262); an explicit ``time_ns`` must be from 1 to this (0: now).
MAX_TIME_NS = 2**63 - 1

#: emit(level, logger_name, message, fields, bound_fields, exc_info, time_ns=0)
Emit = Callable[..., None]


class LevelCounters:
    """One :class:`AtomicCounter` per level name, reachable by level number in O(1)."""

    def __init__(self) -> None:
        from .types import level_name

        self.by_name: dict[str, AtomicCounter] = {}
        self.by_number: list[AtomicCounter] = []
        for number in range(MAX_LEVEL + 1):
            name = level_name(number)
            if name not in self.by_name:
                self.by_name[name] = AtomicCounter()
            self.by_number.append(self.by_name[name])

    def values(self) -> dict[str, int]:
        return {name: counter.value for name, counter in self.by_name.items()}


class CallerStats:
    """Counts kept on the callers' side; every one of them lock-free."""

    def __init__(self) -> None:
        self.emitted = LevelCounters()
        self.queue_full = LevelCounters()
        self.internal_errors = AtomicCounter()


def wake(fd: int) -> None:
    """Wake the worker; never blocks (the pipe is non-blocking) and never raises."""
    try:  # noqa: SIM105 - a plain try is cheaper than contextlib.suppress on the hot path
        os.write(fd, b"\0")
    except OSError:
        pass  # full pipe: the worker is already due to wake


def make_emit(
    *,
    low: deque[RawRecord],
    high: deque[RawRecord],
    low_capacity: int,
    high_capacity: int,
    seq: AtomicCounter,
    stats: CallerStats,
    context_get: Callable[[], Any],
    wake_fd: int,
    spool: CrashSpool | None,
    idle: list[bool],
) -> Emit:
    """Build the hot path for one configuration; every decision is taken here, once."""
    next_seq = seq.inc
    now = time.time_ns
    ident = threading.get_ident
    emitted = [counter.inc for counter in stats.emitted.by_number]
    full = [counter.inc for counter in stats.queue_full.by_number]
    internal_error = stats.internal_errors.inc
    half = low_capacity // 2
    # WARNING+ has a reserve of its own; past it, each WARNING+ record evicts the newest
    # queued DEBUG/INFO record (deque.pop is atomic), up to a hard limit that keeps the
    # total bounded: DEBUG/INFO is always dropped before WARNING+ is.
    high_limit = high_capacity + low_capacity
    pop_low = low.pop
    protect = spool.protect if spool is not None else None

    def emit(
        level: int,
        name: str,
        msg: object,
        fields: dict[str, Any],
        bound: dict[str, Any] | None,
        exc: Any = None,
        time_ns: int = 0,
    ) -> None:
        # The contract the worker relies on (loglog/worker.py, loglog/plain.py), kept by
        # every caller (the level methods, Logger.log/.exception, the bridges): ``level``
        # and ``time_ns`` ints, ``fields`` a dict (its names may be any str), ``bound`` None
        # or a logger's own plain dict of exact names.
        try:
            emitted[level]()
            if level < WARNING:
                size = len(low)
                if size < low_capacity:
                    low.append(
                        (next_seq(), time_ns or now(), level, name, msg, fields, bound,
                         context_get(), ident(), exc, -1)
                    )  # fmt: skip
                    if size == half or (size == 0 and idle[0]):
                        wake(wake_fd)  # half full, or the first record for an idle worker
                else:
                    full[level]()
                return
            size = len(high)
            if size >= high_capacity:
                try:  # noqa: SIM105 - hot path: a plain try costs nothing when it succeeds
                    full[pop_low()[LEVEL]]()
                except IndexError:
                    pass  # no DEBUG/INFO left to evict
                if size >= high_limit:
                    full[level]()
                    return
            stamp = time_ns or now()
            context = context_get()
            slot = -1
            if protect is not None:
                # WARNING+ is written to the crash spool on this thread, before the call
                # returns: a SIGKILL right after it cannot lose the record. The sequence
                # number is taken after that write, so a flush() never counts a record
                # that is still being spooled as queued.
                try:
                    slot = protect(stamp, level, name, msg, fields, bound, context, exc)
                except Exception:
                    internal_error()  # no crash protection for this one; still delivered
            high.append(
                (next_seq(), stamp, level, name, msg, fields, bound, context, ident(), exc, slot)
            )
            wake(wake_fd)
        except Exception:
            internal_error()

    if _speedups is None:
        return emit
    # The same DEBUG/INFO steps in C, on the same queue and counters; everything else
    # (WARNING+, exception info, odd arguments) is handed to the closure above.
    return _speedups.Emitter(
        emit,
        low,
        low_capacity,
        seq.counter,
        tuple(counter.counter for counter in stats.emitted.by_number),
        tuple(counter.counter for counter in stats.queue_full.by_number),
        stats.internal_errors.counter,
        context_get,
        wake_fd,
        idle,
    )


class PyCore:
    """State shared by every :class:`~loglog.Logger`; ``configure()`` mutates it in place,
    so loggers created before ``configure()`` follow the new configuration.

    ``Core`` is this class, or with the C extension ``loglog._speedups.Core``: the same
    three attributes, kept in a C struct so that a level method reads them directly.
    """

    __slots__ = ("emit", "pipeline", "threshold")

    def __init__(self) -> None:
        self.threshold = 20
        self.emit: Emit = discard
        self.pipeline: Any = None


if TYPE_CHECKING:
    Core = PyCore
else:
    Core = _speedups.Core if _speedups is not None else PyCore
if _speedups is not None:
    _speedups.set_fmt(Fmt)
    _speedups.set_normalisers(exact_name, exact_bound)


def discard(*args: Any, **kwargs: Any) -> None:
    """The emitter while logging is off (before configure's lazy start, after shutdown)."""
    return None


CORE = Core()
CORE.emit = discard
