"""Finite frame sources for jobs: video files, and a deterministic synthetic clip.

``probe(source)`` says how many frames a source has and at what rate (the API calls it to
split the job); ``read(source, start, end)`` yields frames ``[start, end)`` (a worker
calls it for one segment) as ``av.VideoFrame`` objects, which the pipeline's preprocess
resizes in one swscale pass — a worker never holds a full-size RGB copy of a frame.
PyAV stays behind the project's one media seam, :mod:`inference.media.video` (this module imports
no ``av``): :class:`~inference.media.video.VideoReader` decodes, and ``probe`` reads only its
header (:attr:`~inference.media.video.VideoReader.frame_count`), because decoding a whole
archive to count its frames would cost as much as analysing it.

Both refuse frames over ``max_pixels`` (default :data:`MAX_FRAME_PIXELS`, the same
40 MP as ``/v1/infer``'s ``max_image_pixels``) from the header, before a frame is decoded:
a 6.7 MB video of 12000×12000 frames took a worker to 2.2 GB before.

``synthetic://64x48@10?seconds=6`` is a finite moving pattern, not paced in real time
(the live ``synthetic://`` of :mod:`inference.media.sources` never ends, so it cannot be a job).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inference.server.limits import MAX_IMAGE_PIXELS

from .errors import SourceUnreadable

#: Longest source accepted: Linux's PATH_MAX.
MAX_SOURCE_CHARS = 4096
#: Pixels a job's frame may have: ``/v1/infer``'s default ``max_image_pixels``.
MAX_FRAME_PIXELS = MAX_IMAGE_PIXELS

_CLIP = re.compile(r"^synthetic://(\d+)x(\d+)@(\d+(?:\.\d+)?)\?seconds=(\d+(?:\.\d+)?)$")


def probe(source: str, *, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[int, float]:
    """(total frames, frames per second) of ``source``; :class:`SourceUnreadable` if it
    cannot be opened or its frames are over ``max_pixels``."""
    if len(source) > MAX_SOURCE_CHARS:
        # Not echoed: a megabyte "path" would be copied into the answer and the log.
        raise SourceUnreadable(
            f"the source is {len(source)} characters long: a path has at most "
            f"{MAX_SOURCE_CHARS} (PATH_MAX); give the video file's path"
        )
    clip = _CLIP.match(source)
    if clip:
        width, height, fps, seconds = _clip(clip)
        check_pixels(source, width, height, max_pixels)
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
    from inference.errors import SourceError
    from inference.media.video import VideoReader

    try:
        reader = VideoReader(str(path))
    except SourceError as exc:
        # The decoder's own words (the reader's message is about streams and URLs).
        raise SourceUnreadable(
            f"cannot read video {str(path)!r}: {exc.__cause__ or exc}. Check that it is a "
            "complete video file"
        ) from exc
    try:
        check_pixels(str(path), reader.width, reader.height, max_pixels)
        frames, fps = reader.frame_count, reader.fps
    finally:
        reader.close()
    if frames <= 0:
        raise SourceUnreadable(f"video {str(path)!r} has no frame count in its header")
    return frames, fps


def read(
    source: str, start: int, end: int, *, max_pixels: int = MAX_FRAME_PIXELS
) -> Iterator[tuple[int, float | None, Any]]:
    """Yield ``(frame index, pts seconds, av.VideoFrame)`` for frames ``[start, end)``;
    :class:`SourceUnreadable` for frames over ``max_pixels`` (from the header, before
    decoding; each decoded frame is checked too, for headers that give no size)."""
    clip = _CLIP.match(source)
    if clip:
        width, height, fps, _ = _clip(clip)
        check_pixels(source, width, height, max_pixels)
        for index in range(start, end):
            yield index, index / fps, _clip_frame(width, height, index)
        return
    from inference.errors import SourceError
    from inference.media.video import VideoReader

    path = source.removeprefix("file://")
    try:
        reader = VideoReader(path)
    except SourceError as exc:
        raise SourceUnreadable(str(exc)) from exc
    try:
        check_pixels(path, reader.width, reader.height, max_pixels)
        # Decoding from the start and skipping is exact for every codec (a seek lands on a
        # key frame); its cost grows with the segment's offset — see docs/fleet.md.
        index = -1  # not enumerate(): it would hold the last frame while the next decodes
        for frame, pts, _ in reader.frames():
            index += 1
            if index >= end:
                return
            check_pixels(path, frame.width, frame.height, max_pixels)
            if index >= start:
                yield index, pts, frame
            del frame
    except SourceError as exc:
        raise SourceUnreadable(f"cannot decode {path!r}: {exc}") from exc
    finally:
        reader.close()


def check_pixels(source: str, width: int, height: int, max_pixels: int) -> None:
    """:class:`SourceUnreadable` when ``width × height`` is over ``max_pixels`` (a size
    of 0, unknown from a header, passes: the decoded frame is checked)."""
    if width * height > max_pixels:
        raise SourceUnreadable(
            f"{source[:200]!r} has {width}×{height} frames ({width * height:,} pixels), over "
            f"the {max_pixels:,} pixels a job's frame may have (the same cap as /v1/infer's "
            "max_image_pixels): scale the video down first, e.g. "
            "ffmpeg -i IN -vf scale=3840:-2 OUT"
        )


def _clip_frame(width: int, height: int, index: int) -> Any:
    """Frame ``index`` of the synthetic pattern (the live source's, one definition),
    written straight into a new RGB ``av.VideoFrame``: one frame's bytes and a band of
    temporaries (an 8K frame is 100 MB; the whole-frame float version took 500 MB)."""
    from inference.media.sources import synthetic_pattern
    from inference.media.video import new_rgb_frame

    frame, pixels = new_rgb_frame(width, height)
    synthetic_pattern(pixels, index)
    return frame


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
