"""One HTTP POST to Loki's push API, and what its answer means for a retry.

Built on ``http.client`` on purpose: every socket operation is bounded by ``timeout``, and
so is the whole push (connect, send, read): a server that trickles its answer a byte at a
time is cut off when the deadline passes (a timer shuts the socket down). It logs nothing
(so it cannot feed records back into loglog), and it has no pool or retry
logic of its own that could hide a hang. Loki's documented semantics (see ANCHORS):
204 is success; 429 and 5xx are retryable (nothing was stored); 400 and 413 must never be
retried, because a 400 may be a partial success whose valid streams were already stored.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import http.client
import socket
import threading
import time
from urllib.parse import unquote, urlsplit

from ..backoff import parse_retry_after
from ..types import DropReason

PUSH_PATH = "/loki/api/v1/push"


@dataclasses.dataclass(frozen=True, slots=True)
class PushResult:
    """The outcome of one push. ``status`` is 0 when no HTTP answer came back."""

    status: int
    retry_after: float | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in (200, 204)

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500

    @property
    def reason(self) -> DropReason:
        """A bounded label value for why a batch was dropped."""
        if self.status in (400, 401, 403, 404, 413):
            return DropReason(f"http_{self.status}")
        if 400 <= self.status < 500:
            return DropReason.HTTP_4XX
        return DropReason.RETRIES_EXHAUSTED


class LokiClient:
    """Posts gzip'd JSON push bodies to one Loki endpoint over a kept-alive connection.

    >>> client = LokiClient("http://127.0.0.1:3100", timeout=10.0)
    >>> client.path
    '/loki/api/v1/push'
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        tenant: str | None = None,
        compress_level: int = 5,
    ) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        base = parts.path.rstrip("/")
        self.path = base if base.endswith(PUSH_PATH) else base + PUSH_PATH
        self._timeout = timeout
        self._level = compress_level
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": "loglog",
        }
        if tenant:
            self._headers["X-Scope-OrgID"] = tenant
        if parts.username:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        self._conn: http.client.HTTPConnection | None = None

    def push(self, payload: bytes) -> PushResult:
        """POST one JSON body within ``timeout`` seconds overall; never raises."""
        started = time.monotonic()
        timer: threading.Timer | None = None
        try:
            body = gzip.compress(payload, compresslevel=self._level)
            conn = self._conn or self._connect()
            timer = threading.Timer(self._timeout, _cut, args=(conn,))
            timer.name = "loglog-loki-deadline"
            timer.daemon = True
            timer.start()
            conn.request("POST", self.path, body=body, headers=self._headers)
            response = conn.getresponse()
            text = response.read(64 * 1024).decode("utf-8", "replace")
            if time.monotonic() - started >= self._timeout:
                raise TimeoutError(f"no complete answer within {self._timeout} s")
            if response.will_close or not response.isclosed():
                self.close()
            return PushResult(
                status=response.status,
                retry_after=parse_retry_after(_header(response, "Retry-After")),
                detail=text.strip()[:300],
                seconds=time.monotonic() - started,
            )
        except Exception as exc:  # OSError, HTTPException, a garbage answer: never raise
            self.close()
            detail = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started >= self._timeout:
                detail = f"TimeoutError: no complete answer within {self._timeout} s ({detail})"
            return PushResult(
                status=0,
                detail=detail[:300],
                seconds=time.monotonic() - started,
            )
        finally:
            if timer is not None:
                timer.cancel()

    def _connect(self) -> http.client.HTTPConnection:
        # Each socket operation has the whole deadline at most; the timer bounds their sum.
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._conn = kind(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


def _cut(conn: http.client.HTTPConnection) -> None:
    """The push deadline passed: unblock the sender by shutting its socket down."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _header(response: http.client.HTTPResponse, name: str) -> str | None:
    """One header's value, or None when it is missing or unreadable."""
    try:
        value = response.getheader(name)
    except Exception:
        return None
    return value if isinstance(value, str) else None
