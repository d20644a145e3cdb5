"""A cap on request bodies, applied before the app reads any of it.

Without a cap FastAPI (or any Starlette app) buffers whatever a client sends — a
gigabyte, or a body trickled forever — before validating it. The cap is checked from
``Content-Length`` before reading, and counted while a chunked body streams in, so no
more than ``limit`` bytes are ever held. Used by the jobs API (whose job documents are a
few hundred bytes) and the alert receiver (Alertmanager's webhook payloads).

::

    app.add_middleware(BodyLimit, limit=64 * 1024, advice="send the job's JSON only")
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: 413 with a JSON ``error`` for bodies over ``limit`` bytes, which
    ends with ``advice`` (what the client should send instead)."""

    def __init__(self, app: ASGIApp, *, limit: int, advice: str) -> None:
        self.app = app
        self.limit = limit
        self.advice = advice

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _answer(send, 400, f"Content-Length {declared[:40]!r} is not a number")
                return
            if size > self.limit:
                await _answer(send, 413, self._message(f"the body is {size} bytes"))
                return
        received = 0
        started = answered = False

        async def counted() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer here: FastAPI turns any error raised while it reads the body
                    # into a 400. The app is told the client left, so it reads no more.
                    if not started and not answered:
                        answered = True
                        await _answer(
                            send, 413, self._message(f"the body is over {self.limit} bytes")
                        )
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 is already out: drop the app's own answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not answered:
                raise

    def _message(self, what: str) -> str:
        return f"{what}; {self.advice}"


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
