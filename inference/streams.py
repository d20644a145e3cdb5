"""Streams: one source thread per stream, a small mailbox each, one ingest thread.

A live source decodes in real time into its mailbox (``stream_buffer`` frames). When the
pipeline is behind, the mailbox drops its *oldest* frame — counted as ``behind`` — so a
live stream stays fresh and its lag stays bounded instead of growing for an hour. File
sources wait instead (no drops). The ingest thread takes frames from the mailboxes in
turn (fair between streams) and hands them to the pipeline, blocking when its first
queue is full: that is the backpressure. A stream that fails ends alone, with its error.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from typing import Any

from .drills import Drills
from .errors import SourceError, StreamLimitError, UnknownStreamError
from .metrics import RuntimeMetrics
from .pipeline import Pipeline
from .sources import SourceSpec, open_source, parse_source
from .types import Item

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FPS_WINDOW = 5.0


class _Stream:
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
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.drills = drills
        self.max_streams = max_streams
        self.buffer = buffer
        self.log = log
        self._streams: dict[str, _Stream] = {}
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
        """Start a stream; raises SourceError / StreamLimitError with what to do."""
        spec = parse_source(source)
        with self._cond:
            running = sum(s.state == "running" for s in self._streams.values())
            if running >= self.max_streams:
                raise StreamLimitError(
                    f"{running} streams are running, the limit is {self.max_streams}: "
                    "delete one first, or raise max_streams in the config"
                )
            if stream_id is None:
                self._counter += 1
                stream_id = f"stream-{self._counter}"
            if not _ID.match(stream_id):
                raise SourceError(
                    f"stream id {stream_id!r}: use 1–64 letters, digits, '.', '_' or '-'"
                )
            if stream_id in self._streams and self._streams[stream_id].state == "running":
                raise SourceError(
                    f"stream {stream_id!r} already exists: pick another id or delete it"
                )
        opened = open_source(spec)  # opens files/URLs now: errors reach the caller
        stream = _Stream(stream_id, spec, opened, self.buffer)
        if record:
            from .video import Recorder

            width = spec.width or opened.width
            height = spec.height or opened.height
            stream.recorder = Recorder(record, width=width, height=height, fps=opened.fps)
            self.pipeline.keep_images.add(stream_id)
            self.pipeline.encode.attach(stream_id, stream.recorder)
        with self._cond:
            self._streams[stream_id] = stream
            self._order.append(stream_id)
        stream.thread = threading.Thread(
            target=self._source_loop, args=(stream,), name=f"source-{stream_id}", daemon=True
        )
        stream.thread.start()
        self._update_workers()
        if self.log is not None:
            self.log.info("stream started", stream=stream_id, source=spec.url, live=spec.live)
        return self.describe(stream)

    def remove(self, stream_id: str) -> None:
        with self._cond:
            stream = self._streams.pop(stream_id, None)
            if stream is None:
                raise UnknownStreamError(f"no stream {stream_id!r}: GET /v1/streams lists them")
            if stream_id in self._order:
                self._order.remove(stream_id)
            stream.stopping = True
            stream.state = "stopped"
            self._cond.notify_all()
        if stream.thread is not None:
            stream.thread.join(timeout=5)
        self._close_recorder(stream)
        for metric in (self.metrics.frames_total, self.metrics.stream_lag_seconds):
            self._forget(metric, stream_id)
        for reason in list(stream.dropped):
            self._forget(self.metrics.frames_dropped_total, stream_id, reason)
        self._update_workers()

    def list(self) -> list[dict[str, Any]]:
        with self._cond:
            streams = list(self._streams.values())
        return [self.describe(stream) for stream in streams]

    def describe(self, stream: _Stream) -> dict[str, Any]:
        now = time.monotonic()
        recent = sum(1 for t in list(stream.ingested) if now - t <= _FPS_WINDOW)
        span = min(_FPS_WINDOW, max(now - (stream.ingested[0] if stream.ingested else now), 1e-9))
        return {
            "id": stream.id,
            "source": stream.spec.url,
            "live": stream.spec.live,
            "state": stream.state,
            "error": stream.error or None,
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

    def _source_loop(self, stream: _Stream) -> None:
        frames_total = self.metrics.frames_total.labels(stream.id)
        late_seen = 0
        try:
            for frame in stream.source.frames(lambda: stream.stopping):
                token = self.pipeline.begin_decode(frame.decode_seconds)  # in progress now
                self.drills.pause("decode")
                item = Item(
                    stream.id, frame.index, frame.pts, image=frame.image, captured=frame.captured
                )
                self.pipeline.end_decode(token, item)
                frames_total.inc()
                stream.frames += 1
                late = getattr(stream.source, "late", 0)
                if late > late_seen:
                    self._drop(stream, "late", late - late_seen)
                    late_seen = late
                self._deliver(stream, item)
            if not stream.stopping:
                stream.state = "ended"
        except SourceError as exc:
            stream.state, stream.error = "failed", str(exc)
            if self.log is not None:
                self.log.error("stream failed", stream=stream.id, error=str(exc))
        except Exception as exc:  # a broken stream ends alone
            stream.state, stream.error = "failed", f"{type(exc).__name__}: {exc}"
            if self.log is not None:
                self.log.exception("stream crashed", stream=stream.id)
        finally:
            self._update_workers()

    def _deliver(self, stream: _Stream, item: Item) -> None:
        with self._cond:
            if stream.spec.live:
                if len(stream.mailbox) >= stream.buffer:
                    stream.mailbox.popleft()  # keep the freshest frames
                    self._drop(stream, "behind", 1)
            else:
                while len(stream.mailbox) >= stream.buffer and not stream.stopping:
                    self._cond.wait(0.5)
            stream.mailbox.append(item)
            self._cond.notify_all()

    def _drop(self, stream: _Stream, reason: str, count: int) -> None:
        stream.dropped[reason] = stream.dropped.get(reason, 0) + count
        self.metrics.frames_dropped_total.labels(stream.id, reason).inc(count)

    def _ingest_loop(self) -> None:
        while not self._stopping:
            taken = self._take()
            if taken is None:
                continue
            stream, item = taken
            if item.captured is not None:
                stream.lag = max(0.0, time.time() - item.captured)
                self.metrics.stream_lag_seconds.labels(stream.id).set(stream.lag)
            stream.ingested.append(time.monotonic())
            self.pipeline.submit(item)  # blocks while the pipeline is full: backpressure

    def _take(self) -> tuple[_Stream, Item] | None:
        with self._cond:
            for _ in range(2):
                for _ in range(len(self._order)):
                    stream_id = self._order[0]
                    self._order.rotate(-1)
                    stream = self._streams.get(stream_id)
                    if stream is not None and stream.mailbox:
                        item = stream.mailbox.popleft()
                        self._cond.notify_all()
                        return stream, item
                self._cond.wait(0.2)
        return None

    def _update_workers(self) -> None:
        self.pipeline.set_stream_decoders(self.active())
        self.metrics.streams_active.set(self.active())

    def _close_recorder(self, stream: _Stream) -> None:
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
