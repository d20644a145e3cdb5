"""Finite frame sources for jobs: video files, and a deterministic synthetic clip.

``probe(source)`` says how many frames a source has and at what rate (the API calls it to
split the job); ``read(source, start, end)`` yields frames ``[start, end)`` (a worker
calls it for one segment). Decoding goes through :class:`inference.video.VideoReader`;
only the frame count is read here from the container header (PyAV), because decoding a
whole archive to count its frames would cost as much as analysing it.

``synthetic://64x48@10?seconds=6`` is a finite moving pattern, not paced in real time
(the live ``synthetic://`` of :mod:`inference.sources` never ends, so it cannot be a job).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import SourceUnreadable

#: Longest source accepted: Linux's PATH_MAX.
MAX_SOURCE_CHARS = 4096

_CLIP = re.compile(r"^synthetic://(\d+)x(\d+)@(\d+(?:\.\d+)?)\?seconds=(\d+(?:\.\d+)?)$")


def probe(source: str) -> tuple[int, float]:
    """(total frames, frames per second) of ``source``; :class:`SourceUnreadable` if it
    cannot be opened."""
    if len(source) > MAX_SOURCE_CHARS:
        # Not echoed: a megabyte "path" would be copied into the answer and the log.
        raise SourceUnreadable(
            f"the source is {len(source)} characters long: a path has at most "
            f"{MAX_SOURCE_CHARS} (PATH_MAX); give the video file's path"
        )
    clip = _CLIP.match(source)
    if clip:
        _, _, fps, seconds = _clip(clip)
        return max(1, round(fps * seconds)), fps
    if source.startswith(("synthetic:", "rtsp://", "rtsps://", "http://", "https://")):
        raise SourceUnreadable(
            f"{source!r} is not a finite source: a job takes a video file path or "
            "synthetic://WxH@FPS?seconds=N (live streams go to POST /v1/streams)"
        )
    path = Path(source.removeprefix("file://"))
    try:
        is_file = path.is_file()
    except OSError as exc:  # ENAMETOOLONG, EACCES: is_file() only hides "not found"
        raise SourceUnreadable(
            f"cannot open {str(path)!r}: {exc.strerror}. Give a path every worker can read"
        ) from exc
    if not is_file:
        raise SourceUnreadable(
            f"no such video file {str(path)!r}: give a path every worker can read"
        )
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 30.0
            frames = int(stream.frames or 0)
            if frames <= 0 and stream.duration is not None and stream.time_base is not None:
                frames = math.ceil(float(stream.duration * stream.time_base) * fps)
            if frames <= 0 and container.duration:
                frames = math.ceil(container.duration / 1_000_000 * fps)
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise SourceUnreadable(
            f"cannot read video {str(path)!r}: {exc}. Check that it is a complete video file"
        ) from exc
    if frames <= 0:
        raise SourceUnreadable(f"video {str(path)!r} has no frame count in its header")
    return frames, fps


def read(source: str, start: int, end: int) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """Yield ``(frame index, pts seconds, HWC uint8 RGB)`` for frames ``[start, end)``."""
    clip = _CLIP.match(source)
    if clip:
        width, height, fps, _ = _clip(clip)
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        base = np.stack(
            [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
             np.broadcast_to((x + y) / 2, (height, width))], axis=-1,
        ).astype(np.uint8)  # fmt: skip
        for index in range(start, end):
            yield index, index / fps, np.roll(base, index * 4, axis=1)
        return
    from inference.errors import SourceError
    from inference.video import VideoReader, to_rgb

    path = source.removeprefix("file://")
    try:
        reader = VideoReader(path)
    except SourceError as exc:
        raise SourceUnreadable(str(exc)) from exc
    try:
        # Decoding from the start and skipping is exact for every codec (a seek lands on a
        # key frame); its cost grows with the segment's offset — see the README.
        for index, (frame, pts, _) in enumerate(reader.frames()):
            if index >= end:
                return
            if index >= start:
                yield index, pts, to_rgb(frame)
    except SourceError as exc:
        raise SourceUnreadable(f"cannot decode {path!r}: {exc}") from exc
    finally:
        reader.close()


def _clip(match: re.Match[str]) -> tuple[int, int, float, float]:
    width, height = int(match.group(1)), int(match.group(2))
    fps, seconds = float(match.group(3)), float(match.group(4))
    # isfinite: 400 nines parse as inf seconds, whose frame count cannot be rounded.
    if not (16 <= width <= 7680 and 16 <= height <= 4320 and 0 < fps <= 240 and seconds > 0
            and math.isfinite(seconds)):  # fmt: skip
        raise SourceUnreadable(
            f"synthetic clip {match.group(0)!r}: sizes 16–7680 × 16–4320, 0–240 fps, "
            "seconds > 0, e.g. synthetic://64x48@10?seconds=6"
        )
    return width, height, fps, seconds
