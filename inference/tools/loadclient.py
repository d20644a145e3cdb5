"""The load generator's HTTP/1.1 clients: a blocking one for control calls, and keep-alive
connections on an asyncio loop for open-loop requests (no pool caps their number).

A keep-alive connection the server closed while idle is not reused; one closed just as a
request went out (not a byte answered) is retried once on a new connection, and counted.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
from urllib.parse import urlsplit


class ControlClient:
    """One keep-alive HTTP connection per thread (for --streams' few control calls)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.local = threading.local()

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout
            )
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            return 0, b""

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's ends)."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None


class Connections:
    """Keep-alive HTTP/1.1 connections on one loop: an idle one is reused, else a new one
    is opened, so concurrency follows the requests in flight (no pool caps it)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        #: Requests re-sent because a reused keep-alive connection was closed under them.
        self.stale_retries = 0

    async def post(self, path: str, body: bytes, content_type: str) -> int:
        """POST and read the whole answer; the status, or raises OSError/ValueError."""
        head = f"POST {path} HTTP/1.1\r\nContent-Type: {content_type}\r\n"
        return await self._exchange(head, body)

    async def get(self, path: str) -> int:
        """GET and read the whole answer; the status."""
        return await self._exchange(f"GET {path} HTTP/1.1\r\n", b"")

    async def _exchange(self, head: str, body: bytes) -> int:
        request = (head + f"Host: {self.host}\r\nContent-Length: {len(body)}\r\n\r\n").encode(
            "latin-1"
        ) + body
        reused = None
        while self.idle:
            candidate = self.idle.pop()
            if candidate[0].at_eof():  # the server closed it while idle (keep-alive timeout)
                candidate[1].close()
            else:
                reused = candidate
                break
        if reused is not None:
            try:
                return await self._send_on(reused, request)
            except _ClosedBeforeAnswer:
                # The server closed this idle connection as we reused it, before a byte of
                # an answer: sent once more on a new one. A server that reads a whole
                # request and then closes unanswered gets it twice; the retries are counted
                # (``stale_retries`` in the summary) so that shows.
                self.stale_retries += 1
        connection = await asyncio.open_connection(self.host, self.port)
        try:
            return await self._send_on(connection, request)
        except _ClosedBeforeAnswer as exc:
            raise ConnectionResetError(
                "the server closed the connection without answering"
            ) from exc

    async def _send_on(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> int:
        reader, writer = connection
        try:
            writer.write(request)
            status, keep = await _read_response(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class _ClosedBeforeAnswer(ConnectionError):
    """The connection ended before a single byte of the answer."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the connection stays open; the body is read and discarded."""
    try:
        line = await reader.readline()
    except ConnectionResetError as exc:
        raise _ClosedBeforeAnswer(str(exc)) from exc
    if not line:
        raise _ClosedBeforeAnswer("EOF before the status line")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {line[:80]!r}")
    status, length, chunked, keep = int(parts[1]), 0, False, parts[0] == b"HTTP/1.1"
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            keep = value != "close"
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    elif length:
        await reader.readexactly(length)
    return status, keep
