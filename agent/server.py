"""The agent's HTTP endpoint: /metrics (text, or OpenMetrics on request) and /healthz.

Rendering reads snapshots only, so a scrape answers even while an NVML call hangs.

The server is bounded: each connection gets one thread and at most ``request_timeout``
seconds from accept to the end of its answer (a reaper thread shuts down any connection
past its deadline, so a client trickling its headers one byte at a time holds nothing
for long), and past ``max_connections`` open connections a new one is answered 503 and
closed at once, from the accepting thread, without a thread of its own. Before, 300
slow connections held 300 threads forever. IPv4 and IPv6 hosts (``::1``) both bind.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

#: Open connections served at once; more are answered 503 at accept. Prometheus needs one
#: per scrape; 32 leaves room for several servers and people with curl.
MAX_CONNECTIONS = 32
#: Seconds a connection may take from accept to the end of its answer (Prometheus'
#: default scrape_timeout is 10 s: a scrape slower than that is failed by it anyway).
REQUEST_TIMEOUT_S = 10.0

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 36\r\n"
    b"Connection: close\r\n\r\ntoo many connections; retry shortly\n"
)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with a connection cap and a per-connection deadline."""

    daemon_threads = True
    block_on_close = False
    #: The listen backlog (socketserver's default is 5: a burst of connections past it
    #: waits a second for the SYN to be retried, scrapes included).
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The family of the host as given: "::1" needs AF_INET6 (it was refused), a name
        # takes the family it resolves to first.
        self.address_family = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0][0]
        self.max_connections, self.request_timeout, self.clock = (
            max_connections,
            request_timeout,
            clock,
        )
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap, name="agent-http-reaper", daemon=True)
        self._reaper.start()

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's FQDN (getfqdn): seconds for
        # "::1" on some hosts, and a name nothing here uses.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            busy = len(self._deadlines) >= self.max_connections
            if not busy:
                self._deadlines[request] = self.clock() + self.request_timeout
        if busy:
            # Answered from the accepting thread: a send into an empty socket buffer does
            # not block, and no thread is started for it. What the client sent is read
            # first: closing with unread bytes sends a reset, which can discard the 503.
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY)
                request.shutdown(socket.SHUT_WR)
                while request.recv(65536):
                    pass
            request.close()
            return
        request.settimeout(self.request_timeout)  # no single read or write waits longer
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._deadlines.pop(request, None)

    def _reap(self) -> None:
        while not self._closed.wait(min(0.5, self.request_timeout / 4)):
            now = self.clock()
            with self._lock:
                late = [conn for conn, deadline in self._deadlines.items() if deadline <= now]
            for conn in late:
                # Wakes the handler's blocked recv/send with an error: its thread ends.
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that left, or one cut at its deadline: expected, not worth a traceback.
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def open_connections(self) -> int:
        """Connections being served now (for tests and the curious)."""
        with self._lock:
            return len(self._deadlines)

    def server_close(self) -> None:
        self._closed.set()
        super().server_close()


class MetricsServer:
    """Serves ``registry`` on ``host:port`` from a daemon thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        registry_ref = registry

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    if "application/openmetrics-text" in self.headers.get("Accept", ""):
                        body, kind = openmetrics_latest(registry_ref), OPENMETRICS_TYPE
                    else:
                        body, kind = generate_latest(registry_ref), CONTENT_TYPE_LATEST
                    self._send(200, body, kind)
                elif self.path == "/healthz":
                    self._send(200, b'{"status":"ok"}', "application/json")
                else:
                    self._send(404, b"see /metrics", "text/plain")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = BoundedHTTPServer(
            (host, port), Handler, max_connections=max_connections, request_timeout=request_timeout
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="agent-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def open_connections(self) -> int:
        """Connections being served now."""
        return self._server.open_connections()
