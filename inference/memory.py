"""Giving memory back after a burst: glibc's allocator, trimmed when the runtime is idle.

Why RSS stayed high after overload (measured with ``bench.soak_bench``): the frames,
tensors and request bodies of a burst (0.3–1 MB each, hundreds in queues and in flight)
are freed when the burst ends, but glibc keeps freed memory inside its heaps — one arena
per thread that allocated, and the dynamic mmap threshold moves up after the first large
free, so later frames come from the heaps rather than from their own mmap. Nothing
returns those pages to the OS until ``malloc_trim``. So, once the pipeline has been idle
for a while, :class:`IdleTrimmer` calls ``malloc_trim(0)``, which releases the free pages
of every arena. Under load it does nothing (no cost on the hot path).

Off glibc (musl, macOS) :func:`trim` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

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
