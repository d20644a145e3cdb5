"""The worker's wake-up pipes: reused across configurations, never closed.

A log call writes one byte to its pipeline's pipe to wake the worker (WARNING+, half a
queue, an idle worker's first record). A caller may still hold an old pipeline's emit
when ``configure()`` or ``shutdown()`` replaces it — a thread preempted in the middle of
a call, a reference kept somewhere. Were the old pipe closed, its descriptor number could
be handed to the next file or socket the application opens, and that late byte would be
written into it. So a pipe is never closed: a pipeline whose worker has stopped gives its
pipe back here, and the next pipeline takes it (drained) instead of opening a new one; a
stray byte then only wakes a worker early. At most two pipelines live at once (during a
``configure()``) once each old worker has ended — it gives its pipe back as its thread
exits, however late — so a process holds as many pipes as workers were ever alive at
once (two or three; dozens only in a storm of ``shutdown(timeout=0)``), all reused (before:
two more descriptors per ``configure()``, never closed — red-team findings).

Descriptor numbers alone are not trusted: an application that closes descriptors it does
not own (``os.closerange`` in a daemonised child) and opens files reuses them. Each pipe's
identity (device and inode of both ends) is recorded when it is made; a pipe that no
longer matches is never written to, read from or handed out again by loglog's own
housekeeping (:func:`intact`). Log calls themselves do not check (it would cost a system
call each): between such a ``closerange`` and the next ``configure()``, a wake byte can land
in whatever took the write end's number — docs/logger.md says to configure again first.
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

from . import fds
from .core import wake


class Pipe(NamedTuple):
    """A wake-up pipe and the identity (device, inode) each end had when it was made."""

    read: int
    write: int
    read_id: tuple[int, int]
    write_id: tuple[int, int]


_free: list[Pipe] = []
_lock = threading.Lock()  # configure() and close() only; never taken by a log call


def take() -> Pipe:
    """A non-blocking pipe for a new pipeline: a free one still intact, else a new one."""
    with _lock:
        while _free:
            pipe = _free.pop()
            if intact(pipe):
                drain(pipe.read)
                return pipe
            # Not ours any more: forgotten, never closed (the number is someone else's).
        read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        return Pipe(read, write, fds.identity(read) or (-1, -1), fds.identity(write) or (-1, -1))


def give_back(pipe: Pipe) -> None:
    """Return a pipe whose worker has stopped (never one a worker may still read)."""
    with _lock:
        _free.append(pipe)


def still_ours(fd: int, identity: tuple[int, int]) -> bool:
    """Whether ``fd`` is still the pipe end whose identity was recorded (one ``fstat``;
    async-signal-safe, never raises). The identity travels with the pipe, not with the
    number: a new pipe that got the same numbers is a different inode."""
    return fds.identity(fd) == identity


def wake_if_ours(pipe: Pipe) -> bool:
    """Wake the pipe's worker unless its write end was closed under us (and may be an
    application's file now); whether it still is ours."""
    ours = still_ours(pipe.write, pipe.write_id)
    if ours:
        wake(pipe.write)
    return ours


def intact(pipe: Pipe) -> bool:
    """Whether both ends still are the pipe :func:`take` made."""
    return still_ours(pipe.read, pipe.read_id) and still_ours(pipe.write, pipe.write_id)


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
