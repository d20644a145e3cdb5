"""Console output that a stalled pipe cannot freeze.

The sink writes to the stream's file descriptor directly, never through ``sys.stdout``: a
thread blocked inside ``sys.stdout.write`` holds the buffer's lock, and the interpreter
takes that lock to flush at exit, so one stuck write would hang the process exit too.
Each chunk of at most ``PIPE_BUF`` bytes is written only after ``poll`` reports room, so a
write never blocks for longer than ``console_write_timeout``; what could not be written in
time is counted as dropped (``sink_timeout``), never waited for. While the pipe stays full
each later batch gets only a short wait, so the inbox drains and counts instead of piling up.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ..errors import SinkStalled
from ..format import JsonRenderer, TextRenderer
from ..types import Record

_CHUNK = select.PIPE_BUF
_STALLED_WAIT = 0.05


def write_with_deadline(fd: int, data: bytes, timeout: float) -> int:
    """Write ``data`` to ``fd`` within ``timeout`` seconds; return how many bytes went out.

    After POLLOUT a pipe has a free page, so a write of at most PIPE_BUF bytes completes
    without blocking even on a blocking descriptor.
    """
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + timeout
    written = 0
    while written < len(data):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            break
        try:
            written += os.write(fd, view[written : written + _CHUNK])
        except BlockingIOError:
            continue
    return written


class ConsoleSink:
    """Human text (optionally coloured) or JSON lines on stderr/stdout."""

    local = True
    name = "console"

    def __init__(
        self,
        *,
        stream: str = "stderr",
        fmt: str = "text",
        color: bool | None = None,
        write_timeout: float = 1.0,
    ) -> None:
        handle: TextIO = sys.stdout if stream == "stdout" else sys.stderr
        self._handle = handle
        try:
            self._fd: int | None = handle.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None  # e.g. replaced by an in-memory stream: write through it
        if color is None:
            try:
                color = handle.isatty() and os.environ.get("NO_COLOR") is None
            except (AttributeError, ValueError):
                color = False
        self._render = JsonRenderer() if fmt == "json" else TextRenderer(color=color)
        self._timeout = write_timeout
        self._stalled = False

    def write(self, records: Sequence[Record]) -> None:
        lines = [(self._render(record) + "\n").encode("utf-8", "replace") for record in records]
        data = b"".join(lines)
        if self._fd is None:
            self._handle.write(data.decode("utf-8"))
            self._handle.flush()
            return
        timeout = _STALLED_WAIT if self._stalled else self._timeout
        written = write_with_deadline(self._fd, data, timeout)
        self._stalled = written < len(data)
        if not self._stalled:
            return
        done = 0
        for count, line in enumerate(lines):
            if done + len(line) > written:
                raise SinkStalled(f"console stalled: nothing written for {timeout}s", count)
            done += len(line)
