"""Where frames come from: ``synthetic://WxH@FPS``, a video file, or an rtsp/http URL.

Live sources (synthetic, network) run in real time: a frame carries its capture time,
and a synthetic source that falls behind skips frames (counted as ``late``) rather than
drifting. Files are not live: they are read as fast as the pipeline takes them.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SourceError

_SYNTHETIC = re.compile(r"^synthetic://(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?$")


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame as a source yields it."""

    image: Any  # av.VideoFrame or HWC uint8 array
    index: int
    pts: float | None
    captured: float | None  # wall-clock seconds for live sources
    decode_seconds: float


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A parsed source URL."""

    url: str
    kind: str  # synthetic | file | network
    live: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


def parse_source(url: str) -> SourceSpec:
    """Validate a source URL; raise :class:`SourceError` saying what is accepted."""
    text = (url or "").strip()
    match = _SYNTHETIC.match(text)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        fps = float(match.group(3) or 30)
        if not (16 <= width <= 7680 and 16 <= height <= 4320 and 0 < fps <= 240):
            raise SourceError(
                f"{text!r}: synthetic sizes are 16–7680 × 16–4320 at 0–240 fps, e.g. synthetic://640x480@30"
            )
        return SourceSpec(text, "synthetic", True, width, height, fps)
    if text.startswith(("synthetic:", "synthetic://")):
        raise SourceError(f"{text!r} is not a valid synthetic source: use synthetic://640x480@30")
    if text.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return SourceSpec(text, "network", True)
    path = text.removeprefix("file://")
    if not path:
        raise SourceError(
            "no source given: use synthetic://640x480@30, a video file path, or an rtsp/http URL"
        )
    if not Path(path).is_file():
        raise SourceError(f"no such video file {path!r}: give an existing path or an rtsp/http URL")
    return SourceSpec(path, "file", False)


class SyntheticSource:
    """A moving test pattern, paced in real time. No file, no network."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.fps = spec.fps
        self.width, self.height = spec.width, spec.height
        self._clock, self._sleep, self._wall = clock, sleep, wall
        y = np.linspace(0, 255, spec.height, dtype=np.float32)[:, None]
        x = np.linspace(0, 255, spec.width, dtype=np.float32)[None, :]
        base = np.stack([np.broadcast_to(x, (spec.height, spec.width)),
                         np.broadcast_to(y, (spec.height, spec.width)),
                         (x + y) / 2 * np.ones((spec.height, 1), np.float32)], axis=-1)  # fmt: skip
        self._base = base.astype(np.uint8)
        self.late = 0  # frames skipped to catch up with real time

    def frames(self, stop: Callable[[], bool]) -> Iterator[Frame]:
        period = 1.0 / self.fps
        start = self._clock()
        index = 0
        while not stop():
            due = start + index * period
            now = self._clock()
            if now < due:
                self._sleep(due - now)
            elif now - due > period:  # behind real time: skip to the present frame
                skipped = int((now - due) / period)
                self.late += skipped
                index += skipped
            began = time.perf_counter()
            image = np.roll(self._base, index * 4, axis=1)
            yield Frame(image, index, index * period, self._wall(), time.perf_counter() - began)
            index += 1


class VideoSource:
    """A file or network stream decoded with PyAV."""

    def __init__(self, spec: SourceSpec, *, wall: Callable[[], float] = time.time) -> None:
        from .video import VideoReader

        self.spec = spec
        self._reader = VideoReader(spec.url)
        self.fps = self._reader.fps
        self.width, self.height = self._reader.width, self._reader.height
        self.late = 0
        self._wall = wall

    def frames(self, stop: Callable[[], bool]) -> Iterator[Frame]:
        try:
            for index, (image, pts, seconds) in enumerate(self._reader.frames()):
                if stop():
                    return
                captured = self._wall() if self.spec.live else None
                yield Frame(image, index, pts, captured, seconds)
        finally:
            self._reader.close()


def open_source(spec: SourceSpec) -> SyntheticSource | VideoSource:
    """Open ``spec`` (network and files are opened now, so errors surface at once)."""
    if spec.kind == "synthetic":
        return SyntheticSource(spec)
    return VideoSource(spec)
