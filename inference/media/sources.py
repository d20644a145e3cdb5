"""Where frames come from: ``synthetic://WxH@FPS``, a video file, or an rtsp/http URL.

Live sources (synthetic, network) run in real time: a frame carries its capture time,
and a synthetic source that falls behind skips frames (counted as ``late``) rather than
drifting. Files are not live: they are read as fast as the pipeline takes them.

A source is read in two steps, so that a stream's thread runs them as the decode stage's
loop (take, then call): ``read(stop)`` returns the next packet (None at the end), and
``decode(packet)`` the frames in it — none, one, or several. ``frames(stop)`` does both
for a decode process (inference/feed), timing each frame's decoding.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from loglog.redact import redact

from ..errors import SourceError
from .access import SourcePolicy

_SYNTHETIC = re.compile(r"^synthetic://(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?$")


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame as a source yields it."""

    image: Any  # av.VideoFrame or HWC uint8 array
    index: int
    pts: float | None
    captured: float | None  # wall-clock seconds for live sources
    decode_seconds: float = 0.0  # set by ``frames()``


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A parsed source URL."""

    url: str
    kind: str  # synthetic | file | network
    live: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_NETWORK = ("rtsp", "rtsps", "http", "https")


def parse_source(url: str, policy: SourcePolicy | None = None) -> SourceSpec:
    """Validate a source URL against ``policy`` (default: :class:`SourcePolicy()`); raise
    :class:`SourceError` saying what is accepted."""
    policy = policy or SourcePolicy()
    text = (url or "").strip()
    if len(text) > 2048:
        raise SourceError("the source is over 2048 characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise SourceError("the source contains control characters")
    match = _SYNTHETIC.match(text)
    if match:
        policy.check_scheme("synthetic", text)
        width, height = int(match.group(1)), int(match.group(2))
        fps = float(match.group(3) or 30)
        if not (16 <= width <= 7680 and 16 <= height <= 4320 and 0 < fps <= 240):
            raise SourceError(
                f"{text!r}: synthetic sizes are 16–7680 × 16–4320 at 0–240 fps, e.g. synthetic://640x480@30"
            )
        return SourceSpec(text, "synthetic", True, width, height, fps)
    if text.startswith(("synthetic:", "synthetic://")):
        raise SourceError(
            f"{text[:100]!r} is not a valid synthetic source: use synthetic://640x480@30"
        )
    scheme = _SCHEME.match(text)
    if scheme and scheme.group(1).lower() in _NETWORK:
        policy.check_network(text)
        return SourceSpec(text, "network", True)
    if scheme and scheme.group(1).lower() != "file":
        raise SourceError(
            f"source scheme {scheme.group(1)[:20]!r} is not supported: use synthetic://WxH@FPS, "
            "a video file path, or an rtsp/http URL"
        )
    path = text.removeprefix("file://")
    if not path:
        raise SourceError(
            "no source given: use synthetic://640x480@30, a video file path, or an rtsp/http URL"
        )
    policy.check_scheme("file", text)
    real = policy.check_file(path)
    if not Path(real).is_file():
        raise SourceError(_cannot_open(path))
    return SourceSpec(real, "file", False)


def _cannot_open(url: str) -> str:
    # One message for a missing file, an unreadable one, a closed port and a wrong
    # codec: a caller must not learn which paths or ports exist from it.
    return (
        f"cannot open source {redact(url)[:200]!r}: check that it exists, is readable, "
        "has a video stream and (for a URL) that the server is reachable"
    )


#: Rows of a synthetic frame computed at once (bounds the float temporaries: 8K wide,
#: 256 rows × 7680 × 4 bytes ≈ 8 MB).
_PATTERN_ROWS = 256


def synthetic_pattern(pixels: np.ndarray, index: int = 0) -> np.ndarray:
    """Write frame ``index`` of the synthetic test pattern into ``pixels`` (an HWC uint8
    RGB array, or a view of a frame's plane) and return it: red a horizontal ramp, green
    a vertical one, blue their mean, moving 4 columns to the right per frame — so frame
    ``i`` is ``np.roll(frame 0, 4 * i, axis=1)``. The one definition of the pattern, for
    the live ``synthetic://WxH@FPS`` and the finite job clip; it is written a band of
    rows at a time, so an 8K frame needs no whole-frame float temporaries (500 MB)."""
    height, width = pixels.shape[:2]
    x = np.roll(np.linspace(0, 255, width, dtype=np.float32), index * 4)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels[:, :, 0] = x.astype(np.uint8)
    pixels[:, :, 1] = y.astype(np.uint8)
    for top in range(0, height, _PATTERN_ROWS):
        band = y[top : top + _PATTERN_ROWS]
        pixels[top : top + _PATTERN_ROWS, :, 2] = ((x + band) / 2).astype(np.uint8)
    return pixels


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
        # Frame i is frame 0 moved by 4·i columns (see synthetic_pattern): one roll each.
        self._base = synthetic_pattern(np.empty((spec.height, spec.width, 3), np.uint8))
        self.late = 0  # frames skipped to catch up with real time
        self._period = 1.0 / self.fps
        self._start: float | None = None  # when frame 0 was due
        self._index = 0

    def read(self, stop: Callable[[], bool]) -> int | None:
        """Wait until the next frame is due and return its index (the "packet"); None
        once ``stop()``. Behind real time, it skips to the present frame."""
        if stop():
            return None
        period = self._period
        if self._start is None:
            self._start = self._clock()
        due = self._start + self._index * period
        now = self._clock()
        if now < due:
            self._sleep(due - now)
        elif now - due > period:  # behind real time: skip to the present frame
            skipped = int((now - due) / period)
            self.late += skipped
            self._index += skipped
        index, self._index = self._index, self._index + 1
        return index

    def decode(self, index: int) -> list[Frame]:
        """Frame ``index`` of the pattern (the "decoding": one roll of frame 0)."""
        image = np.roll(self._base, index * 4, axis=1)
        return [Frame(image, index, index * self._period, self._wall())]

    def frames(self, stop: Callable[[], bool]) -> Iterator[Frame]:
        while (index := self.read(stop)) is not None:
            began = time.perf_counter()
            (frame,) = self.decode(index)
            yield dataclasses.replace(frame, decode_seconds=time.perf_counter() - began)


class VideoSource:
    """A file or network stream decoded with PyAV."""

    def __init__(
        self, spec: SourceSpec, *, wall: Callable[[], float] = time.time, threads: int = 0
    ) -> None:
        from .video import VideoReader

        self.spec = spec
        self._reader: VideoReader | None = VideoReader(spec.url, threads=threads)
        self.fps = self._reader.fps
        self.width, self.height = self._reader.width, self._reader.height
        self.late = 0
        self._wall = wall
        self._packets: Iterator[Any] | None = None
        self._index = 0  # of the next decoded frame

    def read(self, stop: Callable[[], bool]) -> Any:
        """The next packet (not decoded yet), or None at the end or once ``stop()``."""
        if stop() or self._reader is None:
            return None
        if self._packets is None:
            self._packets = self._reader.packets()
        return next(self._packets, None)

    def decode(self, packet: Any) -> list[Frame]:
        """The frames in ``packet`` (none while the decoder fills its pipeline)."""
        reader = self._reader
        if reader is None:  # closed meanwhile
            return []
        frames = []
        for image, pts in reader.decode(packet):
            captured = self._wall() if self.spec.live else None
            frames.append(Frame(image, self._index, pts, captured))
            self._index += 1
        return frames

    def frames(self, stop: Callable[[], bool]) -> Iterator[Frame]:
        try:
            if self._reader is None:
                return
            for index, (image, pts, seconds) in enumerate(self._reader.frames()):
                if stop():
                    return
                captured = self._wall() if self.spec.live else None
                yield Frame(image, index, pts, captured, seconds)
        finally:
            self.close()

    def close(self) -> None:
        """Release the container and its decoder threads (idempotent)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


def open_source(spec: SourceSpec, *, threads: int = 0) -> SyntheticSource | VideoSource:
    """Open ``spec`` (network and files are opened now, so errors surface at once);
    ``threads``: FFmpeg decoder threads (0: FFmpeg chooses)."""
    if spec.kind == "synthetic":
        return SyntheticSource(spec)
    try:
        return VideoSource(spec, threads=threads)
    except SourceError:
        raise SourceError(_cannot_open(spec.url)) from None
