"""A loopback HTTP server that enforces Loki's push API as documented.

Loki itself has no Debian package here, so loglog's Loki client is tested against this
server, which implements what the client depends on (see ../shared/ANCHORS.md):

- ``POST /loki/api/v1/push`` only; JSON body (``Content-Type: application/json``), plain,
  gzip or deflate (``Content-Encoding``); anything else is 415; a malformed body is 400.
- 204 on success. Validation per entry, like Loki's distributor: a line over
  ``max_line_bytes`` (256 KB), an entry older than ``max_age`` (1 week) or more than 10
  minutes in the future, more than 15 labels, a bad label name or a too-long value makes
  the request a **400 — after the valid streams/entries were stored** (partial success),
  which is exactly why a client must never retry a 400.
- A body over ``max_body_bytes`` is 413 and stores nothing.
- Per-tenant ingestion rate limit (bytes/s with a burst) answers 429 with Retry-After and
  stores nothing.
- Identical ``(timestamp, line)`` in the same stream is stored once (Loki deduplicates).
- ``script`` lets a test queue faults: a list of (status, retry_after) answered in order
  before normal handling resumes.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class Entry:
    labels: dict[str, str]
    ts: int
    line: str
    metadata: dict[str, str] | None = None

    def json(self) -> dict[str, Any]:
        return json.loads(self.line)


@dataclass
class LokiState:
    max_line_bytes: int = 256 * 1024
    max_labels: int = 15
    max_age_s: float = 7 * 24 * 3600
    max_future_s: float = 600
    max_body_bytes: int = 16 * 1024 * 1024
    rate_bytes_per_s: float = 4 * 1024 * 1024
    burst_bytes: float = 6 * 1024 * 1024
    script: list[tuple[int, str | None]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _tokens: float = -1.0
    _last: float = 0.0

    def lines(self) -> list[str]:
        with self.lock:
            return [e.line for e in self.entries]

    def messages(self) -> list[str]:
        return [json.loads(line)["msg"] for line in self.lines()]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _answer(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._answer(200, "ready")
        else:
            self._answer(404, "404 page not found")

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        record = {
            "path": self.path,
            "headers": dict(self.headers),
            "time": time.monotonic(),
            "bytes": len(raw),
        }
        with state.lock:
            state.requests.append(record)
            scripted = state.script.pop(0) if state.script else None
        if self.path != "/loki/api/v1/push":
            self._answer(404, "404 page not found")
            return
        if scripted is not None:
            status, retry_after = scripted
            self._answer(
                status, f"scripted {status}", {"Retry-After": retry_after} if retry_after else None
            )
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._answer(415, "unsupported content type (this double speaks JSON only)")
            return
        try:
            body = _decode(raw, self.headers.get("Content-Encoding", ""))
        except ValueError as exc:
            self._answer(415, str(exc))
            return
        if len(body) > state.max_body_bytes:
            self._answer(413, "request body too large")
            return
        if not self._admit(len(body)):
            self._answer(429, "Ingestion rate limit exceeded", {"Retry-After": "1"})
            return
        try:
            doc = json.loads(body)
            streams = doc["streams"]
            assert isinstance(streams, list)
        except (ValueError, KeyError, AssertionError, TypeError):
            self._answer(400, "error parsing push request body")
            return
        errors = self._store(streams)
        if errors:
            self._answer(400, "\n".join(errors[:10]))
        else:
            self._answer(204)

    def _admit(self, size: int) -> bool:
        state = self.server.state
        with state.lock:
            now = time.monotonic()
            if state._tokens < 0:
                state._tokens, state._last = state.burst_bytes, now
            state._tokens = min(
                state.burst_bytes, state._tokens + (now - state._last) * state.rate_bytes_per_s
            )
            state._last = now
            if size > state._tokens:
                return False
            state._tokens -= size
            return True

    def _store(self, streams: list[Any]) -> list[str]:
        state = self.server.state
        now_ns = time.time_ns()
        errors: list[str] = []
        for stream in streams:
            labels = stream.get("stream") if isinstance(stream, dict) else None
            values = stream.get("values") if isinstance(stream, dict) else None
            if not isinstance(labels, dict) or not isinstance(values, list) or not labels:
                errors.append("stream without labels or values")
                continue
            if len(labels) > state.max_labels:
                errors.append(f"stream has {len(labels)} labels, limit {state.max_labels}")
                continue
            bad = [
                k
                for k, v in labels.items()
                if not _LABEL.match(k) or not isinstance(v, str) or len(v) > 2048
            ]
            if bad:
                errors.append(f"invalid labels {bad}")
                continue
            for value in values:
                problem = self._check(value, now_ns)
                if problem:
                    errors.append(problem)
                    continue
                entry = Entry(
                    dict(labels), int(value[0]), value[1], value[2] if len(value) == 3 else None
                )
                with state.lock:
                    duplicate = any(
                        e.ts == entry.ts and e.line == entry.line and e.labels == entry.labels
                        for e in state.entries[-2000:]
                    )
                    if not duplicate:
                        state.entries.append(entry)
        return errors

    def _check(self, value: Any, now_ns: int) -> str:
        state = self.server.state
        if not isinstance(value, list) or len(value) not in (2, 3):
            return "entry must be [ts, line] or [ts, line, metadata]"
        ts, line = value[0], value[1]
        if not isinstance(ts, str) or not ts.isdigit():
            return f"timestamp must be a string of unix nanoseconds, got {ts!r}"
        if not isinstance(line, str):
            return "line must be a string"
        if len(value) == 3 and (
            not isinstance(value[2], dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in value[2].items())
        ):
            return "structured metadata must be a flat string map"
        if len(line.encode()) > state.max_line_bytes:
            return f"line too long ({len(line.encode())} bytes)"
        if int(ts) < now_ns - state.max_age_s * 1e9:
            return "entry too far behind"
        if int(ts) > now_ns + state.max_future_s * 1e9:
            return "entry too far in the future"
        return ""


def _decode(raw: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: LokiState


class LokiServer:
    """Run the double on 127.0.0.1 (a given port, or a free one) in a background thread."""

    def __init__(self, port: int = 0, state: LokiState | None = None) -> None:
        self.state = state or LokiState()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = self.state
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LokiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.state):
                return True
            time.sleep(0.02)
        return bool(predicate(self.state))


class SilentServer:
    """Accepts TCP connections (the kernel completes them) and never answers a byte."""

    def __init__(self, port: int = 0) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()


class TrickleServer:
    """Answers every connection with a valid start of a response, one byte every
    ``interval`` seconds, forever: the headers never complete. Each byte arrives well
    within any per-read socket timeout, so only an overall deadline ends a push."""

    def __init__(self, interval: float = 0.2) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        data = b"HTTP/1.1 204 No Content\r\n" + b"X-Padding: " + b"a" * 100_000
        with conn:
            for byte in data:
                if self._stop.wait(self._interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def __enter__(self) -> TrickleServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
