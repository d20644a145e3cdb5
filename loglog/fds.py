"""Descriptors loglog opened: closed only while they still are the file it opened.

A process that closes descriptors it does not own (``os.closerange`` in a daemonised
child) and opens files of its own gets loglog's old numbers for them. Closing such a
number later — at ``configure()`` or shutdown — would close the application's file, and
writing to it would write into that file. So every descriptor loglog keeps carries the
identity (device, inode) it had when opened, and is closed or written only while it still
has it.
"""

from __future__ import annotations

import contextlib
import os


def identity(fd: int) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of ``fd``, or None when it is not open (one ``fstat``)."""
    if fd < 0:
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def close_own(fd: int, opened_as: tuple[int, int] | None) -> None:
    """Close ``fd`` if it still is the file it was opened as; never raises."""
    if opened_as is not None and identity(fd) == opened_as:
        with contextlib.suppress(OSError):
            os.close(fd)
