"""Host-wide core claims: no two engines, and no two decode processes, on one core.

Every process of every server on the host (``loglog serve``, ``loglog worker`` in a fleet,
several of either) used to pin its engine to the same core — the highest it may use —
because each decided alone. Now a core is *claimed* before it is pinned: one lock file
per core in a shared directory, held with ``flock`` for the claimant's lifetime. The
kernel drops the lock when the process exits, however it exits (SIGKILL included), so a
claim can never go stale and nothing needs cleaning up. A process that finds every core
it may use claimed runs unpinned, and says so.

Engines claim from the highest core down, decode processes from the lowest up, so on a
host with spare cores they meet in the middle. The directory defaults to
``/run/lock/loglog-cores`` (``$TMPDIR/loglog-cores`` where /run/lock is missing); it is
world-writable with the sticky bit, and the lock files are opened read-only (``flock``
needs no write access), so servers run by different users share one set of claims.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterable, Set
from pathlib import Path

#: Where claims live when the config does not say; tests point it at a private folder.
DEFAULT_DIR = (
    "/run/lock/loglog-cores"
    if os.path.isdir("/run/lock")
    else os.path.join(tempfile.gettempdir(), "loglog-cores")
)

_held: list[int] = []  # this process's claims (decode processes keep theirs until exit)


class Claim:
    """A core this process holds; :meth:`release` (or exit) gives it back."""

    def __init__(self, core: int, fd: int) -> None:
        self.core = core
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor drops the flock

    def __repr__(self) -> str:
        return f"Claim(core={self.core}, held={self._fd >= 0})"


def claims_dir(configured: str | None) -> str | None:
    """The claims folder for a config value: None or ``"auto"`` → :data:`DEFAULT_DIR`,
    ``""`` → no claims (pin without asking the other processes)."""
    if configured == "":
        return None
    return DEFAULT_DIR if configured in (None, "auto") else configured


def claim(cores: Iterable[int], folder: str | None) -> Claim | None:
    """Claim the first core of ``cores`` (in order) no other process holds; None when
    every one is held, or the folder cannot be used (then nothing is claimed)."""
    if folder is None:
        return None
    try:
        _ensure(folder)
    except OSError:
        return None
    for core in cores:
        path = os.path.join(folder, f"core-{core}.lock")
        try:
            fd = _open(path)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process (or this one, through another claim)
            os.close(fd)
            continue
        return Claim(core, fd)
    return None


def holders(folder: str, cores: Iterable[int]) -> set[int]:
    """The cores of ``cores`` some process claims now (for tools and tests)."""
    held = set()
    for core in cores:
        path = os.path.join(folder, f"core-{core}.lock")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            held.add(core)
        finally:
            os.close(fd)
    return held


def claim_and_pin(cores: list[int] | None, folder: str | None, exclusive: bool) -> str:
    """In a decode process: run on one core of ``cores`` (in order of preference) that no
    other process claims, when ``exclusive``; else — or when every one is claimed — on all
    of ``cores``. Without a claims folder an exclusive process takes its first core.
    ``None``: placement is left to the OS. Returns what was done, for the log."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    target: Set[int] = set(cores)
    if exclusive:
        got = claim(cores, folder)
        if got is not None:
            _held.append(got._fd)  # kept for this process's lifetime
            target = {got.core}
        elif folder is None:
            target = {cores[0]}
    try:
        os.sched_setaffinity(0, target)
    except OSError as exc:
        return f"unpinned ({exc})"
    return f"core {min(target)}" if len(target) == 1 else f"shared cores {sorted(target)}"


def _ensure(folder: str) -> None:
    path = Path(folder)
    if not path.is_dir():
        with contextlib.suppress(FileExistsError):
            path.mkdir(parents=True)
            os.chmod(path, 0o1777)  # every user's servers claim here


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return fd
