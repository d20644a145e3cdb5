"""A loopback OTLP/HTTP logs receiver that decodes ExportLogsServiceRequest protobufs."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/logs" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404 if self.path != "/v1/logs" else 415)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        with self.server.lock:
            for resource_logs in request.resource_logs:
                resource = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        self.server.records.append((resource, record))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    records: list[tuple[dict[str, str], Any]]
    lock: threading.Lock


class OtlpReceiver:
    """Collects the log records posted to http://127.0.0.1:<port>/v1/logs."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.records = []
        self._server.lock = threading.Lock()
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/v1/logs"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def records(self) -> list[tuple[dict[str, str], Any]]:
        with self._server.lock:
            return list(self._server.records)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
