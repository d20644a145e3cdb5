"""The agent's HTTP endpoint: /metrics (text, or OpenMetrics on request) and /healthz.

Rendering reads snapshots only, so a scrape answers even while an NVML call hangs. The
format is negotiated by prometheus_client (``choose_encoder``, as its own exporters do);
the server is Starlette on uvicorn, from a thread (:class:`httpkit.background.BackgroundServer`).

The server is bounded: each connection has at most ``request_timeout`` seconds from accept
to the end of its answer (a client trickling its headers one byte at a time is closed at
that deadline), and past ``max_connections`` open connections a new one is answered 503
and closed at once, before anything is read. Before, 300 slow connections held 300
threads forever. IPv4 and IPv6 hosts (``::1``) both bind.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from httpkit.background import BackgroundServer

#: Open connections served at once; more are answered 503 at accept. Prometheus needs one
#: per scrape; 32 leaves room for several servers and people with curl.
MAX_CONNECTIONS = 32
#: Seconds a connection may take from accept to the end of its answer (Prometheus'
#: default scrape_timeout is 10 s: a scrape slower than that is failed by it anyway).
REQUEST_TIMEOUT_S = 10.0


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """The agent's ASGI app: ``/metrics`` of ``registry`` and ``/healthz``."""

    async def metrics(request: Request) -> Response:
        # Rendered on the event loop: it reads snapshots (never NVML), so it is short, and
        # no thread pool is started for it.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), headers={"content-type": content_type})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def elsewhere(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("see /metrics", status_code=404)

    return Starlette(
        routes=[Route("/metrics", metrics), Route("/healthz", healthz)],
        exception_handlers={404: elsewhere},
    )


class MetricsServer(BackgroundServer):
    """Serves ``registry`` on ``host:port`` from a daemon thread (``start()``/``stop()``)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> None:
        super().__init__(
            metrics_app(registry),
            host,
            port,
            name="agent-http",
            max_connections=max_connections,
            timeout=request_timeout,
        )
