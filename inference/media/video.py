"""Everything PyAV: decode images and video, resize in C, re-encode. The only ``av`` importer.

PyAV/FFmpeg errors are translated here into :class:`InputError` (a request's bytes) or
:class:`SourceError` (a stream), with what to do.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal, cast, overload

import av
import numpy as np

from ..errors import InputError, SourceError

#: swscale threads for every resize in this process. One: the resize goes to the model's
#: input size, small enough that slicing it across threads costs more CPU than it saves
#: (640×480 → 32×32: 0.17 ms of CPU on one thread, 0.34 ms with FFmpeg's automatic
#: choice; → 224×224: 0.39 vs 0.52 ms; 2 cores, 2026-12). A process may change it once
#: at start (set_scale_threads); 0 lets FFmpeg pick from the cores it may use.
_SCALE_THREADS = 1


def set_scale_threads(threads: int) -> None:
    """Decide this process's swscale threads (0: FFmpeg's automatic choice)."""
    global _SCALE_THREADS
    _SCALE_THREADS = threads


def resize_rgb(image: Any, width: int, height: int) -> np.ndarray:
    """An (height, width, 3) uint8 RGB array from a VideoFrame or an HWC uint8 array.

    Resizing runs in swscale (C), far cheaper than in NumPy. The planar ``gbrp`` target
    is measured here at 0.41 ms for 640×480 → 224×224 against 0.92 ms for packed
    ``rgb24``; PyAV returns it as an RGB-ordered HWC array all the same.
    """
    frame = (
        image
        if isinstance(image, av.VideoFrame)
        else av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    )
    return frame.reformat(
        width=width, height=height, format="gbrp", threads=_SCALE_THREADS
    ).to_ndarray()


#: Magic bytes → the image format they start.
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"))
#: Content-Type → image format, for the error message when the bytes disagree.
_CONTENT_TYPES = {
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
    "image/png": "png",
    "image/x-png": "png",
}
#: Image format → FFmpeg decoder.
_DECODERS = {"jpeg": "mjpeg", "png": "png"}


def image_format(data: bytes) -> str | None:
    """``"jpeg"`` or ``"png"`` from the body's first bytes; None for anything else.

    The bytes, not the Content-Type, pick the decoder: a client that labels a PNG
    ``image/jpeg`` still gets it decoded. Example: ``image_format(png_bytes) == "png"``.
    """
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


@overload
def decode_image(
    data: bytes, content_type: str | None = None, *, as_frame: Literal[False] = False
) -> np.ndarray: ...
@overload
def decode_image(
    data: bytes, content_type: str | None = None, *, as_frame: Literal[True]
) -> av.VideoFrame: ...
def decode_image(
    data: bytes, content_type: str | None = None, *, as_frame: bool = False
) -> np.ndarray | av.VideoFrame:
    """Decode JPEG/PNG (or any single-image format FFmpeg reads) to HWC uint8 RGB.

    JPEG and PNG, recognised by their magic bytes, go straight to FFmpeg's decoder
    (``mjpeg``, ``png``) in a codec context: no container is opened and nothing is
    probed. Probing the container (``av.open`` without a format) cost 13.7 of the 17 ms a
    640×480 JPEG took to decode (measured with ``python -m bench.decode_bench``). Other
    formats (BMP, WebP, GIF, TIFF…) still go through the probe, the slow path.
    ``content_type`` only sharpens the error when the bytes are not what it announces.

    ``as_frame=True`` returns the decoder's ``av.VideoFrame`` as it came out (YUV for a
    JPEG) instead of an RGB array: preprocess resizes it to the model's size in one
    swscale pass (0.3 ms) instead of converting 640×480 to RGB, copying it into a new
    frame and converting again (1.9 ms of CPU, measured here on 2026-11-28).
    """
    if not data:
        raise InputError(
            "the request body is empty: send an image (image/jpeg, image/png) or a .npy array"
        )
    kind = image_format(data)
    declared = _CONTENT_TYPES.get((content_type or "").split(";")[0].strip().lower())
    try:
        frame = _decode_known(data, _DECODERS[kind]) if kind else _decode_probed_frame(data)
        return frame if as_frame else frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, StopIteration, ValueError, IndexError) as exc:
        said = (
            f"; the Content-Type says {declared.upper()} but the bytes do not start like one"
            if declared and declared != kind
            else ""
        )
        raise InputError(
            f"could not decode the body as an image ({type(exc).__name__}: {exc}){said}: "
            "send image/jpeg, image/png, or a .npy array (application/x-npy)"
        ) from exc


def _decode_known(data: bytes, decoder: str) -> av.VideoFrame:
    """One packet through one decoder. A fresh context per call: creating one costs
    microseconds (measured: no gain from reusing a thread's), and a context that saw a
    broken image carries no state into the next request."""
    context = cast(av.VideoCodecContext, av.CodecContext.create(decoder, "r"))
    frames = context.decode(av.Packet(data))
    if not frames:
        frames = context.decode(None)  # a decoder that buffers (frame threads) flushes here
    if not frames:
        raise ValueError("the decoder produced no picture (truncated or not an image)")
    return frames[0]


def _decode_probed_frame(data: bytes) -> av.VideoFrame:
    """Any single-image format FFmpeg reads; the container format is probed (slow)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        return next(container.decode(video=0))


def _decode_probed(data: bytes) -> np.ndarray:
    """The probing path as an RGB array (what decode_image did for every format before)."""
    return _decode_probed_frame(data).to_ndarray(format="rgb24")


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an HWC uint8 RGB array as PNG (used by loadgen, benchmarks and tests)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    context = av.CodecContext.create("png", "w")
    context.width, context.height, context.pix_fmt = frame.width, frame.height, "rgb24"
    packets = [*context.encode(frame), *context.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def encode_jpeg(rgb: np.ndarray, quality: int = 5) -> bytes:
    """Encode an HWC uint8 RGB array as JPEG (used by loadgen and tests).

    ``quality`` is kept for callers but has no effect: the mjpeg encoder ignores a qscale
    set this way (it did before too; the bytes are the same as before 2026-11-28, so the
    loadgen picture — 290 KiB of noise at 640×480 — stays comparable across runs)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    context = av.CodecContext.create("mjpeg", "w")
    context.width, context.height, context.pix_fmt = frame.width, frame.height, "yuvj420p"
    packets = [*context.encode(frame.reformat(format="yuvj420p")), *context.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


class VideoReader:
    """Decodes a file or a network URL (rtsp://, http(s)://) frame by frame.

    ``threads``: FFmpeg decoder threads; 0 lets FFmpeg choose (frame and slice threads
    from the cores this process may use), 1 decodes on the calling thread only — what a
    decode process that already has a core of its own wants (inference/feed)."""

    def __init__(self, url: str, *, timeout: float = 10.0, threads: int = 0) -> None:
        options = {"rtsp_transport": "tcp"} if url.startswith("rtsp://") else {}
        try:
            self._container = av.open(url, mode="r", options=options, timeout=timeout)
            self._stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError, OSError) as exc:
            raise SourceError(
                f"cannot open {url!r}: {exc}. Check the path or URL, that it has a video "
                "stream, and that the server is reachable"
            ) from exc
        if threads:
            self._stream.codec_context.thread_count = threads
        else:
            self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.width = self._stream.codec_context.width
        self.height = self._stream.codec_context.height

    @property
    def frame_count(self) -> int:
        """Frames the header announces, nothing decoded (0 when it says nothing): the
        stream's count, else its duration × fps, else the container's duration × fps."""
        stream, fps = self._stream, self.fps
        frames = int(stream.frames or 0)
        if frames <= 0 and stream.duration is not None and stream.time_base is not None:
            frames = math.ceil(float(stream.duration * stream.time_base) * fps)
        if frames <= 0 and self._container.duration:
            frames = math.ceil(self._container.duration / 1_000_000 * fps)
        return max(frames, 0)

    def packets(self) -> Iterator[Any]:
        """The video stream's packets, read from the container (not decoded), ending
        with the empty packet that flushes the decoder."""
        demux = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.FFmpegError as exc:
                raise SourceError(f"reading failed: {exc}") from exc
            yield packet

    def decode(self, packet: Any) -> list[tuple[Any, float | None]]:
        """Decode one packet into (VideoFrame, pts seconds): none while the decoder
        fills its pipeline (frame threads), several when the last packet flushes it."""
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            raise SourceError(f"decoding failed: {exc}") from exc
        return [(frame, float(frame.time) if frame.time is not None else None) for frame in frames]

    def frames(self) -> Iterator[tuple[Any, float | None, float]]:
        """Yield (VideoFrame, pts seconds, decode seconds). A packet that decoded into no
        frame adds its seconds to the next frame's; one that decoded into several
        shares its seconds among them."""
        seconds = 0.0
        for packet in self.packets():
            started = time.perf_counter()
            decoded = self.decode(packet)
            seconds += time.perf_counter() - started
            for frame, pts in decoded:
                yield frame, pts, seconds / len(decoded)
            if decoded:
                seconds = 0.0

    def close(self) -> None:
        self._container.close()


class Recorder:
    """Re-encodes annotated frames to a video file (H.264 when available, else MPEG-4)."""

    def __init__(self, path: str, *, width: int, height: int, fps: float) -> None:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        try:
            self._container = av.open(path, "w")
            stream = self._container.add_stream(codec, rate=Fraction(round(fps * 1000), 1000))
            self._stream = cast(av.VideoStream, stream)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(
                f"cannot record to {path!r}: {exc}; pick a writable .mp4 path"
            ) from exc
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self.width, self.height = width, height

    def add(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if (frame.width, frame.height) != (self.width, self.height):
            frame = frame.reformat(width=self.width, height=self.height)
        for packet in self._stream.encode(frame.reformat(format="yuv420p")):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def new_rgb_frame(width: int, height: int) -> tuple[av.VideoFrame, np.ndarray]:
    """A new RGB ``av.VideoFrame`` and a writable (height, width, 3) uint8 view of its
    pixels: what is written into the view is the frame, with no copy (an 8K frame is
    100 MB, so building an array and converting it would hold two)."""
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(height, plane.line_size)
    return frame, rows[:, : width * 3].reshape(height, width, 3)


def to_rgb(image: Any) -> np.ndarray:
    """HWC uint8 RGB from a VideoFrame or an array (for annotation)."""
    if isinstance(image, av.VideoFrame):
        return image.to_ndarray(format="rgb24")
    return np.asarray(image)
