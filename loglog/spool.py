"""The crash spool: WARNING+ records written to a memory-mapped file on the caller's thread.

A ``MAP_SHARED`` mapping of a file is the kernel's page cache: a store into it is durable
against the death of the process (SIGKILL, OOM kill, segfault) the moment the store
completes, without a system call. So a WARNING-or-higher log call, before it returns,
renders the record and copies it into a slot of ``<stamp>-<owner>.spool``; the worker marks
the slot done once every sink has the record durably (written, sent, or on the spill).
A process that starts with the same spill directory replays the slots that a dead process
left pending. Only WARNING+ pays for this (~5 µs); DEBUG/INFO stay on the cheap path.

Slots are reserved with an atomic counter, so threads and signal handlers never share one.
The ring holds ``slots`` pending records; past that, the oldest pending slot is reused and
counted (its record is still in memory, it only loses crash protection). Power loss is out
of scope: that needs ``fsync`` per record, which no logger should do on the caller's thread.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mmap
import os
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from .counters import AtomicCounter
from .format import format_exc, render_fields
from .ownership import Owner
from .tracing import span_ids

_PENDING = 0x4C4F4731  # "LOG1"
_DONE = 0x444F4E45  # "DONE"
_HEADER = struct.Struct("<IIQI")  # magic, payload length, seq, crc32 of the payload
_MAGIC = struct.Struct("<I")


class Spool:
    """A ring of fixed-size slots in an mmap'd file owned by this process."""

    def __init__(self, owner: Owner, *, slots: int = 512, slot_size: int = 8192) -> None:
        self._slots = slots
        self._slot_size = slot_size
        self._room = slot_size - _HEADER.size
        # The slot size is part of the name so that recovery needs no guessing.
        self.path = owner.directory / f"{time.time_ns():020d}-{owner.id}-{slot_size}.spool"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.ftruncate(self._fd, slots * slot_size)  # sparse: untouched slots cost no disk
        self._mm = mmap.mmap(self._fd, slots * slot_size, mmap.MAP_SHARED)
        self._reserve = itertools.count().__next__
        self.overwritten = AtomicCounter()

    def protect(
        self,
        seq: int,
        stamp: int,
        level: int,
        name: str,
        msg: object,
        fields: dict[str, Any],
        bound: dict[str, Any] | None,
        context: Any,
        exc: Any,
    ) -> int:
        """Write one record into a fresh slot; return the slot index (caller's thread)."""
        merged = {**bound, **fields} if bound else fields
        trace_id, span_id = span_ids(context)
        doc: dict[str, Any] = {
            "t": stamp,
            "l": level,
            "n": name,
            "m": str(msg),
            "f": render_fields(merged),
            "th": threading.current_thread().name,
        }
        if trace_id:
            doc["tr"], doc["sp"] = trace_id, span_id
        if exc is not None:
            doc["x"] = format_exc(exc)
        return self.write_doc(seq, doc)

    def write_doc(self, seq: int, doc: dict[str, Any]) -> int:
        """Store an already rendered record (also used to re-protect replayed records)."""
        payload = self._fit(doc)
        index = self._reserve() % self._slots
        offset = index * self._slot_size
        mm = self._mm
        if _MAGIC.unpack_from(mm, offset)[0] == _PENDING:
            self.overwritten.inc()
        # Invalidate first, payload next, header last: a death in between leaves a slot
        # whose magic or CRC does not match, which recovery skips.
        _MAGIC.pack_into(mm, offset, 0)
        end = offset + _HEADER.size + len(payload)
        mm[offset + _HEADER.size : end] = payload
        _HEADER.pack_into(mm, offset, _PENDING, len(payload), seq, zlib.crc32(payload))
        return index

    def _fit(self, doc: dict[str, Any]) -> bytes:
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) <= self._room:
            return data
        doc = dict(doc, f={"_truncated": True})
        if "x" in doc:
            doc["x"] = "…" + str(doc["x"])[-self._room // 2 :]
        doc["m"] = str(doc["m"])[: self._room // 4]
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        return data[: self._room] if len(data) > self._room else data

    def release(self, index: int, seq: int) -> None:
        """Mark a slot done once its record is durable elsewhere (worker thread)."""
        offset = index * self._slot_size
        with contextlib.suppress(ValueError):
            magic, _, slot_seq, _ = _HEADER.unpack_from(self._mm, offset)
            if magic == _PENDING and slot_seq == seq:
                _MAGIC.pack_into(self._mm, offset, _DONE)

    def pending(self) -> int:
        """How many slots still protect an undelivered record."""
        count = 0
        for index in range(self._slots):
            if _MAGIC.unpack_from(self._mm, index * self._slot_size)[0] == _PENDING:
                count += 1
        return count

    def close(self) -> None:
        """At shutdown: remove the file when nothing is pending, else leave it for replay."""
        pending = self.pending()
        self.abandon()
        if pending == 0:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def abandon(self) -> None:
        """Drop the mapping and descriptor without touching the file (forked child)."""
        with contextlib.suppress(Exception):
            self._mm.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def recover(path: Path) -> list[dict[str, Any]]:
    """Read the pending records a dead process left in its spool file, oldest first."""
    data = path.read_bytes()
    found: list[tuple[int, dict[str, Any]]] = []
    slot_size = int(path.name.split(".", 1)[0].rsplit("-", 1)[1])
    for offset in range(0, len(data) - _HEADER.size + 1, slot_size):
        magic, length, seq, crc = _HEADER.unpack_from(data, offset)
        if magic != _PENDING or length > slot_size - _HEADER.size:
            continue
        payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if zlib.crc32(payload) != crc:
            continue
        with contextlib.suppress(ValueError):
            doc = json.loads(payload)
            if isinstance(doc, dict):
                found.append((seq, doc))
    found.sort(key=lambda item: item[0])
    return [doc for _, doc in found]
