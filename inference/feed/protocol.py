"""The wire between the engine process and a decode process: two pipes, framed messages.

Every message is an 8-byte header (kind, payload length) and a payload. Pixels never
travel on a pipe: a frame's tensor lies in a ring slot of shared memory (:mod:`.shm`) and
the message says which slot.

decode process → engine (one pipe):

- ``FRAME``: a fixed 112-byte struct per frame (:data:`FRAME_STRUCT`) — the stream's row,
  the ring slot (-1: no tensor), the frame's sequence number, index, pts, capture time,
  the start and end of its decode and preprocess calls (CLOCK_MONOTONIC ns), the drill
  seconds inside each, frames the source skipped since the last message (``late``) and a
  status (:data:`OK`, :data:`STOPPED`: the stream was stopped before the frame could be
  sent, :data:`FAILED`: preprocess raised; an ``EVENT`` with the error came just before).
- ``EVENT``: JSON — a stream opened / ended / failed, a frame's error, a log record.

engine → decode process (the other pipe):

- ``FREE``: int32 ring slots the engine has copied out (free for reuse);
- ``CREDIT``: (row, token, n) — a file stream may send ``n`` more frames (its mailbox has
  room);
- ``COMMAND``: JSON — open, start, close a stream; stop.

Messages to a stream carry its ``token`` (unique per stream): a row is reused once its
stream ended, and a late credit or close for the stream that ended must not reach the
one that took its row.

The engine never blocks on its pipe (:class:`Sender` with ``blocking=False`` keeps what
the pipe cannot take and sends it on the next call or :meth:`Sender.flush`): a frozen
decode process must not freeze the engine's threads. What it can owe is bounded — one
``FREE`` per slot, one credit per mailbox place — because each answers a frame received.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import struct
import threading
from typing import Any

HEADER = struct.Struct("<BxxxI")
FRAME, EVENT, FREE, CREDIT, COMMAND = 1, 2, 3, 4, 5
#: row, slot, seq, index, pts, captured, dec start/end, pre start/end, dec/pre drilled s,
#: late, status.
FRAME_STRUCT = struct.Struct("<iiqqddqqqqddqi4x")
#: row, stream token, credits: the token tells a stream from a later one in the same row.
CREDIT_STRUCT = struct.Struct("<iqi")
OK, STOPPED, FAILED = 0, 1, 2
#: Longest JSON payload accepted (a log record with a long message is cut before this).
MAX_JSON = 1 << 20


class ProtocolError(Exception):
    """The other side wrote something that is not a message (a bug, or a dead peer)."""


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def json_message(kind: int, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, default=repr, separators=(",", ":")).encode()
    return frame(kind, payload[:MAX_JSON])


def nan_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def none_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


class Parser:
    """Splits bytes read from a pipe into ``(kind, payload)`` messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The complete messages in what has arrived so far (the rest waits for more)."""
        buffer = self._buffer
        buffer += data
        messages, offset = [], 0
        while len(buffer) - offset >= HEADER.size:
            kind, length = HEADER.unpack_from(buffer, offset)
            if kind not in (FRAME, EVENT, FREE, CREDIT, COMMAND) or length > MAX_JSON:
                raise ProtocolError(f"bad message header (kind {kind}, {length} bytes)")
            end = offset + HEADER.size + length
            if end > len(buffer):
                break
            messages.append((kind, bytes(buffer[offset + HEADER.size : end])))
            offset = end
        del buffer[:offset]
        return messages


def decode_json(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"a message is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("a message is not a JSON object")
    return body


class Sender:
    """Writes messages to a pipe from any thread.

    ``blocking=True`` (decode processes): a full pipe makes the writer wait — the engine
    reads promptly, and waiting is the backpressure. ``blocking=False`` (the engine): what
    the pipe cannot take now stays in a buffer for the next :meth:`send` or
    :meth:`flush`. After the reader goes (EPIPE), sends are dropped: the peer is dead and
    its supervisor deals with that.
    """

    def __init__(self, fd: int, *, blocking: bool) -> None:
        self.fd = fd
        self.blocking = blocking
        os.set_blocking(fd, blocking)
        self._lock = threading.Lock()
        self._pending = bytearray()
        self.broken = False

    def send(self, data: bytes) -> None:
        with self._lock:
            if self.broken:
                return
            self._pending += data
            self._drain()

    def flush(self) -> None:
        with self._lock:
            if self._pending and not self.broken:
                self._drain()

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            try:
                written = os.write(self.fd, pending)
            except BlockingIOError:
                return  # full: the rest goes with the next send or flush
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EBADF):
                    self.broken = True
                    pending.clear()
                    return
                raise
            del pending[:written]

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        with self._lock:
            self.broken = True
            self._pending.clear()
            with contextlib.suppress(OSError):
                os.close(self.fd)
