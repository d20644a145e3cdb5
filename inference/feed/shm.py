"""Shared memory between the engine process and a decode process: anonymous, never named.

A :class:`Region` is an anonymous memory file — Linux ``memfd_create``; elsewhere an
unlinked temporary file — that the engine creates and maps, and whose descriptor the
decode process inherits at spawn (``pass_fds``) and maps too. It has no name anywhere: the
kernel frees it when the last process that maps it or holds its descriptor goes, however
it goes (``stop()``, a crash, SIGKILL of either side). Nothing can leak into ``/dev/shm``.

Why not ``multiprocessing.shared_memory``: its segments are named files in ``/dev/shm``
that outlive a SIGKILLed owner unless the resource-tracker process unlinks them, and in
Python 3.11 a process that merely *attaches* registers the segment with its own tracker,
which unlinks it when that process exits while others still use it (CPython gh-82300,
fixed with ``track=False`` only in 3.13). Descriptors passed at spawn need neither names
nor a tracker.

One region per decode process holds, 64-byte aligned::

    [ header: heartbeat ns, pid ] [ stats: one row per stream ] [ ring: tensor slots ]

and one region per pool holds the drills the decode processes apply (:mod:`.drills`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import tempfile
from typing import Any

import numpy as np

_ALIGN = 64

#: Columns of a stream's stats row (int64): per stage, the sequence number of the frame
#: whose call started last, when it started and when it ended (0 while it runs), on
#: CLOCK_MONOTONIC in nanoseconds — system-wide, so the engine reads them directly.
DEC_SEQ, DEC_START, DEC_END, PRE_SEQ, PRE_START, PRE_END = range(6)
STATS_COLUMNS = 8
#: Header words (int64): the decode process's heartbeat (monotonic ns) and its pid.
HEARTBEAT, PID = 0, 1
HEADER_WORDS = 8


def _aligned(size: int) -> int:
    return (size + _ALIGN - 1) // _ALIGN * _ALIGN


class Region:
    """An anonymous shared mapping of ``size`` bytes; ``fd`` is what a child inherits."""

    def __init__(self, size: int, fd: int | None = None) -> None:
        self.size = size
        self.owner = fd is None
        if fd is None:
            fd = _anonymous_file(size)
        self.fd = fd
        self._map: mmap.mmap | None = mmap.mmap(fd, size)

    def array(self, offset: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A numpy view of ``shape`` at ``offset`` (no copy)."""
        assert self._map is not None, "the region is closed"
        return np.ndarray(shape, dtype=np.dtype(dtype), buffer=self._map, offset=offset)

    def close(self) -> None:
        """Unmap and close the descriptor (views taken from it must be dropped first; a
        view still alive keeps the mapping until it goes)."""
        mapping, self._map = self._map, None
        if mapping is not None:
            with contextlib.suppress(BufferError):  # a live view: the GC unmaps it later
                mapping.close()
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _anonymous_file(size: int) -> int:
    """A descriptor of ``size`` zeroed bytes with no name in any directory."""
    create = getattr(os, "memfd_create", None)
    if create is not None:
        fd = create("loglog-feed", getattr(os, "MFD_CLOEXEC", 1))
    else:  # not Linux: an unlinked file (in RAM where /dev/shm exists)
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        handle, path = tempfile.mkstemp(prefix="loglog-feed-", dir=folder)
        os.unlink(path)
        fd = handle
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the header, the stats rows and the ring's slots lie in a process's region."""

    rows: int  # streams a decode process may hold
    slots: int  # tensors in flight between the process and the engine
    shape: tuple[int, ...]  # one tensor (the model input, per item)
    dtype: str

    @property
    def slot_bytes(self) -> int:
        return _aligned(int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize)

    @property
    def stats_offset(self) -> int:
        return _aligned(HEADER_WORDS * 8)

    @property
    def ring_offset(self) -> int:
        return self.stats_offset + _aligned(self.rows * STATS_COLUMNS * 8)

    @property
    def size(self) -> int:
        return self.ring_offset + self.slots * self.slot_bytes


class Block:
    """Typed views of one decode process's region (either side builds the same)."""

    def __init__(self, region: Region, layout: Layout) -> None:
        self.region = region
        self.layout = layout
        self.header = region.array(0, (HEADER_WORDS,), np.int64)
        self.stats = region.array(layout.stats_offset, (layout.rows, STATS_COLUMNS), np.int64)
        self._ring = [
            region.array(layout.ring_offset + k * layout.slot_bytes, layout.shape, layout.dtype)
            for k in range(layout.slots)
        ]

    def slot(self, index: int) -> np.ndarray:
        """The view of ring slot ``index`` (a tensor of the model's input shape)."""
        return self._ring[index]

    def close(self) -> None:
        self.header = self.stats = np.empty(0)
        self._ring = []
        self.region.close()
