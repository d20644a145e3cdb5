"""Which process owns which file in a spill directory, and taking over from dead ones.

Every process that uses a spill directory holds a POSIX lock (``lockf``) on its own
``<owner>.owner`` file for its whole life. POSIX locks are released by the kernel when the
process dies, however it dies (SIGKILL included), and — unlike ``flock`` — are not
inherited by ``fork()``, so a forked child never looks alive on its parent's behalf. A
file left by an owner whose lock can be taken belongs to nobody; a new process adopts it
by renaming it, and ``rename`` is atomic, so two newcomers never adopt the same file.
Owner ids carry a random part: a pid alone repeats (every container's first process is 1).

POSIX locks belong to the process, so they cannot tell two owners *in one process* apart
(a second ``configure()`` on the same directory): the owners this process holds are also
kept in ``_LIVE`` and never taken for dead. (Probing one of them with ``lockf`` would even
release its real lock, since closing any descriptor of a file drops the process's locks.)
Damaged files are moved to ``<spill_dir>/corrupt/`` by :func:`quarantine`, never re-read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from pathlib import Path

from . import fds

_LIVE: set[str] = set()  # owner ids held by this process right now


class Owner:
    """This process's claim on a directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._path = self.directory / f"{self.id}.owner"
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        self._fd_id = fds.identity(self._fd)
        fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _LIVE.add(self.id)

    def dead_owners(self, referenced: set[str]) -> set[str]:
        """Ids among ``referenced`` (and of leftover lock files) whose process is gone."""
        dead: set[str] = set()
        candidates = set(referenced)
        candidates.update(p.stem for p in self.directory.glob("*.owner"))
        candidates.difference_update(_LIVE)  # ours, and this process's other owners
        for owner in candidates:
            path = self.directory / f"{owner}.owner"
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                dead.add(owner)  # exited cleanly, leaving files behind for us
                continue
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # alive: it still holds its lock
                continue
            # Dead. Remove its lock file while we hold the lock, so nobody re-checks it.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            os.close(fd)
            dead.add(owner)
        return dead

    def close(self) -> None:
        """Give up the claim (at shutdown). Files the owner leaves become adoptable."""
        with contextlib.suppress(OSError):
            self._path.unlink()
        self.abandon()

    def abandon(self) -> None:
        """Close without unlinking: in a forked child, where the lock is the parent's."""
        _LIVE.discard(self.id)
        fd, self._fd = self._fd, -1
        fds.close_own(fd, self._fd_id)


def owner_of(name: str) -> str:
    """The owner id embedded in a spill file name ``<stamp>-<pid>-<hex>.<ext>``."""
    stem = name.split(".", 1)[0]
    parts = stem.split("-")
    return "-".join(parts[1:3]) if len(parts) >= 3 else ""


def quarantine(path: Path, directory: Path) -> None:
    """Move a damaged file to ``directory/corrupt/`` (kept for a person to look at, never
    read again); delete it when even that fails."""
    target = directory / "corrupt"
    try:
        target.mkdir(exist_ok=True)
        os.rename(path, target / path.name)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
