"""One stream: its state, where its frames arrive, and its source thread.

A stream's frames arrive at its :class:`Inlet`, counted there, from one of two places:
its own source thread here (:func:`run_source`: the pipeline's stage loop for decode on
this source), or the reader of the decode process that decodes it (:mod:`inference.feed`).
The inlet hands them to the :class:`Mailboxes` that hold them until ingest takes them —
the :class:`~inference.core.streams.StreamManager`, which owns every stream's state.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from loglog.redact import redact

from ..errors import SourceError
from ..media.sources import SourceSpec
from ..metrics import RuntimeMetrics
from ..types import Item
from .pipeline import Pipeline


def failure(exc: BaseException) -> tuple[str, bool]:
    """A stream's end: its error's message, and whether it crashed (anything but a
    :class:`SourceError`, which says what to do)."""
    if isinstance(exc, SourceError):
        return str(exc), False
    return f"{type(exc).__name__}: {exc}", True


class Stream:
    """A stream's state, read and changed under its manager's lock."""

    def __init__(self, stream_id: str, spec: SourceSpec, source: Any, buffer: int) -> None:
        self.id = stream_id
        self.spec = spec
        self.source = source
        self.buffer = buffer
        self.mailbox: deque[Item] = deque()
        self.state = "running"
        self.error = ""
        self.frames = 0
        self.dropped: dict[str, int] = {}
        self.lag = 0.0
        self.ingested: deque[float] = deque(maxlen=2000)
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.recorder: Any = None
        self.started = time.time()
        self.ended_at: float | None = None  # manager clock, when it ended or failed
        self.pixel_rate = spec.width * spec.height * spec.fps  # updated once opened
        #: Called when ingest takes a frame from the mailbox (a decode process's credit).
        self.on_take: Callable[[], None] | None = None


class Mailboxes(Protocol):
    """What an inlet asks of the streams' manager."""

    log: Any
    metrics: RuntimeMetrics

    def deliver(self, stream: Stream, item: Item, wait: bool = True) -> None: ...

    def drop(self, stream: Stream, reason: str, count: int) -> None: ...

    def room(self, stream: Stream) -> int: ...

    def ended(self, stream: Stream) -> None: ...


class Inlet:
    """Where a stream's frames arrive: from its source thread here, or from the reader of
    the decode process that decodes it. Counts them and delivers them to the mailbox."""

    def __init__(self, manager: Mailboxes, stream: Stream) -> None:
        self._manager = manager
        self._stream = stream
        self._frames_total = manager.metrics.frames_total.labels(stream.id)
        self._late_seen = 0

    def frame(self, item: Item, late: int, *, deliver: bool = True) -> None:
        """A decoded frame (``deliver=False``: decoded, but it failed or the stream stopped
        before it could be sent); ``late``: frames the source skipped so far."""
        stream = self._stream
        self._frames_total.inc()
        stream.frames += 1
        if late > self._late_seen:
            self._manager.drop(stream, "late", late - self._late_seen)
            self._late_seen = late
        if deliver:
            # A decode process sends a file stream's frames only when its mailbox has
            # room (credits): the reader thread never waits here.
            self._manager.deliver(stream, item, wait=stream.on_take is None)

    def room(self) -> int:
        """Places left in the mailbox (a file stream's credits after a restart)."""
        return self._manager.room(self._stream)

    def end(self, error: str | None = None, *, crashed: bool = False) -> None:
        """The source ended (``error``: it failed, or ``crashed``)."""
        stream, log = self._stream, self._manager.log
        if error is None:
            if not stream.stopping:
                stream.state = "ended"
        else:
            stream.state, stream.error = "failed", redact(error)
            if log is not None:
                what = "stream crashed" if crashed else "stream failed"
                log.error(what, stream=stream.id, error=stream.error)
        self._manager.ended(stream)


def run_source(pipeline: Pipeline, stream: Stream, inlet: Inlet) -> None:
    """The stream's thread: the pipeline's stage loop for decode, on this source
    (take = read the next packet, call = decode it, forward = the mailbox)."""
    source = stream.source
    done = threading.Event()  # the source ended, failed, or the stream stops
    failures: list[BaseException] = []

    def end(exc: BaseException) -> None:  # a broken stream ends alone
        failures.append(exc)
        done.set()

    def take() -> list[Item]:
        try:
            packet = source.read(lambda: stream.stopping)
        except Exception as exc:
            end(exc)
            return []
        if packet is None:
            done.set()
            return []
        return [Item(stream.id, -1, packet=packet)]

    def decode(items: list[Item]) -> list[Item]:
        return [
            Item(stream.id, f.index, f.pts, image=f.image, captured=f.captured)
            for f in source.decode(items[0].packet)
        ]

    def forward(item: Item) -> None:
        inlet.frame(item, getattr(source, "late", 0))

    def fail(item: Item) -> None:
        end(item.error or SourceError("decoding failed"))

    try:
        pipeline.run_stage(pipeline.source_stage(take, decode, forward, fail), done)
    except Exception as exc:
        failures.append(exc)
    finally:
        close = getattr(source, "close", None)
        if close is not None:  # release decoder threads now, not when reaped
            with contextlib.suppress(Exception):
                close()
        error, crashed = failure(failures[0]) if failures else (None, False)
        inlet.end(error, crashed=crashed)
