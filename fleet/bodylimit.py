"""A cap on request bodies for the jobs API, applied before FastAPI reads any of it.

A job is a short JSON document (a source, an id, a priority); without a cap FastAPI would
buffer whatever a client sends — a gigabyte, or a body trickled forever — before
validating it. The cap is checked from ``Content-Length`` before reading, and counted
while a chunked body streams in, so no more than ``limit`` bytes are ever held.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Far above any real job document (a path or URL, an id, a priority).
MAX_JOB_BODY_BYTES = 64 * 1024


class BodyLimit:
    """ASGI middleware: 413 with a JSON ``error`` for bodies over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JOB_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

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
        return f"{what}; a job request may be at most {self.limit} bytes (send the job's JSON only)"


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
