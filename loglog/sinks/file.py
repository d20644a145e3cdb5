"""A file sink: JSON lines (or text), size-based rotation, and reopen after logrotate.

Writes go straight to an ``O_APPEND`` descriptor with ``os.write``: no user-space buffer
that a forked child could inherit and write a second time, and whole batches per system
call, which is what makes one core deliver hundreds of thousands of records a second.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .. import fds
from ..errors import SinkStalled
from ..format import JsonRenderer, TextRenderer
from ..types import DropReason, Record

_RECHECK = 1.0  # seconds between checks that the path still names our file


class FileSink:
    """Appends one line per record to ``path``; rotates past ``max_bytes`` (0: never)."""

    local = True
    name = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fmt: str = "json",
        max_bytes: int = 0,
        backups: int = 5,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._render = JsonRenderer() if fmt == "json" else TextRenderer(color=False)
        self._max = max_bytes
        self._backups = backups
        self._fd = -1
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        info = os.fstat(self._fd)
        self._size = info.st_size
        self._inode = (info.st_dev, info.st_ino)
        self._checked = time.monotonic()

    def write(self, records: Sequence[Record]) -> None:
        render = self._render
        data = ("\n".join([render(record) for record in records]) + "\n").encode("utf-8", "replace")
        view = memoryview(data)
        try:
            if self._fd < 0 or fds.identity(self._fd) != self._inode:
                # A failed rotation or reopen, or the descriptor closed under us (and its
                # number perhaps another file's now): open the path again.
                self._fd = -1
                self._open()
            self._reopen_if_moved()
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            # Full disk, read-only remount, I/O error: the records whose line went out
            # whole are delivered, the rest are counted with the reason.
            done = data.count(b"\n", 0, len(data) - len(view))
            reason = (
                DropReason.DISK_FULL
                if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else DropReason.DISK_ERROR
            )
            raise SinkStalled(f"cannot write {self.path}: {exc}", done, reason) from exc
        finally:
            self._size += len(data) - len(view)
        if self._max and self._size >= self._max:
            with contextlib.suppress(OSError):
                self._rotate()

    def _reopen_if_moved(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RECHECK:
            return
        self._checked = now
        try:
            info = os.stat(self.path)
            moved = (info.st_dev, info.st_ino) != self._inode
        except FileNotFoundError:
            moved = True
        if moved:  # logrotate (or a person) moved the file away: follow the path
            self._close_fd()
            self._open()

    def _rotate(self) -> None:
        self._close_fd()
        if self._backups > 0:
            for index in range(self._backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            os.truncate(self.path, 0)
        self._open()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        fds.close_own(fd, self._inode)  # never a number someone else has opened since

    def close(self, timeout: float) -> None:
        self._close_fd()

    abandon = _close_fd
