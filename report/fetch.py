"""One HTTP GET with a total deadline and a size cap: what ``loglog report`` asks Prometheus with.

``urllib``'s ``timeout`` bounds each socket operation, not the request: a server that trickles
one byte every two seconds keeps a 30 s timeout waiting forever, and a 300 MB answer is read
whole into memory. Here every socket call is given only the time left until one deadline set
when the request starts (connect, send, status line, headers and body alike), and the body is
read in chunks up to ``max_bytes``. Raises :class:`TimedOut`, :class:`TooLarge` or ``OSError``::

    >>> status, body = get("http://127.0.0.1:9090/-/ready", timeout=5, max_bytes=1 << 20)

Host name resolution (``getaddrinfo``) cannot be interrupted and is not covered by the deadline.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

__all__ = ["TimedOut", "TooLarge", "get"]

CHUNK = 64 * 1024


class TimedOut(TimeoutError):
    """The whole request took longer than its deadline."""


class TooLarge(ValueError):
    """The answer is longer than the cap (``max_bytes``)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the answer is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


def _arm(sock: socket.socket, deadline: float, clock: Callable[[], float]) -> None:
    """Give the next socket call only the time left (a call can never outlive the deadline)."""
    left = deadline - clock()
    if left <= 0:
        raise TimedOut("timed out (total deadline)")
    sock.settimeout(left)


class _DeadlineSocket(socket.socket):
    """A socket whose every receive and send ends by ``deadline``."""

    deadline: float = 0.0
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        _arm(self, self.deadline, self.clock)
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        _arm(self, self.deadline, self.clock)
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        _arm(self, self.deadline, self.clock)
        super().sendall(data, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The same for TLS: the SSL layer reads and writes through these methods."""

    deadline: float = 0.0
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        _arm(self, self.deadline, self.clock)
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        _arm(self, self.deadline, self.clock)
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        _arm(self, self.deadline, self.clock)
        super().sendall(data, flags)


def _connect(host: str, port: int, deadline: float, clock: Callable[[], float]) -> _DeadlineSocket:
    left = deadline - clock()
    if left <= 0:
        raise TimedOut("timed out (total deadline)")
    plain = socket.create_connection((host, port), timeout=left)
    sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
    sock.deadline, sock.clock = deadline, clock
    return sock


class _Connection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, deadline: float, clock: Any) -> None:
        super().__init__(host, port)
        self._deadline, self._clock = deadline, clock

    def connect(self) -> None:
        self.sock = _connect(self.host, self.port, self._deadline, self._clock)


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, deadline: float, clock: Any) -> None:
        context = ssl.create_default_context()
        context.sslsocket_class = _DeadlineSSLSocket
        super().__init__(host, port, context=context)
        self._deadline, self._clock = deadline, clock
        self._context = context

    def connect(self) -> None:
        raw = _connect(self.host, self.port, self._deadline, self._clock)
        tls = self._context.wrap_socket(
            raw, server_hostname=self.host, do_handshake_on_connect=False
        )
        assert isinstance(tls, _DeadlineSSLSocket)
        tls.deadline, tls.clock = self._deadline, self._clock
        _arm(tls, self._deadline, self._clock)
        tls.do_handshake()  # bounded by the time left, like every other call
        self.sock = tls


def get(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    headers: dict[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, bytes]:
    """GET ``url`` (http or https); returns (status, body) for any status. The whole request
    ends within ``timeout`` seconds or raises :class:`TimedOut`; a body over ``max_bytes``
    raises :class:`TooLarge` as soon as it is seen to be (``Content-Length``, or while read)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    deadline = clock() + timeout
    kind = _TLSConnection if parts.scheme == "https" else _Connection
    conn = kind(parts.hostname, parts.port, deadline, clock)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    response: http.client.HTTPResponse | None = None
    try:
        conn.request(
            "GET",
            path,
            headers={
                "Accept": "application/json",
                "Accept-Encoding": "identity",
                **(headers or {}),
            },
        )
        response = conn.getresponse()
        declared = response.getheader("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            raise TooLarge(max_bytes)
        body = bytearray()
        while chunk := response.read(min(CHUNK, max_bytes + 1 - len(body))):
            body += chunk
            if len(body) > max_bytes:
                raise TooLarge(max_bytes)
        return response.status, bytes(body)
    except TimeoutError as exc:
        if isinstance(exc, TimedOut):
            raise
        raise TimedOut("timed out (total deadline)") from exc
    except http.client.HTTPException as exc:  # a malformed status line or headers
        raise OSError(f"not an HTTP answer ({type(exc).__name__}: {exc})") from exc
    finally:
        # An HTTP/1.0 answer owns the socket once read (the connection hands it over): a
        # body abandoned half-way must be closed through the response too.
        if response is not None:
            response.close()
        conn.close()
