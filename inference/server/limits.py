"""Limits checked before work: a body's size, a tensor's shape, a picture's pixels.

Each check runs before the expensive step it guards (reading, allocating, decoding), so a
hostile request costs what its limit allows and no more. They are pure functions of the
bytes and the limits. The server runs the size and header checks before a body enters
the pipeline; finiteness needs the parsed values, so the runtime checks it in its first
stage (:func:`inference.core.stages.check_finite`)::

    body = await read_body(request.headers, request.stream(), limit=32 << 20)  # 413 past it
    check_npy_header(body, max_elements=1 << 24)      # before numpy allocates anything
    check_image_pixels(body, max_pixels=40_000_000)   # header-only probe, before decode
"""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator, Mapping

import numpy as np

from ..errors import InputError, ShapeError, TooLargeError
from .bodies import NPY_TYPES
from .probe import image_size

#: Default limits (each is a RuntimeConfig option; the README lists them).
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # e.g. 7680×4320 (33 Mpx) fits; 16000×16000 does not
MAX_TENSOR_ELEMENTS = 16 * 1024 * 1024
MAX_TENSOR_DIMS = 8
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_MAX = 64 * 1024  # numpy itself refuses headers over 10 KB by default


async def read_body(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], *, limit: int
) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``:
    from ``Content-Length`` before reading anything, else while it streams in (chunked
    bodies), so nothing past the limit is ever buffered."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InputError(f"Content-Length {declared[:40]!r} is not a number") from None
        if size > limit:
            raise TooLargeError(f"the body is {size} bytes; the limit is {limit} (max_body_bytes)")
    parts: list[bytes] = []
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise TooLargeError(
                f"the body is over {limit} bytes, the limit (max_body_bytes); send less"
            )
        parts.append(chunk)
    return b"".join(parts)


def npy_header(data: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, offset of the data)`` from a .npy header, without reading the
    data. InputError when the bytes are not a .npy array (or hold Python objects)."""
    if not data.startswith(_NPY_MAGIC) or len(data) < 10:
        raise InputError(
            "the body is not a .npy array (no \\x93NUMPY magic): save it with numpy.save, "
            "or send image/jpeg or image/png"
        )
    major = data[6]
    if major == 1:
        length, start = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3):
        length, start = int.from_bytes(data[8:12], "little"), 12
    else:
        raise InputError(f".npy format version {major} is not supported: save with numpy.save")
    if length > _NPY_HEADER_MAX or start + length > len(data):
        raise InputError("the .npy header is truncated or too long: save it with numpy.save")
    try:
        header = ast.literal_eval(data[start : start + length].decode("latin1"))
        descr, shape = header["descr"], header["shape"]
        dtype = np.dtype(descr)
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
        raise InputError(
            f"the .npy header does not parse ({type(exc).__name__}): save it with numpy.save"
        ) from None
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in shape
    ):
        raise InputError("the .npy shape must be a tuple of whole numbers")
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise InputError(f".npy dtype {descr!r} is not a plain numeric type: send e.g. float32")
    return shape, dtype, start + length


def check_npy_header(
    data: bytes, *, max_elements: int = MAX_TENSOR_ELEMENTS, max_dims: int = MAX_TENSOR_DIMS
) -> tuple[int, ...]:
    """Validate a .npy body's shape against the limits and its own length before numpy
    allocates the array; returns the shape."""
    shape, dtype, offset = npy_header(data)
    if len(shape) > max_dims:
        raise ShapeError(f"the tensor has {len(shape)} dimensions; the limit is {max_dims}")
    if any(n < 1 for n in shape):
        raise ShapeError(f"every tensor dimension must be ≥ 1, got {shape}")
    elements = 1
    for n in shape:
        elements *= n  # Python ints: no overflow, and it stops mattering past the limit
        if elements > max_elements:
            raise TooLargeError(
                f"the tensor shape {shape} is over {max_elements} elements (max_tensor_elements)"
            )
    if len(data) - offset != elements * dtype.itemsize:
        raise InputError(
            f"the .npy data is {len(data) - offset} bytes but shape {shape} of {dtype} needs "
            f"{elements * dtype.itemsize}: the body is truncated or padded"
        )
    return shape


def check_image_pixels(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """Width and height from the image header, refused before any decoding when they
    are zero or their product is over ``max_pixels``. Formats the probe cannot read are
    refused too: a decoder must never be the first to learn an image's size."""
    size = image_size(data)
    if size is None:
        raise InputError(
            "the body is not a JPEG, PNG, GIF, BMP or WebP image: send image/jpeg or "
            "image/png, or a .npy array (application/x-npy)"
        )
    width, height = size
    if width < 1 or height < 1:
        raise InputError(f"the image header says {width}×{height}: not a usable picture")
    if width * height > max_pixels:
        raise TooLargeError(
            f"the image is {width}×{height} = {width * height} pixels; the limit is "
            f"{max_pixels} (max_image_pixels): send a smaller picture"
        )
    return width, height


def check_request(
    body: bytes,
    content_type: str,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_elements: int = MAX_TENSOR_ELEMENTS,
) -> None:
    """Run the check that guards the decoder the ``decode`` stage will use for this body
    (the dispatch of :func:`.bodies.request_item`: .npy by type or magic, else an image)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if not body:
        raise InputError(
            "the request body is empty: send an image (image/jpeg, image/png) or a .npy array"
        )
    if kind in NPY_TYPES or body.startswith(_NPY_MAGIC):
        check_npy_header(body, max_elements=max_elements)
    elif kind.startswith("image/") or not kind:
        check_image_pixels(body, max_pixels=max_pixels)
