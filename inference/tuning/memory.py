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
_lookup_lock = threading.Lock()  # two threads' first calls: one lookup, one answer


def _glibc() -> ctypes.CDLL | None:
    global _libc, _looked_up
    with _lookup_lock:
        if not _looked_up:
            _libc = _find_glibc()
            _looked_up = True  # after _libc: a reader without the lock never sees None early
    return _libc


def _find_glibc() -> ctypes.CDLL | None:
    # The running process's own symbols first (no ldconfig needed: distroless images have
    # none, and find_library then answers None), then the C library by name.
    candidates: list[str | None] = [None]
    name = ctypes.util.find_library("c")
    if name:
        candidates.append(name)
    for candidate in candidates:
        try:
            libc = ctypes.CDLL(candidate)
        except OSError:
            continue
        if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt"):
            return libc
    return None


# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's fixed defaults (malloc.h: DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_THRESHOLD_MIN).
GLIBC_DEFAULT_THRESHOLD = 128 * 1024
#: What an operator may set to tune the two thresholds; when one is set, its choice wins
#: and :func:`tune_allocator` leaves both alone.
_OPERATOR_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_OPERATOR_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")


def tune_allocator(
    trim_threshold: int,
    mmap_threshold: int,
    *,
    environ: Mapping[str, str] | None = None,
    libc: Any = None,
) -> str:
    """Fix glibc's trim and mmap thresholds for this process (both 0: leave them dynamic).

    glibc's thresholds are dynamic only until either is set: ``mallopt`` of one turns the
    adjustment off for both, so a 0 next to a non-zero value sets that one to glibc's
    default (128 KiB) — explicitly, since glibc would freeze it wherever it had moved.
    Returns one line saying what was done, for the start-up log. Never raises: off
    glibc, with an operator's own ``MALLOC_{TRIM,MMAP}_THRESHOLD_`` or ``GLIBC_TUNABLES``
    setting of either, for a value that is not a non-negative int, or when ``mallopt``
    refuses a value, the line says what was left as it was. ``environ`` and ``libc`` are
    parameters so tests can drive it.
    """
    environ = os.environ if environ is None else environ
    chosen = [name for name in _OPERATOR_SETTINGS if environ.get(name)]
    tunables = environ.get("GLIBC_TUNABLES", "")
    if any(tunable in tunables for tunable in _OPERATOR_TUNABLES):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"allocator: left as {' and '.join(chosen)} sets it"
    for value, name in ((trim_threshold, "trim"), (mmap_threshold, "mmap")):
        if type(value) is not int or value < 0:
            return f"allocator: malloc_{name}_threshold {value!r} is not a byte count; untouched"
    if not trim_threshold and not mmap_threshold:
        return "allocator: glibc's dynamic thresholds (malloc_*_threshold are 0)"
    libc = _glibc() if libc is None else libc
    if libc is None or not hasattr(libc, "mallopt"):
        return "allocator: not glibc, thresholds not set"
    done: list[str] = []
    for parameter, value, name in (
        (M_TRIM_THRESHOLD, trim_threshold, "trim"),
        (M_MMAP_THRESHOLD, mmap_threshold, "mmap"),
    ):
        # A 0 next to a set threshold is set to glibc's own default explicitly: glibc would
        # freeze it wherever its dynamic adjustment had moved it by now.
        wanted = value or GLIBC_DEFAULT_THRESHOLD
        if libc.mallopt(parameter, wanted) != 1:
            kept = f"; {', '.join(done)} set" if done else ""
            return f"allocator: mallopt refused the {name} threshold {wanted}{kept}"
        done.append(
            f"{name} threshold {value / 2**20:g} MiB"
            if value
            else f"{name} threshold glibc's default {GLIBC_DEFAULT_THRESHOLD // 1024} KiB"
        )
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
