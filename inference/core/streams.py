"""Streams: one source thread per stream, a small mailbox each, one ingest thread.

A live source decodes in real time into its mailbox (``stream_buffer`` frames). When the
pipeline is behind, the mailbox drops its *oldest* frame — counted as ``behind`` — so a
live stream stays fresh and its lag stays bounded instead of growing for an hour. File
sources wait instead (no drops). The ingest thread takes frames from the mailboxes in
turn (fair between streams) and hands them to the pipeline, blocking when its first
queue is full: that is the backpressure. A stream that fails ends alone, with its error.

With decode processes (``feed``, :mod:`inference.feed`) a stream decodes and preprocesses
in one of them instead of on a thread here; its frames reach the same mailbox through the
same :class:`~inference.core.stream.Inlet`, so all of the above holds for them unchanged.
One stream's own side — its state, its inlet, its source thread — is
:mod:`inference.core.stream`.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from loglog.redact import redact

from ..errors import BudgetError, SourceError, StreamLimitError, UnknownStreamError
from ..media.access import SourcePolicy, record_path
from ..media.sources import open_source, parse_source
from ..metrics import RuntimeMetrics
from ..types import Item
from .drills import Drills
from .pipeline import Pipeline
from .stream import Inlet, Stream, run_source

# A letter or digit first ("..", ".hidden" and "-x" are refused); \Z, not $, so that a
# trailing newline does not pass.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_FPS_WINDOW = 5.0
_ENDED = ("ended", "failed")


def stream_limits(config: Any) -> dict[str, Any]:
    """StreamManager's limit keywords from a RuntimeConfig (one place to add new ones)."""
    return {
        "policy": SourcePolicy(
            schemes=config.source_schemes,
            hosts=config.source_hosts,
            file_dirs=config.source_dirs,
        ),
        "max_pixel_rate": config.max_stream_pixel_rate,
        "max_pixels": config.max_image_pixels,
        "reap_after": config.stream_reap_s,
        "record_dir": config.record_dir,
    }


