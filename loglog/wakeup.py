"""The worker's wake-up pipes: reused across configurations, never closed.

A log call writes one byte to its pipeline's pipe to wake the worker (WARNING+, half a
queue, an idle worker's first record). A caller may still hold an old pipeline's emit
when ``configure()`` or ``shutdown()`` replaces it — a thread preempted in the middle of
a call, a reference kept somewhere. Were the old pipe closed, its descriptor number could
be handed to the next file or socket the application opens, and that late byte would be
written into it. So a pipe is never closed: a pipeline whose worker has stopped gives its
pipe back here, and the next pipeline takes it (drained) instead of opening a new one; a
stray byte then only wakes a worker early. At most two pipelines live at once (during a
``configure()``), so a process holds two or three pipes however often it reconfigures
(before: two more descriptors per ``configure()``, never closed — a red-team finding).
"""

from __future__ import annotations

import os
import threading

_free: list[tuple[int, int]] = []
_lock = threading.Lock()  # configure() and close() only; never taken by a log call


def take() -> tuple[int, int]:
    """A non-blocking pipe (read end, write end) for a new pipeline."""
    with _lock:
        pipe = _free.pop() if _free else None
    if pipe is None:
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    drain(pipe[0])
    return pipe


def give_back(pipe: tuple[int, int]) -> None:
    """Return a pipe whose worker has stopped (never one a worker may still read)."""
    with _lock:
        _free.append(pipe)


def drain(read_fd: int) -> None:
    """Read every byte waiting in the pipe; never blocks, never raises."""
    try:
        while os.read(read_fd, 4096):
            pass
    except OSError:
        pass  # empty (EAGAIN) or gone


def after_fork_in_child() -> None:
    """The free pipes are shared with the parent, which may hand them to a pipeline of
    its own: the child forgets them (two descriptors each, once) and starts afresh."""
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at the moment of fork
    _free.clear()


def free_count() -> int:
    """How many pipes wait to be reused (for tests)."""
    return len(_free)
