"""Sealed batches waiting for a network sink: in memory, or spilled to disk.

Both queues have the same small surface (``put``, ``head``, ``pop``, ``oldest_seq``,
``nbytes``), are shared by exactly two threads — the sink thread that seals batches and
the sender that ships them — and guard their bookkeeping with a lock that is never held
during I/O. With a spill directory, every sealed batch is written to disk *before* the
sender sees it (write-ahead), so a batch survives Loki being down, hanging, or this process
dying; the next process with the same directory adopts and ships it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections import deque
from pathlib import Path

from .ownership import Owner, owner_of, quarantine


@dataclasses.dataclass(slots=True)
class Batch:
    """An encoded request body plus what is needed to account for its records."""

    payload: bytes
    levels: dict[str, int]  # records per level name, for delivered/dropped counts
    min_seq: int  # -1 for batches adopted from another process
    max_seq: int
    oldest_ns: int
    name: str = ""  # file name when spilled
    adopted: bool = False
    settled: bool = False  # delivered or dropped, and counted (loglog/ledger.py)
    durable: bool = False  # spilled to disk: survives this process

    @property
    def count(self) -> int:
        return sum(self.levels.values())


class MemoryQueue:
    """Batches in memory, bounded by bytes; when full the oldest batch is evicted."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: deque[Batch] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, batch: Batch) -> list[Batch]:
        """Queue ``batch``; return the batches evicted to make room (to be counted)."""
        evicted: list[Batch] = []
        with self._lock:
            self._items.append(batch)
            self._bytes += len(batch.payload)
            while self._bytes > self._max and len(self._items) > 1:
                old = self._items.popleft()
                self._bytes -= len(old.payload)
                evicted.append(old)
        return evicted

    def head(self) -> Batch | None:
        with self._lock:
            return self._items[0] if self._items else None

    def pop(self, batch: Batch) -> None:
        with self._lock:
            if self._items and self._items[0] is batch:
                self._items.popleft()
                self._bytes -= len(batch.payload)

    def oldest_seq(self) -> int | None:
        """Lowest seq still queued: batches are sealed in seq order, adopted ones first."""
        with self._lock:
            for batch in self._items:
                if batch.min_seq >= 0:
                    return batch.min_seq
        return None

    def drain(self) -> list[Batch]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
        return items

    @property
    def nbytes(self) -> int:
        return self._bytes

    #: Whether a queued batch survives the death of this process.
    durable = False


class SpillQueue(MemoryQueue):
    """Batches as files ``<stamp>-<owner>.batch`` in ``<spill_dir>/<kind>/``, oldest first.

    Each file is a JSON header line (levels, seqs, oldest timestamp) and the payload. Files
    are written to ``.tmp`` and renamed, so a crash mid-write leaves nothing half-read. The
    in-memory index is never evicted: the spill's bound is enforced by the sink, which
    stops spilling DEBUG/INFO first (see ``LokiSink``).
    """

    durable = True

    def __init__(self, owner: Owner, kind: str, max_bytes: int, dead_owners: set[str]) -> None:
        super().__init__(max_bytes=2**62)
        self._owner = owner
        self.directory = owner.directory / kind
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        #: Records in adopted files that failed validation, by level ("unknown" when the
        #: header itself is unreadable: such a file counts as one record).
        self.corrupt: dict[str, int] = {}
        self.adopted = self._adopt(dead_owners)

    def _adopt(self, dead_owners: set[str]) -> int:
        adopted = 0
        for path in sorted(self.directory.iterdir()):
            if owner_of(path.name) not in dead_owners:
                continue
            if path.suffix == ".tmp":
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            stamp = path.name.split("-", 1)[0]
            mine = self.directory / f"{stamp}-{self._owner.id}.batch"
            try:
                os.rename(path, mine)  # atomic: a concurrent newcomer cannot take it too
            except OSError:
                continue
            batch, levels = _read(mine)
            if batch is not None:
                super().put(batch)
                adopted += batch.count
            else:
                quarantine(mine, self._owner.directory)
                for level, count in levels.items():
                    self.corrupt[level] = self.corrupt.get(level, 0) + count
        return adopted

    def put(self, batch: Batch) -> list[Batch]:
        name = f"{time.time_ns():020d}-{self._owner.id}.batch"
        header = {
            "levels": batch.levels,
            "oldest_ns": batch.oldest_ns,
            "min_seq": batch.min_seq,
            "max_seq": batch.max_seq,
        }
        path = self.directory / name
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(json.dumps(header).encode() + b"\n")
                handle.write(batch.payload)
            os.rename(tmp, path)
        except OSError:
            # Full disk, read-only or vanished directory, I/O error: the caller counts
            # the batch as dropped; leave no half-written file behind.
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        batch.name = name
        return super().put(batch)

    def pop(self, batch: Batch) -> None:
        with contextlib.suppress(OSError):
            (self.directory / batch.name).unlink()
        super().pop(batch)

    def drain(self) -> list[Batch]:
        """Forget the in-memory index at shutdown; the files stay for the next process."""
        super().drain()
        return []


_LEVELS = frozenset({"trace", "debug", "info", "warning", "error", "critical"})


def _read(path: Path) -> tuple[Batch | None, dict[str, int]]:
    """A spilled batch, validated field by field; or None and the records it claimed
    (by level) when anything is wrong with it."""
    levels: dict[str, int] = {"unknown": 1}
    try:
        data = path.read_bytes()
        header_line, _, payload = data.partition(b"\n")
        header = json.loads(header_line)
        raw_levels = header["levels"]
        if not isinstance(raw_levels, dict) or not raw_levels:
            return None, levels
        if not all(
            k in _LEVELS and type(v) is int and 0 < v < 1 << 31 for k, v in raw_levels.items()
        ):
            return None, levels
        levels = dict(raw_levels)
        oldest = header["oldest_ns"]
        if type(oldest) is not int or oldest < 0:
            return None, levels
        if sum(levels.values()) != _count_entries(json.loads(payload)):
            return None, levels
        batch = Batch(payload, levels, -1, -1, oldest, name=path.name, adopted=True)
        return batch, levels
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, levels


def _count_entries(body: object) -> int:
    """Entries in a Loki push body; raises ValueError when its shape is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("streams"), list):
        raise ValueError("no streams")
    count = 0
    for stream in body["streams"]:
        if not isinstance(stream, dict) or not isinstance(stream.get("stream"), dict):
            raise ValueError("bad stream")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in stream["stream"].items()):
            raise ValueError("bad labels")
        values = stream.get("values")
        if not isinstance(values, list):
            raise ValueError("bad values")
        for entry in values:
            if (
                not isinstance(entry, list)
                or len(entry) not in (2, 3)
                or not isinstance(entry[0], str)
                or not entry[0].isascii()
                or not entry[0].isdigit()
                or not isinstance(entry[1], str)
                or (len(entry) == 3 and not isinstance(entry[2], dict))
            ):
                raise ValueError("bad entry")
            count += 1
    return count
