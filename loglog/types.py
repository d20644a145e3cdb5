"""The vocabulary of loglog: levels, the record a sink receives, and the sink protocol.

How a record travels::

    caller ──emit()──▶ bounded queues (never block) ──worker thread──▶ Record
        ──▶ one SinkRunner per sink (own thread, bounded inbox) ──▶ Sink.write(records)

A sink is anything with ``write(records)``. It runs on its own thread, so a slow or hung
sink only fills its own inbox (drops there are counted) and never stalls a caller or
another sink. Optional hooks, looked up once when the sink is set up, are described by
:class:`SinkHooks`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

TRACE = 5
DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
CRITICAL = 50

#: The level names used in output and in metric labels (bounded: custom levels map to the
#: nearest standard level below them).
LEVEL_NAMES: dict[int, str] = {
    TRACE: "trace",
    DEBUG: "debug",
    INFO: "info",
    WARNING: "warning",
    ERROR: "error",
    CRITICAL: "critical",
}
_BY_NAME = {name: number for number, name in LEVEL_NAMES.items()}
_BY_NAME.update({"warn": WARNING, "fatal": CRITICAL, "success": 25})

#: The highest level a threshold may be set to (levels above 100 are clamped to 100 on the
#: way in, so anything above it would only disable every level).
MAX_THRESHOLD = 100


class DropReason(enum.StrEnum):
    """Why a record was dropped: the ``reason`` label of ``loglog_dropped_total`` and the
    last part of each ``stats()["dropped"]`` key.

    A ``str`` enum: a member *is* its value (``DropReason.QUEUE_FULL == "queue_full"``,
    same hash, ``str()`` gives the value), so label values and dict keys read exactly as
    they did when reasons were plain strings. The set is closed, so the label stays
    bounded (a user sink's :class:`~loglog.SinkStalled` with a reason of its own is the one
    exception, counted under that text).

    >>> DropReason("queue_full") is DropReason.QUEUE_FULL
    True
    """

    #: The caller-side queue was full (sink ``all``).
    QUEUE_FULL = "queue_full"
    #: A sink's inbox was over its capacity; DEBUG/INFO shed first.
    SINK_BACKLOG = "sink_backlog"
    #: loglog's own record would have reached the sink that caused it.
    RECURSION = "recursion"
    #: Still owed when shutdown's deadline passed.
    SHUTDOWN = "shutdown"
    #: A sink gave up on the rest of a batch within its time limit.
    SINK_TIMEOUT = "sink_timeout"
    #: ``write`` raised, or a sender gave up on a batch.
    SINK_ERROR = "sink_error"
    #: A file or spill write hit ENOSPC/EDQUOT.
    DISK_FULL = "disk_full"
    #: Any other file or spill write error.
    DISK_ERROR = "disk_error"
    #: Older than Loki accepts (``loki_max_age``).
    TOO_OLD = "too_old"
    #: The Loki sink's memory buffer was full: its oldest batch made room.
    BUFFER_FULL = "buffer_full"
    #: The Loki spill was over its limit: DEBUG/INFO left out of the batch.
    SPILL_FULL = "spill_full"
    #: A crash-spool slot of an earlier process failed validation.
    CORRUPT = "corrupt"
    #: An earlier process's WARNING+ records overwritten before they were durable.
    LOST_IN_CRASH = "lost_in_crash"
    #: Loki answered 400/401/403/404/413, or another 4xx, and the batch is not retried.
    HTTP_400 = "http_400"
    HTTP_401 = "http_401"
    HTTP_403 = "http_403"
    HTTP_404 = "http_404"
    HTTP_413 = "http_413"
    HTTP_4XX = "http_4xx"
    #: Loki kept failing (5xx, 429, no answer) past the sender's retries.
    RETRIES_EXHAUSTED = "retries_exhausted"


#: A value that JSON can encode: what every field holds once the worker has rendered it.
JSONValue = Any


def level_name(level: int) -> str:
    """Name of ``level``, rounded down to a standard level (``25`` → ``"info"``)."""
    name = LEVEL_NAMES.get(level)
    if name is not None:
        return name
    below = [known for known in LEVEL_NAMES if known <= level]
    return LEVEL_NAMES[max(below)] if below else "trace"


def parse_level(value: str | int) -> int:
    """Turn ``"info"``, ``"INFO"``, ``"20"`` or ``20`` into a level number.

    >>> parse_level("warning")
    30
    """
    if isinstance(value, bool):
        raise ValueError(f"level must be a name or a number, got {value!r}")
    if isinstance(value, int):
        return _in_range(value)
    text = str(value).strip().lower()
    if text.isdigit() and len(text) <= 12:
        return _in_range(int(text))
    if text in _BY_NAME:
        return _BY_NAME[text]
    choices = ", ".join(LEVEL_NAMES.values())
    raise ValueError(f"unknown level {value!r}: use one of {choices} or a number 0–100")


def _in_range(level: int) -> int:
    if not 0 <= level <= MAX_THRESHOLD:
        raise ValueError(f"level {level} is out of range: use 0–100 (a name such as 'info')")
    return level


@dataclasses.dataclass(slots=True)
class Record:
    """One log record as a sink sees it. Treat it as read-only: every sink shares it.

    Builtins only, so a sink never runs user code (a ``__repr__`` that logs, a ``str``
    subclass's ``__hash__`` or ``__format__``): ``logger``, ``message`` and every field name
    are exact ``str``; ``fields`` holds JSON-safe values (``str``, ``bool``, ``None``, ints
    of at most 4,300 digits, finite floats, lists and dicts of them); ``time_ns`` is an
    int from 0 to 2**63-1 (what Loki and OTLP take).
    """

    seq: int
    time_ns: int
    level: int
    logger: str
    message: str
    fields: dict[str, JSONValue]
    trace_id: str | None = None
    span_id: str | None = None
    thread: str = ""
    exc_text: str | None = None
    #: Emitted on one of loglog's own threads (a sink's error path, an HTTP client's log):
    #: delivered to local sinks only, so a failing network sink cannot feed on itself.
    internal: bool = False
    #: Recovered from a spill or crash spool left by an earlier process.
    replayed: bool = False
    thread_id: int = 0

    @property
    def levelname(self) -> str:
        return level_name(self.level)


@runtime_checkable
class Sink(Protocol):
    """Where records go: one method, called from the sink's own thread with a batch.

    >>> class Printer:
    ...     def write(self, records):
    ...         for r in records:
    ...             print(r.levelname, r.message)
    """

    def write(self, records: Sequence[Record]) -> None: ...


class SinkHooks(Protocol):
    """Optional attributes a sink may have; each is looked up once at set-up.

    - ``name: str`` — label value in metrics (default: the class name, lower-cased).
    - ``local: bool`` — writes only to this machine (console, file). Only local sinks receive
      loglog's own internal records; network sinks never do, which cuts feedback loops.
    - ``tick(force: bool) -> None`` — called on the sink thread at least every ~100 ms, so
      a batching sink can ship on time; ``force`` asks it to seal what it holds (flush).
    - ``progress() -> tuple[int, int]`` — for sinks that hand records on to a thread of their
      own: ``(durable_seq, done_seq)``; every record up to ``durable_seq`` survives a crash of
      this process, every record up to ``done_seq`` is delivered or dropped and counted.
    - ``close(timeout: float) -> None`` — release resources within ``timeout`` seconds.
    - ``ledger: loglog.ledger.Ledger`` — for sinks that hand records to a thread of their
      own: every record's outcome is counted there, and shutdown counts what it still
      holds when its deadline passes (see loglog/ledger.py).
    """

    def write(self, records: Sequence[Record]) -> None: ...
