"""Connection hygiene: a deadline for request headers, and uvicorn's limits in one place.

Uvicorn has a keep-alive timeout but none for a request's headers, so a client that sends
one header byte a minute holds a connection (and its memory) forever; 500 of them were
held in review. :class:`HeaderDeadlineH11` closes a connection whose request headers are
not complete ``header_timeout`` seconds after it opened (or after its previous response).
The body has its own deadline in the app (``read_body`` under ``body_timeout_s``), and
``limit_concurrency`` caps connections plus in-flight requests: past it, uvicorn answers
503 at once instead of queueing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderDeadlineH11(H11Protocol):
    """Uvicorn's h11 protocol, closing connections whose headers arrive too slowly."""

    header_timeout = 10.0  # set per server by uvicorn_options()

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


def uvicorn_options(
    *, header_timeout: float, max_connections: int, keep_alive: int = 5
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` that apply the connection limits."""
    protocol = type(
        "HeaderDeadlineH11", (HeaderDeadlineH11,), {"header_timeout": float(header_timeout)}
    )
    return {
        "http": protocol,
        "timeout_keep_alive": keep_alive,
        "limit_concurrency": max_connections,
        "h11_max_incomplete_event_size": 64 * 1024,  # headers larger than this: 400
    }
