"""Header-only image probe: a picture's width and height without decoding it.

A 730 KB PNG can decode to 16000×16000 (768 MB of RGB); the probe reads the dozen bytes
that say so, so the server can refuse it before the decoder allocates anything::

    >>> image_size(png_bytes)
    (640, 480)

Only the formats the server accepts are read (JPEG, PNG, GIF, BMP, WebP); anything else
is ``None``, and the server refuses it rather than let a decoder be the first to know.
"""

from __future__ import annotations

import struct

# JPEG start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG), CC (DAC) do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS = 10_000


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a JPEG, PNG, GIF, BMP or WebP, else None."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack_from("<HH", data, 6)
            return width, height
        if data.startswith(b"BM"):
            return _bmp(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except struct.error:  # truncated header
        return None
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def _jpeg(data: bytes) -> tuple[int, int] | None:
    offset = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        while offset < len(data) and data[offset] == 0xFF:
            offset += 1  # fill bytes before a marker
        if offset >= len(data):
            return None
        marker = data[offset]
        offset += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        if marker == 0xD9:
            return None
        (length,) = struct.unpack_from(">H", data, offset)
        if marker in _SOF:
            height, width = struct.unpack_from(">HH", data, offset + 3)
            return width, height
        if length < 2:
            return None
        offset += length
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", data, 18)
        return width, height
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height means top-down rows


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        if len(data) < 30:
            return None
        return w, h
    return None
