"""The agent's HTTP endpoint: /metrics (text, or OpenMetrics on request) and /healthz.

Rendering reads snapshots only, so a scrape answers even while an NVML call hangs.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest


class MetricsServer:
    """Serves ``registry`` on ``host:port`` from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
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

        ThreadingHTTPServer.daemon_threads = True
        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="agent-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
