"""Connection hygiene: a deadline for request headers, and uvicorn's limits in one place.

Uvicorn has a keep-alive timeout but none for a request's headers, so a client that sends
one header byte a minute holds a connection (and its memory) forever; 500 of them were
held in review. :class:`HeaderDeadlineH11` closes a connection whose request headers are
not complete ``header_timeout`` seconds after it opened (or after its previous response).
The body has its own deadline in the app (``read_body`` under ``body_timeout_s``).

``max_connections`` caps connections and in-flight requests: past it a request gets a 503
at once, with ``Retry-After`` and a body naming the setting — the last guard, behind the
admission control (inference/core/admission.py), which normally keeps requests in flight far
below it. It replaces uvicorn's ``limit_concurrency`` (whose bare "Service Unavailable"
named nothing, and which refused Prometheus' scrapes like any request, so an overloaded
server read as down): :data:`PRIORITY_PATHS` are served whatever the count.

Servers whose every path is cheap (the agent, the alert receiver) count at accept instead
(``refuse_at_accept``): past the cap a new connection is answered 503 before anything is
read, so a slowloris holds no more than the cap; and their deadline covers the whole
exchange (``whole_exchange``), body and answer included, not only the headers.

Used by every HTTP server here: the inference server, the jobs API, the agent and the
alert receiver (:mod:`httpkit.background` runs the last two on a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Open files the server needs besides its connections: the listening socket, logs, the
#: model, decode processes' pipes and shared memory, Prometheus' scrapes.
FD_HEADROOM = 256


class OpenFilesError(ValueError):
    """The open-files hard limit cannot hold ``max_connections``: a configuration error
    to report at start-up (the message says what to set)."""


#: Answered whatever the load: what tells on-call and Prometheus the server is alive.
PRIORITY_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/v1/profile"})
#: A refused request's body is read (and dropped) up to this much, for this long, before
#: the 503 and the close: closing with unread bytes makes the kernel reset the connection,
#: and a client still sending its body never reads the answer.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 2.0


def concurrency_guard(
    app: Any, server_state: Any, limit: int, on_limit: Callable[[], None] | None = None
) -> Any:
    """``app`` behind the ``max_connections`` limit (an ASGI app): past ``limit`` open
    connections or requests in progress, a request other than :data:`PRIORITY_PATHS` gets
    a 503 naming the setting, and its connection is closed."""
    connections, tasks = server_state.connections, server_state.tasks

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and (len(connections) > limit or len(tasks) > limit)
            and scope["path"] not in PRIORITY_PATHS
        ):
            if on_limit is not None:
                on_limit()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_drain(receive), DRAIN_SECONDS)
            await _refuse(send, limit, max(len(connections), len(tasks)))
            return
        await app(scope, receive, send)

    return guarded


async def _drain(receive: Any) -> None:
    received = 0
    while received <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _refuse(send: Any, limit: int, count: int) -> None:
    body = json.dumps(
        {
            "error": "ShedError",
            "detail": f"{count} connections or requests are open, past max_connections "
            f"({limit}): retry after 1s, or raise max_connections in the config",
            "reason": "max_connections",
            "limit": "max_connections",
            "retry_after_s": 1,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HeaderDeadlineH11(H11Protocol):
    """Uvicorn's h11 protocol, closing connections whose headers arrive too slowly, with
    :func:`concurrency_guard` in place of uvicorn's ``limit_concurrency`` (or, with
    ``refuse_at_accept``, the cap counted at accept)."""

    header_timeout = 10.0  # set per server by uvicorn_options()
    max_connections: int | None = None
    on_limit: Callable[[], None] | None = None
    #: Count connections at accept and answer those past ``max_connections`` at once.
    refuse_at_accept = False
    #: The deadline covers the whole request and its answer, not only the headers.
    whole_exchange = False
    #: Connections refused at accept and still draining (one set per server class), so
    #: that a server shutting down can close them: uvicorn does not know of them.
    refused: ClassVar[set[HeaderDeadlineH11]] = set()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        if self.max_connections is not None:
            self.limit_concurrency = None  # the guard (or the accept check) does it
            if not self.refuse_at_accept:
                self.app = concurrency_guard(
                    self.app, self.server_state, self.max_connections, type(self).on_limit
                )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limit = self.max_connections
        if self.refuse_at_accept and limit is not None and len(self.connections) >= limit:
            self._refuse(transport, limit)
            return
        super().connection_made(transport)
        self._deadline_generation = 0
        self._arm_header_deadline()

    def _refuse(self, transport: asyncio.Transport, limit: int) -> None:
        # Answered before anything is read, and never counted as a connection. The write
        # side is shut at once, but what the client sends is read (and dropped) until it
        # closes or DRAIN_SECONDS pass: closing with unread bytes sends a reset, which
        # can discard the 503 before the client reads it.
        self._refused = True
        self.transport = transport
        self.refused.add(self)
        if self.on_limit is not None:
            self.on_limit()
        transport.write(busy_answer(len(self.connections), limit))
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(DRAIN_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            self.refused.discard(self)
            return
        super().connection_lost(exc)

    @classmethod
    def close_refused(cls) -> None:
        """Close the refused connections still draining (at shutdown)."""
        for protocol in list(cls.refused):
            protocol.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()  # the next request on this connection gets its own

    def _arm_header_deadline(self) -> None:
        self._deadline_generation += 1
        self.loop.call_later(self.header_timeout, self._header_deadline, self._deadline_generation)

    def _header_deadline(self, generation: int) -> None:
        if generation != self._deadline_generation or self.transport.is_closing():
            return
        # IDLE: the request line and headers are not complete yet.
        if self.conn.their_state is h11.IDLE:
            self.transport.close()
        elif self.whole_exchange:
            # Mid-body or mid-answer: abort, since close() would wait for a client that
            # does not read to take the rest of the answer.
            self.transport.abort()


def busy_answer(count: int, limit: int) -> bytes:
    """The raw 503 for a connection refused at accept (no h11 state exists for it)."""
    body = (f"too many connections ({count} open, the limit is {limit}); retry shortly\n").encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def ensure_open_files(max_connections: int) -> int:
    """Raise this process' soft limit of open files (``ulimit -n``, often 1024) to fit
    ``max_connections`` connections plus :data:`FD_HEADROOM`; the limit now. Past the soft
    limit ``accept()`` fails (EMFILE) before the max_connections guard ever sees the
    connection: 300 idle connections under a limit of 256 made ``/healthz`` time out with
    ``max_connections`` at 512. OpenFilesError when the hard limit is too low."""
    needed = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OpenFilesError(
            f"max_connections {max_connections} needs {needed} open files, but this process "
            f"may open at most {hard} (ulimit -Hn): set max_connections to "
            f"{max(1, hard - FD_HEADROOM)} or less, or raise the hard limit (LimitNOFILE= in a "
            "systemd unit, --ulimit nofile= in Docker)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def uvicorn_options(
    *,
    header_timeout: float,
    max_connections: int,
    keep_alive: int = 5,
    on_limit: Callable[[], None] | None = None,
    refuse_at_accept: bool = False,
    whole_exchange: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` (or ``uvicorn.Config``) that apply the
    connection limits; ``on_limit`` is called for each request (or, with
    ``refuse_at_accept``, each connection) refused past ``max_connections``.
    ``whole_exchange``: ``header_timeout`` bounds the whole request and its answer.
    Raises the open-files limit to fit them (:func:`ensure_open_files`)."""
    ensure_open_files(max_connections)
    protocol = type(
        "HeaderDeadlineH11",
        (HeaderDeadlineH11,),
        {
            "header_timeout": float(header_timeout),
            "max_connections": max_connections,
            "on_limit": staticmethod(on_limit) if on_limit is not None else None,
            "refuse_at_accept": refuse_at_accept,
            "whole_exchange": whole_exchange,
            "refused": set(),
        },
    )
    return {
        "http": protocol,
        "timeout_keep_alive": keep_alive,
        "h11_max_incomplete_event_size": 64 * 1024,  # headers larger than this: 400
    }
