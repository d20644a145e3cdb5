"""What loglog counted: :class:`Stats`, the numbers behind its metrics and ``stats()``.

The pipeline builds one from its lock-free counters each time it is asked (a scrape, a
``loglog.stats()`` call); nothing is kept. :meth:`Stats.to_dict` is the plain mapping
``loglog.stats()`` has always returned.

>>> import loglog
>>> s = loglog.stats_typed()                                        # doctest: +SKIP
>>> s.dropped.get(("all", "info", loglog.DropReason.QUEUE_FULL), 0)  # doctest: +SKIP
0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .counters import WriterHistogram
from .types import DropReason


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SpoolStats:
    """The crash spool: whether WARNING+ records are protected, its slots, and why not."""

    enabled: bool
    slots: int
    #: Why there is no spool despite a ``spill_dir`` ("" when there is one, or none wanted).
    error: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """Every count loglog keeps, at one moment. Read-only: a fresh one per call.

    Keys use level names (``"info"``), sink names (``"all"``: before any sink) and
    :class:`~loglog.DropReason` members, which equal their text.
    """

    #: Records emitted by log calls, by level.
    emitted: Mapping[str, int]
    #: Records dropped, by ``(sink, level, reason)``; sink ``"all"``: never reached a sink.
    dropped: Mapping[tuple[str, str, DropReason | str], int]
    #: Records delivered, by ``(sink, level)``.
    delivered: Mapping[tuple[str, str], int]
    #: Records left on disk at shutdown for the next process to ship, by ``(sink, level)``.
    spilled: Mapping[tuple[str, str], int]
    #: Sink write failures, by sink.
    sink_errors: Mapping[str, int]
    #: Records whose line was cut to the sink's limit, by sink.
    truncated: Mapping[str, int]
    #: Records recovered from an earlier process, by source (``spool``, ``spill``).
    replayed: Mapping[str, int]
    #: Records waiting in the caller-side queues now.
    queued: int
    #: Capacity of the caller-side queues (DEBUG/INFO plus WARNING+).
    capacity: int
    #: Failures inside loglog itself.
    internal_errors: int
    #: Sink or sender threads restarted after an exception, by sink.
    sink_restarts: Mapping[str, int]
    #: Records whose user ``__str__``/``__repr__`` outlasted ``render_timeout``.
    render_timeouts: int
    #: WARNING+ records that lost crash protection because the spool ring was full.
    spool_overwritten: int
    spool: SpoolStats
    #: Bytes of batches waiting in the disk spill.
    spill_bytes: int
    #: Sink write latency, by sink.
    latency: Mapping[str, WriterHistogram]

    def to_dict(self) -> dict[str, Any]:
        """The mapping ``loglog.stats()`` returns: these fields by name, ``spool`` a dict,
        and each drop reason its plain text (printed, pickled or compared, the dict is the
        one loglog returned before :class:`~loglog.DropReason` existed)."""
        return {
            "emitted": dict(self.emitted),
            "dropped": {
                (sink, level, str(reason)): count
                for (sink, level, reason), count in self.dropped.items()
            },
            "delivered": dict(self.delivered),
            "spilled": dict(self.spilled),
            "sink_errors": dict(self.sink_errors),
            "truncated": dict(self.truncated),
            "replayed": dict(self.replayed),
            "queued": self.queued,
            "capacity": self.capacity,
            "internal_errors": self.internal_errors,
            "sink_restarts": dict(self.sink_restarts),
            "render_timeouts": self.render_timeouts,
            "spool_overwritten": self.spool_overwritten,
            "spool": dataclasses.asdict(self.spool),
            "spill_bytes": self.spill_bytes,
            "latency": dict(self.latency),
        }
