"""The alert receiver: Alertmanager's webhook target in the embedded stack.

``POST /alerts/<receiver>`` takes Alertmanager's webhook payload (version "4"), records
every notification through loglog (critical as ERROR, the rest as WARNING; resolved as
INFO) and appends it to a JSON-lines file. ``GET /alerts`` returns what arrived (newest
last), for people and for tests. A malformed payload gets a 400 that says what is missing;
one over ``MAX_PAYLOAD`` bytes a 413, before it is read.

``GET /runbooks/<Alert>.md`` serves the runbooks in ``alerts/runbooks/``, so the
``runbook_url`` in a page is a link whoever receives it can open (not a ``file://`` path
on the machine that ran ``loglog up``). Only plain ``Name.md`` files in that directory are
served.

``GET /metrics`` serves ``registry`` when one is given: under ``loglog up`` that is the
supervisor's own metrics (:mod:`stack.metrics`), so Prometheus scrapes them here.
:class:`ReceiverChild` lets the supervisor restart the receiver like any other component.

The server is Starlette on uvicorn, from a thread (:mod:`httpkit.background`): at most
``MAX_CONNECTIONS`` connections (more get a 503 at accept), each closed
``REQUEST_TIMEOUT_S`` after it opened unless its exchange is done.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alerts import RUNBOOKS
from httpkit.background import BackgroundServer
from httpkit.bodylimit import BodyLimit
from loglog import get_logger

from .processes import StackError

_REQUIRED = ("version", "status", "receiver", "alerts")
MAX_PAYLOAD = 4 * 1024 * 1024
#: Alertmanager posts one notification per connection; Prometheus scrapes /metrics; a
#: person opens a runbook. Past this many open connections a new one gets a 503.
MAX_CONNECTIONS = 64
#: Seconds a connection may take from accept to the end of its answer.
REQUEST_TIMEOUT_S = 10.0
_RUNBOOK = re.compile(r"[A-Za-z0-9_-]{1,100}\.md")


class AlertReceiver:
    """Serves the webhook on ``host:port`` from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        out: str | Path,
        keep: int = 1000,
        runbooks: str | Path | None = RUNBOOKS,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.notifications: deque[dict[str, Any]] = deque(maxlen=keep)
        self.log = get_logger("alerts")
        self._lock = threading.Lock()
        self.runbooks = Path(runbooks) if runbooks is not None else None
        self.registry = registry
        self._server = BackgroundServer(
            self.app(),
            host,
            port,
            name="alert-receiver",
            max_connections=MAX_CONNECTIONS,
            timeout=REQUEST_TIMEOUT_S,
        )
        self.port = self._server.port
        self.url = f"http://{host}:{self.port}"

    def app(self) -> Starlette:
        """The receiver's ASGI app (its routes are the module docstring's)."""

        async def post_alert(request: Request) -> Response:
            try:
                payload = json.loads(await request.body() or b"null")
                route = request.path_params["route"].strip("/")
                # In a thread: it appends to a file, and a slow disk must not hold
                # /healthz and /metrics.
                await run_in_threadpool(self.record, payload, route)
            except (ValueError, TypeError, KeyError) as exc:
                return _json(400, {"error": f"not an Alertmanager webhook payload: {exc}"})
            return _json(200, {"status": "recorded"})

        async def list_alerts(request: Request) -> Response:
            return _json(200, list(self.notifications))

        async def runbook(request: Request) -> Response:
            name = request.path_params["name"]
            if self.runbooks is None or not _RUNBOOK.fullmatch(name):
                return _json(404, {"error": "see /alerts and /runbooks/<Alert>.md"})
            try:
                text = (self.runbooks / name).read_bytes()
            except OSError:
                return _json(404, {"error": "no such runbook; see alerts/runbooks/"})
            return Response(text, media_type="text/markdown; charset=utf-8")

        async def healthz(request: Request) -> Response:
            return _json(200, {"status": "ok"})

        async def metrics(request: Request) -> Response:
            registry = self.registry
            if registry is None:
                return _json(404, {"error": "see /alerts and /runbooks/<Alert>.md"})
            return Response(
                generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST}
            )

        async def elsewhere(request: Request, exc: Exception) -> Response:
            if request.method == "POST":
                return _json(404, {"error": "POST the webhook to /alerts/<receiver>"})
            return _json(404, {"error": "see /alerts and /runbooks/<Alert>.md"})

        app = Starlette(
            routes=[
                Route("/alerts{route:path}", post_alert, methods=["POST"]),
                Route("/alerts{route:path}", list_alerts, methods=["GET"]),
                Route("/runbooks/{name}", runbook, methods=["GET"]),
                Route("/healthz", healthz, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
            ],
            exception_handlers={404: elsewhere, 405: elsewhere},
        )
        app.router.redirect_slashes = False  # /runbooks/x.md/ is no runbook, not a redirect
        app.add_middleware(
            BodyLimit,
            limit=MAX_PAYLOAD,
            advice=f"a webhook payload may be at most {MAX_PAYLOAD} bytes",
        )
        return app

    def record(self, payload: Any, route: str) -> dict[str, Any]:
        """Validate, log and store one webhook notification."""
        if not isinstance(payload, dict):
            raise TypeError("the body must be a JSON object")
        missing = [key for key in _REQUIRED if key not in payload]
        if missing:
            raise KeyError(f"missing {', '.join(missing)}")
        if not isinstance(payload["alerts"], list):
            raise TypeError("alerts must be a list")
        entry = {
            "received_at": time.time(),
            "route": route,
            "receiver": payload["receiver"],
            "status": payload["status"],
            "group_key": payload.get("groupKey", ""),
            "alerts": [
                {
                    "status": alert.get("status"),
                    "labels": alert.get("labels", {}),
                    "annotations": alert.get("annotations", {}),
                    "starts_at": alert.get("startsAt"),
                    "ends_at": alert.get("endsAt"),
                    "fingerprint": alert.get("fingerprint"),
                }
                for alert in payload["alerts"]
            ],
        }
        with self._lock:
            self.notifications.append(entry)
            with open(self.out, "a") as handle:
                handle.write(json.dumps(entry) + "\n")
        for alert in entry["alerts"]:
            labels, notes = alert["labels"], alert["annotations"]
            fields = {
                "alertname": labels.get("alertname"),
                "severity": labels.get("severity"),
                "receiver": payload["receiver"],
                "summary": notes.get("summary"),
                "runbook_url": notes.get("runbook_url"),
            }
            # An SLO alert aggregates by job: name where it fired, never "instance=null".
            for where in ("instance", "job"):
                if labels.get(where):
                    fields[where] = labels[where]
                    break
            if alert["status"] == "resolved":
                self.log.info("alert resolved", **fields)
            elif labels.get("severity") == "critical":
                self.log.error("PAGE: alert firing", **fields)
            else:
                self.log.warning("ticket: alert firing", **fields)
        return entry

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def serving(self) -> bool:
        return self._server.serving()

    def close(self) -> None:
        """Release the port without waiting for the serving thread (it is gone)."""
        self._server.close()


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json")


class ReceiverChild:
    """The receiver as a supervised component (a :class:`stack.types.Child`): it runs in
    ``loglog up``'s own process, so "exited" means its server thread ended."""

    name = "alert receiver"

    def __init__(
        self, host: str, port: int, out: Path, registry: CollectorRegistry | None = None
    ) -> None:
        self.host, self.port, self.out, self.registry = host, port, out, registry
        self.receiver: AlertReceiver | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self.receiver is not None:
            self.receiver.close()  # a dead thread's socket still holds the port
        try:
            self.receiver = AlertReceiver(self.host, self.port, self.out, registry=self.registry)
        except OSError as exc:
            raise StackError(
                f"the alert receiver cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.receiver.start()

    def exit_status(self) -> str | None:
        if self.receiver is None or self.receiver.serving():
            return None
        return "stopped serving (its thread ended)"

    def ready(self) -> bool:
        return self.receiver is not None and self.receiver.serving()

    def stop(self, grace: float = 10.0) -> None:
        if self.receiver is not None and self.receiver.serving():
            self.receiver.stop()

    def tail(self, lines: int = 15) -> str:
        return ""  # it logs through loglog up's own console

    def where(self) -> str:
        return "in loglog up"
