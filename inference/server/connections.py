"""Connection hygiene: a deadline for request headers, and uvicorn's limits in one place.

Uvicorn has a keep-alive timeout but none for a request's headers, so a client that sends
one header byte a minute holds a connection (and its memory) forever; 500 of them were
held in review. :class:`HeaderDeadlineH11` closes a connection whose request headers are
not complete ``header_timeout`` seconds after it opened (or after its previous response).
The body has its own deadline in the app (``read_body`` under ``body_timeout_s``).

``max_connections`` caps connections and in-flight requests: past it a request gets a 503
at once, with ``Retry-After`` and a body naming the setting — the last guard, behind the
admission control (inference/admission.py), which normally keeps requests in flight far
below it. It replaces uvicorn's ``limit_concurrency`` (whose bare "Service Unavailable"
named nothing, and which refused Prometheus' scrapes like any request, so an overloaded
server read as down): :data:`PRIORITY_PATHS` are served whatever the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import ConfigError

#: Open files the server needs besides its connections: the listening socket, logs, the
#: model, decode processes' pipes and shared memory, Prometheus' scrapes.
FD_HEADROOM = 256
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
    :func:`concurrency_guard` in place of uvicorn's ``limit_concurrency``."""

    header_timeout = 10.0  # set per server by uvicorn_options()
    max_connections: int | None = None
    on_limit: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.max_connections is not None:
            self.limit_concurrency = None  # the guard does it, exempting PRIORITY_PATHS
            self.app = concurrency_guard(
                self.app, self.server_state, self.max_connections, type(self).on_limit
            )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline_generation = 0
        self._arm_header_deadline()

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


def ensure_open_files(max_connections: int) -> int:
    """Raise this process' soft limit of open files (``ulimit -n``, often 1024) to fit
    ``max_connections`` connections plus :data:`FD_HEADROOM`; the limit now. Past the soft
    limit ``accept()`` fails (EMFILE) before the max_connections guard ever sees the
    connection: 300 idle connections under a limit of 256 made ``/healthz`` time out with
    ``max_connections`` at 512. ConfigError when the hard limit is too low."""
    needed = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
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
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that apply the connection limits;
    ``on_limit`` is called for each request refused past ``max_connections``. Raises the
    open-files limit to fit them (:func:`ensure_open_files`)."""
    ensure_open_files(max_connections)
    protocol = type(
        "HeaderDeadlineH11",
        (HeaderDeadlineH11,),
        {
            "header_timeout": float(header_timeout),
            "max_connections": max_connections,
            "on_limit": staticmethod(on_limit) if on_limit is not None else None,
        },
    )
    return {
        "http": protocol,
        "timeout_keep_alive": keep_alive,
        "h11_max_incomplete_event_size": 64 * 1024,  # headers larger than this: 400
    }
