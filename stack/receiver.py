"""The alert receiver: Alertmanager's webhook target in the embedded stack.

``POST /alerts/<receiver>`` takes Alertmanager's webhook payload (version "4"), records
every notification through loglog (critical as ERROR, the rest as WARNING; resolved as
INFO) and appends it to a JSON-lines file. ``GET /alerts`` returns what arrived (newest
last), for people and for tests. A malformed payload gets a 400 that says what is missing;
one over ``MAX_PAYLOAD`` bytes a 413.

``GET /runbooks/<Alert>.md`` serves the runbooks in ``alerts/runbooks/``, so the
``runbook_url`` in a page is a link whoever receives it can open (not a ``file://`` path
on the machine that ran ``loglog up``). Only plain ``Name.md`` files in that directory are
served.

``GET /metrics`` serves ``registry`` when one is given: under ``loglog up`` that is the
supervisor's own metrics (:mod:`stack.metrics`), so Prometheus scrapes them here.
:class:`ReceiverChild` lets the supervisor restart the receiver like any other component.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loglog import get_logger

from .processes import StackError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_REQUIRED = ("version", "status", "receiver", "alerts")
MAX_PAYLOAD = 4 * 1024 * 1024
RUNBOOKS = Path(__file__).resolve().parent.parent / "alerts" / "runbooks"
_RUNBOOK = re.compile(r"^/runbooks/([A-Za-z0-9_-]{1,100}\.md)\Z")


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
        receiver = self
        if registry is not None:  # whoever passes one has prometheus_client
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # seconds a client may take per read: slow clients are dropped

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                if not self.path.startswith("/alerts"):
                    self._send(404, {"error": "POST the webhook to /alerts/<receiver>"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    self._send(400, {"error": "Content-Length is not a number"})
                    return
                if not 0 <= length <= MAX_PAYLOAD:
                    self._send(413, {"error": f"the payload limit is {MAX_PAYLOAD} bytes"})
                    return
                try:
                    payload = json.loads(self.rfile.read(length) or b"null")
                    receiver.record(payload, self.path.removeprefix("/alerts").strip("/"))
                except (ValueError, TypeError, KeyError) as exc:
                    self._send(400, {"error": f"not an Alertmanager webhook payload: {exc}"})
                    return
                self._send(200, {"status": "recorded"})

            def do_GET(self) -> None:
                runbook = _RUNBOOK.match(self.path)
                if self.path == "/healthz":
                    self._send(200, {"status": "ok"})
                elif runbook and receiver.runbooks is not None:
                    page = receiver.runbooks / runbook.group(1)
                    try:
                        text = page.read_bytes()
                    except OSError:
                        self._send(404, {"error": "no such runbook; see alerts/runbooks/"})
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "text/markdown; charset=utf-8")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                elif self.path.startswith("/alerts"):
                    self._send(200, list(receiver.notifications))
                elif self.path == "/metrics" and registry is not None:
                    data = generate_latest(registry)
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._send(404, {"error": "see /alerts and /runbooks/<Alert>.md"})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        ThreadingHTTPServer.daemon_threads = True
        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="alert-receiver", daemon=True
        )

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
                "instance": labels.get("instance"),
                "summary": notes.get("summary"),
                "runbook_url": notes.get("runbook_url"),
            }
            if alert["status"] == "resolved":
                self.log.info("alert resolved", **fields)
            elif labels.get("severity") == "critical":
                self.log.error("PAGE: alert firing", **fields)
            else:
                self.log.warning("ticket: alert firing", **fields)
        return entry

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serving(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Release the port without waiting for the serving thread (it is gone)."""
        self._server.server_close()


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


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "receiver", help="the Alertmanager webhook receiver (alerts to log + file)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--out", default="alerts.jsonl", help="JSON-lines file of notifications")
    parser.add_argument(
        "--runbooks", default=str(RUNBOOKS), help="directory served at /runbooks/<Alert>.md"
    )
    parser.set_defaults(run=_run)  # the logger alone: no extra


def _run(args: Any) -> int:
    import signal
    import sys

    import loglog

    loglog.configure()
    try:
        receiver = AlertReceiver(args.host, args.port, args.out, runbooks=args.runbooks)
    except OSError as exc:
        sys.stderr.write(
            f"loglog receiver: cannot listen on {args.host}:{args.port}: {exc.strerror}\n"
        )
        return 2
    receiver.start()
    get_logger("alerts").info("receiver listening", url=f"{receiver.url}/alerts", out=str(args.out))
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    done.wait()
    receiver.stop()
    loglog.shutdown()
    return 0
