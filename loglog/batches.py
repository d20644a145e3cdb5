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

from .ownership import Owner, owner_of


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
            batch = _read(mine)
            if batch is not None:
                super().put(batch)
                adopted += batch.count
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
        with open(tmp, "wb") as handle:
            handle.write(json.dumps(header).encode() + b"\n")
            handle.write(batch.payload)
        os.rename(tmp, path)
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


def _read(path: Path) -> Batch | None:
    try:
        data = path.read_bytes()
        header_line, _, payload = data.partition(b"\n")
        header = json.loads(header_line)
        return Batch(
            payload=payload,
            levels={str(k): int(v) for k, v in header["levels"].items()},
            min_seq=-1,
            max_seq=-1,
            oldest_ns=int(header["oldest_ns"]),
            name=path.name,
            adopted=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
