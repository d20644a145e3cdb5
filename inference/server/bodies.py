"""HTTP bodies into pipeline items: which media type, and nothing else.

The body is *decoded* by the pipeline's ``decode`` stage (timed, with workers), so a slow
decode shows in ``stage_ms`` and in the verdict; here it is only classified. Checks on a
body (size and the like) belong here, before it enters the pipeline.
"""

from __future__ import annotations

from ..errors import InputError
from ..types import Item

NPY_TYPES = ("application/x-npy", "application/npy", "application/octet-stream")
_NPY_MAGIC = b"\x93NUMPY"


def request_item(body: bytes, content_type: str) -> Item:
    """An item carrying ``body`` to decode: an image (JPEG/PNG) or a .npy array.

    >>> request_item(b"\\x93NUMPY...", "").payload_kind
    'npy'
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    item = Item("http", 0)
    if kind in NPY_TYPES or body[:6] == _NPY_MAGIC:
        item.payload_kind = "npy"
    elif kind.startswith("image/") or not kind:
        item.payload_kind = "image"
    else:
        raise InputError(
            f"unsupported Content-Type {content_type!r}: send image/jpeg, image/png or "
            "application/x-npy"
        )
    item.payload = body
    item.payload_type = content_type or ""
    return item
