"""The crash spool: WARNING+ records written to a memory-mapped file on the caller's thread.

A ``MAP_SHARED`` mapping of a file is the kernel's page cache: a store into it is durable
against the death of the process (SIGKILL, OOM kill, segfault) the moment the store
completes, without a system call. So a WARNING-or-higher log call, before it returns,
renders the record and copies it into a slot of ``<stamp>-<owner>-<slot size>.spool``;
the worker marks the slot done once every sink has the record durably (written, sent, or
on the spill). A process that starts with the same spill directory replays the slots that
a dead process left pending. Only WARNING+ pays for this (~5 µs); DEBUG/INFO stay on the
cheap path.

The whole file is allocated with ``posix_fallocate`` when the spool is created: a store
into a page the filesystem never allocated raises SIGBUS when the disk is full, so no
such page may exist. When the allocation fails, the pipeline runs without a spool.

The caller's thread renders only builtins (``str``, ``int``, ``float``, ``bool``,
``None`` and containers of them); any other value is stored as ``<TypeName>``, so no user
``__str__`` runs there — one that blocks, raises or logs cannot affect the call. The worker
renders the real value for normal delivery; only a replay after a crash shows the
placeholder.

Slots are reserved with an atomic counter, so threads and signal handlers never share one.
The ring holds ``slots`` pending records; past that, the oldest pending slot is reused and
counted (its record is still in memory, it only loses crash protection). The file's first
page keeps two counters — slots overwritten while pending, and such records that later
became durable anyway — so the next process counts what a crash lost beyond the ring as
``lost_in_crash``. Power loss is out of scope: that needs ``fsync`` per record, which no
logger should do on the caller's thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from . import fds
from .counters import AtomicCounter
from .format import format_exc_safe, is_plain, placeholder, render_fields, render_value
from .message import Fmt
from .ownership import Owner
from .tracing import span_ids
from .types import level_name

_PENDING = 0x4C4F4731  # "LOG1"
_DONE = 0x444F4E45  # "DONE"
_HEADER = struct.Struct("<IIQI")  # magic, payload length, token, crc32 of the payload
_MAGIC = struct.Struct("<I")
_META = struct.Struct("<IIIIQQ")  # magic, version, slot size, slots, overwritten, settled
_META_MAGIC = 0x4C4C5350  # "LLSP"
_META_VERSION = 2
META_SIZE = 4096  # one page before the slots
_OVERWRITTEN_AT = 16
_SETTLED_AT = 24
_Q = struct.Struct("<Q")
SLOT_SIZE = 8192
_MAX_SLOTS = 1 << 20


#: Mappings whose descriptors were closed under us: never closed (see Spool.abandon).
_UNCLOSABLE: list[mmap.mmap] = []


class Spool:
    """A ring of fixed-size slots in an mmap'd file owned by this process.

    Raises ``OSError`` when the file cannot be created or allocated (full disk,
    read-only directory): the caller then runs without crash protection.
    """

    def __init__(self, owner: Owner, *, slots: int = 512, slot_size: int = SLOT_SIZE) -> None:
        self._slots = slots
        self._slot_size = slot_size
        self._room = slot_size - _HEADER.size
        # The slot size is part of the name so that recovery needs no guessing.
        self.path = owner.directory / f"{time.time_ns():020d}-{owner.id}-{slot_size}.spool"
        size = META_SIZE + slots * slot_size
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._fd_id = fds.identity(self._fd)
        try:
            # Every page allocated now: a store can never meet a full disk (SIGBUS).
            os.posix_fallocate(self._fd, 0, size)
            self._mm = mmap.mmap(self._fd, size, mmap.MAP_SHARED)
        except BaseException:
            os.close(self._fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise
        _META.pack_into(self._mm, 0, _META_MAGIC, _META_VERSION, slot_size, slots, 0, 0)
        self._reserve = itertools.count().__next__
        self.overwritten = AtomicCounter()
        self.settled = AtomicCounter()

    @property
    def slots(self) -> int:
        return self._slots

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
    ) -> int:
        """Write one record into a fresh slot; return its token (caller's thread).

        Runs no user code: see the module docstring.
        """
        merged = {**bound, **fields} if bound else fields
        trace_id, span_id = span_ids(context)
        doc: dict[str, Any] = {
            "t": stamp,
            "l": level,
            "n": name if type(name) is str else placeholder(name),
            "m": safe_message(msg, self._room),
            "f": render_fields(merged, safe=True),
            "th": threading.current_thread().name,
        }
        if trace_id:
            doc["tr"], doc["sp"] = trace_id, span_id
        if exc is not None:
            doc["x"] = format_exc_safe(exc)
        return self.write_doc(doc)

    def write_doc(self, doc: dict[str, Any]) -> int:
        """Store an already rendered record (also used to re-protect replayed records);
        return its token, which :meth:`release` takes."""
        payload = self._fit(doc)
        token = self._reserve()
        offset = META_SIZE + token % self._slots * self._slot_size
        mm = self._mm
        if _MAGIC.unpack_from(mm, offset)[0] == _PENDING:
            self.overwritten.inc()
            _Q.pack_into(mm, _OVERWRITTEN_AT, self.overwritten.value)
        # Invalidate first, payload next, header last: a death in between leaves a slot
        # whose magic or CRC does not match, which recovery skips.
        _MAGIC.pack_into(mm, offset, 0)
        end = offset + _HEADER.size + len(payload)
        mm[offset + _HEADER.size : end] = payload
        _HEADER.pack_into(mm, offset, _PENDING, len(payload), token, zlib.crc32(payload))
        return token

    def _fit(self, doc: dict[str, Any]) -> bytes:
        # ensure_ascii: a lone surrogate in a message must not make encode() raise.
        data = json.dumps(doc, separators=(",", ":")).encode()
        if len(data) <= self._room:
            return data
        doc = dict(doc, f={"_truncated": True})
        if "x" in doc:
            doc["x"] = "…" + str(doc["x"])[-self._room // 8 :]
        doc["m"] = str(doc["m"])[: self._room // 8]
        data = json.dumps(doc, separators=(",", ":")).encode()
        if len(data) > self._room:  # a huge logger or thread name: keep level and time
            data = json.dumps({"t": doc["t"], "l": doc["l"], "m": "<truncated>"}).encode()
        return data

    def release(self, token: int) -> None:
        """Mark a slot done once its record is durable elsewhere (worker thread)."""
        offset = META_SIZE + token % self._slots * self._slot_size
        with contextlib.suppress(ValueError):
            magic, _, slot_token, _ = _HEADER.unpack_from(self._mm, offset)
            if slot_token == token:
                if magic == _PENDING:
                    _MAGIC.pack_into(self._mm, offset, _DONE)
            else:
                # Its slot was overwritten while it was pending; it is durable now, so a
                # crash from here on has not lost it.
                self.settled.inc()
                _Q.pack_into(self._mm, _SETTLED_AT, self.settled.value)

    def pending(self) -> int:
        """How many slots still protect an undelivered record."""
        count = 0
        for index in range(self._slots):
            offset = META_SIZE + index * self._slot_size
            if _MAGIC.unpack_from(self._mm, offset)[0] == _PENDING:
                count += 1
        return count

    def close(self) -> None:
        """At shutdown: remove the file when nothing is pending, else leave it for replay."""
        try:
            pending = self.pending()
        except ValueError:  # already abandoned
            pending = 1
        self.abandon()
        if pending == 0:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def abandon(self) -> None:
        """Drop the mapping and descriptor without touching the file (forked child)."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and fds.identity(fd) != self._fd_id:
            # Our descriptors were closed under us (os.closerange) and their numbers may be
            # an application's files now. The mmap object holds a duplicate descriptor of
            # its own (CPython dups it; 3.11 cannot say which) that closing — or collecting
            # — it would close: keep it open for the life of the process instead.
            _UNCLOSABLE.append(self._mm)
            return
        with contextlib.suppress(Exception):
            self._mm.close()
        fds.close_own(fd, self._fd_id)


def safe_message(msg: object, limit: int) -> str:
    """A message as text without running user code (caller's thread)."""
    if type(msg) is str:
        text: str = msg
    elif type(msg) is Fmt:
        template = msg.msg
        args = msg.args
        if type(template) is str and is_plain(args) and len(template) <= limit:
            try:
                text = template % args
            except Exception:  # wrong %-args: keep both parts
                text = f"{template} {args!r}"
        else:
            text = f"{template if type(template) is str else placeholder(template)} <args>"
    else:
        rendered = render_value(msg, safe=True)
        text = rendered if type(rendered) is str else json.dumps(rendered)
    return text if len(text) <= limit else text[:limit]


@dataclasses.dataclass
class Recovered:
    """What one dead process's spool file held."""

    docs: list[dict[str, Any]]  # valid pending records, oldest first
    corrupt: dict[str, int]  # pending slots that failed validation, by level name
    lost_in_crash: int  # pending records overwritten before the crash and never durable
    intact: bool  # False: the file itself is damaged (moved to corrupt/)


def recover(path: Path) -> Recovered:
    """Read the pending records a dead process left in its spool file; never raises
    (except OSError reading it). Every field of every pending slot is validated."""
    data = path.read_bytes()
    broken = Recovered([], {"warning": 1}, 0, False)
    try:
        slot_size = int(path.name.split(".", 1)[0].rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return broken
    if len(data) < META_SIZE:
        return broken
    magic, version, meta_slot, slots, overwritten, settled = _META.unpack_from(data, 0)
    if (
        magic != _META_MAGIC
        or version != _META_VERSION
        or meta_slot != slot_size
        or not _HEADER.size < slot_size <= 1 << 20
        or not 1 <= slots <= _MAX_SLOTS
        or len(data) != META_SIZE + slots * slot_size
    ):
        return broken
    found: list[tuple[int, dict[str, Any]]] = []
    corrupt: dict[str, int] = {}
    for index in range(slots):
        offset = META_SIZE + index * slot_size
        magic, length, token, crc = _HEADER.unpack_from(data, offset)
        if magic != _PENDING:
            continue
        doc = None
        if length <= slot_size - _HEADER.size:
            payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
            if zlib.crc32(payload) == crc:
                with contextlib.suppress(ValueError, RecursionError):
                    doc = json.loads(payload)
        if valid_doc(doc):
            found.append((token, doc))  # type: ignore[arg-type]
        else:
            level = doc.get("l") if isinstance(doc, dict) else None
            name = level_name(level) if type(level) is int and 0 <= level <= 100 else "warning"
            corrupt[name] = corrupt.get(name, 0) + 1
    found.sort(key=lambda item: item[0])
    lost = max(0, overwritten - settled) if overwritten < 1 << 40 else 0
    return Recovered([doc for _, doc in found], corrupt, lost, not corrupt)


_OPTIONAL_TEXT = ("tr", "sp", "x")


def valid_doc(doc: object) -> bool:
    """Whether a spooled record has every field, each of the right type and range."""
    if not isinstance(doc, dict):
        return False
    t, level = doc.get("t"), doc.get("l")
    if type(t) is not int or t < 0 or type(level) is not int or not 0 <= level <= 100:
        return False
    if not isinstance(doc.get("m"), str):
        return False
    for key in ("n", "th"):
        if key in doc and not isinstance(doc[key], str):
            return False
    if "f" in doc and not isinstance(doc["f"], dict):
        return False
    return all(doc.get(key) is None or isinstance(doc[key], str) for key in _OPTIONAL_TEXT)