class StreamManager:
    """Adds, lists and removes streams; see the module docstring."""

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: RuntimeMetrics,
        drills: Drills,
        *,
        max_streams: int,
        buffer: int,
        log: Any = None,
        policy: SourcePolicy | None = None,
        max_pixel_rate: float = 1.0e9,
        max_pixels: int = 40_000_000,
        reap_after: float = 60.0,
        record_dir: str = "recordings",
        clock: Callable[[], float] = time.monotonic,
        feed: Any = None,
    ) -> None:
        """``feed``: a :class:`inference.feed.DecodePool` to decode streams in (None: on
        a thread each, here)."""
        self.pipeline = pipeline
        self.feed = feed
        self.metrics = metrics
        self.drills = drills
        self.max_streams = max_streams
        self.buffer = buffer
        self.log = log
        self.policy = policy or SourcePolicy()
        self.max_pixel_rate = max_pixel_rate
        self.max_pixels = max_pixels
        self.reap_after = reap_after
        self.record_dir = record_dir
        self._clock = clock
        self._streams: dict[str, Stream] = {}
        self._order: deque[str] = deque()
        self._cond = threading.Condition()
        self._counter = 0
        self._stopping = False
        self._ingest = threading.Thread(target=self._ingest_loop, name="ingest", daemon=True)
        self._ingest.start()

    # -- API ---------------------------------------------------------------------------

    def add(
        self, source: str, stream_id: str | None = None, record: str | None = None
    ) -> dict[str, Any]:
        """Start a stream; raises SourceError / BudgetError / StreamLimitError with what
        to do. The id is reserved atomically first, so of concurrent creates with one id
        exactly one succeeds, and a DELETE that arrives while it opens wins cleanly."""
        spec = parse_source(source, self.policy)
        if stream_id is not None and not _ID.match(stream_id):
            raise SourceError(
                f"stream id {stream_id[:80]!r}: use 1–64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        self.reap()
        with self._cond:
            if len(self._streams) >= self.max_streams:
                raise StreamLimitError(
                    f"{len(self._streams)} streams exist (ended ones count until reaped after "
                    f"{self.reap_after:.0f}s), the limit is {self.max_streams}: delete one "
                    "first, or raise max_streams in the config"
                )
            if stream_id is None:
                self._counter += 1
                while f"stream-{self._counter}" in self._streams:
                    self._counter += 1
                stream_id = f"stream-{self._counter}"
            if stream_id in self._streams:
                raise SourceError(
                    f"stream {stream_id!r} already exists: pick another id or delete it"
                )
            stream = Stream(stream_id, spec, None, self.buffer)
            stream.state = "starting"
            self._check_budget(stream)
            self._streams[stream_id] = stream  # the reservation
        try:
            self._open(stream, record)
        except BaseException:
            with self._cond:
                if self._streams.get(stream_id) is stream:
                    del self._streams[stream_id]
            self._release(stream)
            raise
        with self._cond:
            if stream.stopping or self._streams.get(stream_id) is not stream:
                deleted = True
            else:
                deleted = False
                stream.state = "running"
                self._order.append(stream_id)
                start = getattr(stream.source, "start", None)
                if start is not None:  # decoded in a decode process
                    stream.on_take = getattr(stream.source, "taken", None)
                    start(Inlet(self, stream))
                else:
                    # Started under the lock: a remove() that finds the stream finds its
                    # thread started, so its join() cannot race the start.
                    stream.thread = threading.Thread(
                        target=self._source_loop,
                        args=(stream,),
                        name=f"source-{stream_id}",
                        daemon=True,
                    )
                    stream.thread.start()
        if deleted:
            self._release(stream)
            raise UnknownStreamError(f"stream {stream_id!r} was deleted while it was starting")
        self._update_workers()
        if self.log is not None:
            self.log.info(
                "stream started", stream=stream_id, source=redact(spec.url), live=spec.live
            )
        return self.describe(stream)

    def _check_budget(self, stream: Stream) -> None:
        """Under the lock: refuse a stream that would take the summed pixel rate
        (width × height × fps of every live stream) over ``max_pixel_rate``."""
        others = sum(
            s.pixel_rate
            for s in self._streams.values()
            if s is not stream and s.state in ("starting", "running")
        )
        if others + stream.pixel_rate > self.max_pixel_rate:
            raise BudgetError(
                f"stream {stream.id!r} needs {stream.pixel_rate:.3g} pixels/s and the running "
                f"streams use {others:.3g}; the budget is {self.max_pixel_rate:.3g} pixels/s "
                "(max_stream_pixel_rate): use a smaller size or fps, or delete a stream"
            )

    def _open(self, stream: Stream, record: str | None) -> None:
        spec = stream.spec
        # Opens files/URLs now: errors reach the caller. A recorded stream decodes here:
        # the encode stage needs its pictures, which a decode process does not send.
        if self.feed is not None and not record:
            stream.source = self.feed.open(spec, stream.id)
        else:
            stream.source = open_source(spec)
        width = spec.width or stream.source.width
        height = spec.height or stream.source.height
        if width * height > self.max_pixels:
            raise BudgetError(
                f"the source is {width}×{height}, over {self.max_pixels} pixels (max_image_pixels)"
            )
        with self._cond:
            stream.pixel_rate = width * height * stream.source.fps
            self._check_budget(stream)
        if record:
            from ..media.video import Recorder

            path = record_path(self.record_dir, record)
            stream.recorder = Recorder(str(path), width=width, height=height, fps=stream.source.fps)
            self.pipeline.keep_images.add(stream.id)
            self.pipeline.encode.attach(stream.id, stream.recorder)

    def _release(self, stream: Stream) -> None:
        """Close what a stream that never ran had opened."""
        self._close_recorder(stream)
        close = getattr(stream.source, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def remove(self, stream_id: str) -> None:
        with self._cond:
            stream = self._streams.pop(stream_id, None)
            if stream is None:
                raise UnknownStreamError(
                    f"no stream {stream_id[:80]!r}: GET /v1/streams lists them"
                )
            if stream_id in self._order:
                self._order.remove(stream_id)
            starting = stream.state == "starting"
            stream.stopping = True
            stream.state = "stopped"
            self._cond.notify_all()
        if starting:
            return  # add() sees the stop, releases what it opened and answers 404
        self._finish(stream)

    def _finish(self, stream: Stream) -> None:
        """Join the stream's thread, close its recording, drop its series."""
        if stream.thread is not None:
            stream.thread.join(timeout=5)
        elif stream.source is not None:
            with contextlib.suppress(Exception):
                stream.source.close()  # a decode process's stream ends there
        self._close_recorder(stream)
        for metric in (self.metrics.frames_total, self.metrics.stream_lag_seconds):
            self._forget(metric, stream.id)
        for reason in list(stream.dropped):
            self._forget(self.metrics.frames_dropped_total, stream.id, reason)
        self._update_workers()

    def reap(self) -> int:
        """Remove streams that ended or failed more than ``reap_after`` seconds ago
        (threads joined, series removed); returns how many."""
        now = self._clock()
        with self._cond:
            done = [
                s
                for s in self._streams.values()
                if s.state in _ENDED
                and s.ended_at is not None
                and now - s.ended_at >= self.reap_after
            ]
            for stream in done:
                del self._streams[stream.id]
                if stream.id in self._order:
                    self._order.remove(stream.id)
        for stream in done:
            self._finish(stream)
        return len(done)

    def list(self) -> list[dict[str, Any]]:
        self.reap()
        with self._cond:
            streams = list(self._streams.values())
        return [self.describe(stream) for stream in streams]

    def describe(self, stream: Stream) -> dict[str, Any]:
        now = time.monotonic()
        recent = sum(1 for t in list(stream.ingested) if now - t <= _FPS_WINDOW)
        span = min(_FPS_WINDOW, max(now - (stream.ingested[0] if stream.ingested else now), 1e-9))
        return {
            "id": stream.id,
            "source": redact(stream.spec.url),
            "live": stream.spec.live,
            "state": stream.state,
            "error": redact(stream.error) if stream.error else None,
            "frames": stream.frames,
            "fps": round(recent / span, 2) if recent else 0.0,
            "lag_s": round(stream.lag, 4),
            "dropped": dict(stream.dropped),
        }

    def active(self) -> int:
        return sum(s.state == "running" for s in list(self._streams.values()))

    def stop_all(self) -> None:
        for stream_id in [s.id for s in list(self._streams.values())]:
            with contextlib.suppress(UnknownStreamError):
                self.remove(stream_id)
        self._stopping = True
        with self._cond:
            self._cond.notify_all()
        self._ingest.join(timeout=5)

    # -- threads -------------------------------------------------------------------------

    def _source_loop(self, stream: Stream) -> None:
        run_source(self.pipeline, stream, Inlet(self, stream))

    # -- the mailboxes (what an Inlet asks) -------------------------------------------

    def deliver(self, stream: Stream, item: Item, wait: bool = True) -> None:
        """Into ``stream``'s mailbox: a live stream drops its oldest frame when full, a
        file stream waits (``wait``) for room."""
        with self._cond:
            if stream.spec.live:
                if len(stream.mailbox) >= stream.buffer:
                    stream.mailbox.popleft()  # keep the freshest frames
                    self.drop(stream, "behind", 1)
            elif wait:
                while len(stream.mailbox) >= stream.buffer and not stream.stopping:
                    self._cond.wait(0.5)
            stream.mailbox.append(item)
            self._cond.notify_all()

    def drop(self, stream: Stream, reason: str, count: int) -> None:
        """``count`` frames of ``stream`` dropped for ``reason``."""
        stream.dropped[reason] = stream.dropped.get(reason, 0) + count
        self.metrics.frames_dropped_total.labels(stream.id, reason).inc(count)

    def room(self, stream: Stream) -> int:
        """Places left in ``stream``'s mailbox."""
        with self._cond:
            return max(0, stream.buffer - len(stream.mailbox))

    def ended(self, stream: Stream) -> None:
        """``stream``'s source ended (its state already says how)."""
        stream.ended_at = self._clock()
        self._update_workers()

    def _ingest_loop(self) -> None:
        next_reap = self._clock() + 1.0
        while not self._stopping:
            if self._clock() >= next_reap:
                next_reap = self._clock() + 1.0
                try:
                    self.reap()
                except Exception as exc:  # reaping must never stop ingest
                    if self.log is not None:
                        self.log.error("reaping streams failed", error=str(exc))
            taken = self._take()
            if taken is None:
                continue
            stream, item = taken
            if item.captured is not None:
                stream.lag = max(0.0, time.time() - item.captured)
                self.metrics.stream_lag_seconds.labels(stream.id).set(stream.lag)
            stream.ingested.append(time.monotonic())
            self.pipeline.submit(item)  # blocks while the pipeline is full: backpressure

    def _take(self) -> tuple[Stream, Item] | None:
        with self._cond:
            for _ in range(2):
                for _ in range(len(self._order)):
                    stream_id = self._order[0]
                    self._order.rotate(-1)
                    stream = self._streams.get(stream_id)
                    if stream is not None and stream.mailbox:
                        item = stream.mailbox.popleft()
                        if stream.on_take is not None:
                            stream.on_take()  # never blocks (the decode process's credit)
                        self._cond.notify_all()
                        return stream, item
                self._cond.wait(0.2)
        return None

    def _update_workers(self) -> None:
        self.metrics.streams_active.set(self.active())

    def _close_recorder(self, stream: Stream) -> None:
        if stream.recorder is None:
            return
        self.pipeline.keep_images.discard(stream.id)
        try:
            self.pipeline.encode.detach(stream.id)
        except Exception as exc:
            if self.log is not None:
                self.log.warning("closing the recording failed", stream=stream.id, error=str(exc))

    @staticmethod
    def _forget(metric: Any, *labels: str) -> None:
        with contextlib.suppress(KeyError):
            metric.remove(*labels)
