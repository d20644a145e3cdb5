"""Giving memory back after a burst: glibc's allocator, tuned at start and trimmed when idle.

Why RSS stayed high after overload (measured with ``bench.soak_bench``): the frames,
tensors and request bodies of a burst (0.3–5 MB each, hundreds in queues and in flight)
are freed when the burst ends, but glibc keeps freed memory inside its heaps — one arena
per thread that allocated (up to 8 per core). Two mechanisms keep it there:

- free chunks inside a heap stay resident until ``malloc_trim``. Once the pipeline has
  been idle for a while, :class:`IdleTrimmer` calls ``malloc_trim(0)``, which releases
  the free pages in every arena's bins. Under load it does nothing.
- the free *top* of a thread arena's heap is not touched by ``malloc_trim`` at all; glibc
  gives it back on ``free`` only above the trim threshold, and that threshold is dynamic:
  after the first large buffer is freed it becomes twice that buffer (10 MB for a 5 MB
  batch tensor), per arena. Measured on 2026-12-01: the arenas' resident memory at idle
  grew from 82 to 154 MiB over a 30-minute soak (glibc's ``malloc_info`` said free, not in
  use), and idle RSS reached 1.26× its post-warm-up value. :func:`tune_allocator` fixes
  the thresholds at start-up (``mallopt``), so a heap top above 2 MiB is returned as soon
  as it is freed; with it the same soak stayed at 0.98–1.01× (inference/config.py:
  ``malloc_trim_threshold``, ``malloc_mmap_threshold``).

Off glibc (musl, macOS) :func:`trim` and :func:`tune_allocator` do nothing and say so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

_libc: ctypes.CDLL | None = None
_looked_up = False


def _glibc() -> ctypes.CDLL | None:
    global _libc, _looked_up
    if not _looked_up:
        _looked_up = True
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
        except OSError:
            libc = None
        _libc = libc if libc is not None and hasattr(libc, "malloc_trim") else None
    return _libc


# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Environment variables through which an operator tunes glibc's allocator; when one is
#: set, its choice wins and :func:`tune_allocator` leaves the allocator alone.
_OPERATOR_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def tune_allocator(
    trim_threshold: int,
    mmap_threshold: int,
    *,
    environ: Mapping[str, str] | None = None,
    libc: Any = None,
) -> str:
    """Fix glibc's trim and mmap thresholds for this process (0: leave that one dynamic).

    Returns one line saying what was done, for the start-up log. Never raises: off glibc,
    with an operator's own ``MALLOC_*``/``GLIBC_TUNABLES`` setting, or when ``mallopt``
    refuses a value, the allocator keeps its defaults and the line says why. ``environ``
    and ``libc`` are parameters so that tests can drive it.
    """
    environ = os.environ if environ is None else environ
    chosen = [name for name in _OPERATOR_SETTINGS[:2] if environ.get(name)]
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"allocator: left as {' and '.join(chosen)} sets it"
    if not trim_threshold and not mmap_threshold:
        return "allocator: glibc's dynamic thresholds (malloc_*_threshold are 0)"
    libc = _glibc() if libc is None else libc
    if libc is None or not hasattr(libc, "mallopt"):
        return "allocator: not glibc, thresholds not set"
    done = []
    for parameter, value, name in (
        (M_TRIM_THRESHOLD, trim_threshold, "trim"),
        (M_MMAP_THRESHOLD, mmap_threshold, "mmap"),
    ):
        if value and libc.mallopt(parameter, value) != 1:
            return f"allocator: mallopt refused the {name} threshold {value}; glibc defaults"
        if value:
            done.append(f"{name} threshold {value / 2**20:g} MiB")
    return "allocator: " + ", ".join(done)


def trim() -> bool:
    """Return free heap memory to the OS (glibc ``malloc_trim(0)``); False when unavailable."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class IdleTrimmer:
    """Trims once each time ``progress()`` (e.g. items completed) stops moving for
    ``idle_after`` seconds; checks every ``interval`` seconds on a daemon thread.

    ``trim`` and ``clock`` are parameters so tests drive it without a real allocator or
    real time (:meth:`check` is one step of the thread's loop).
    """

    def __init__(
        self,
        progress: Callable[[], int],
        *,
        idle_after: float = 5.0,
        interval: float = 1.0,
        trim: Callable[[], bool] = trim,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.progress, self.idle_after, self.interval = progress, idle_after, interval
        self._trim, self._clock = trim, clock
        self._last = progress()
        self._moved_at = clock()
        self._trimmed = True  # nothing to give back before the first work
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One look: True when it trimmed now."""
        now, value = self._clock(), self.progress()
        if value != self._last:
            self._last, self._moved_at, self._trimmed = value, now, False
            return False
        if self._trimmed or now - self._moved_at < self.idle_after:
            return False
        self._trimmed = True
        self.trims += 1
        self._trim()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="memory-trim", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
