"""An ASGI app served by uvicorn from a daemon thread, for servers that live inside a
larger process: the agent's ``/metrics`` and the alert receiver.

The socket is bound and listening when the constructor returns, so ``port`` is known (0
asks for a free one) and a bind error is an ``OSError`` raised there, where the caller can
say what to do; connections that arrive before the thread runs wait in the backlog. The
host's own family is used: ``::1`` binds IPv6, a name the family it resolves to first.

Connections are bounded as :mod:`httpkit.connections` describes (counted at accept,
a deadline over each whole exchange)::

    server = BackgroundServer(app, "127.0.0.1", 0, name="agent-http",
                              max_connections=32, timeout=10.0)
    server.start()
    ...                      # http://127.0.0.1:{server.port}/
    server.stop()
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from typing import Any

import uvicorn

from .connections import HeaderDeadlineH11, uvicorn_options

#: The listen backlog: a burst of connections past it waits a second for the SYN to be
#: retried (socketserver's default of 5 did that to scrapes).
BACKLOG = 128


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` in the host's own address family."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """Uvicorn's server, also closing the connections refused at accept when it stops
    (it does not know of them: they never became its connections)."""

    def __init__(self, config: uvicorn.Config, protocol: type[HeaderDeadlineH11]) -> None:
        super().__init__(config)
        self.protocol = protocol

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.protocol.close_refused()
        await super().shutdown(sockets)


class BackgroundServer:
    """Serves ``app`` on ``host:port`` from a daemon thread named ``name``: at most
    ``max_connections`` connections (more are answered 503 at accept), each closed
    ``timeout`` seconds after it opened (or after its previous answer) unless done."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        name: str,
        max_connections: int,
        timeout: float,
    ) -> None:
        options = uvicorn_options(
            header_timeout=timeout,
            max_connections=max_connections,
            refuse_at_accept=True,
            whole_exchange=True,
        )
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            # What is in flight at stop() had its deadline already: it is done by then.
            timeout_graceful_shutdown=max(1, round(timeout)),
            **options,
        )
        self._server = _Server(config, options["http"])
        self.socket = listen(host, port)
        self.port: int = self.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, name=name, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def serving(self) -> bool:
        """Whether the serving thread runs."""
        return self._thread.is_alive()

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, finish what is in flight, close; waits up to ``grace`` s."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(grace)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5.0)
        self.close()

    def close(self) -> None:
        """Release the port without waiting for the serving thread (when it is gone)."""
        with contextlib.suppress(OSError):
            self.socket.close()

    def open_connections(self) -> int:
        """Connections being served now (those refused at accept are not counted)."""
        return len(self._server.server_state.connections)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM: what an entry point whose server runs on a
    background thread does meanwhile (main thread only)."""
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
