"""The jobs API under slow clients, over real sockets (uvicorn with the options `loglog
jobs serve` uses): headers that never finish, bodies that trickle and idle connections
are all closed by the server at their deadline, and it goes on answering."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from fleet.api import create_app, server_options
from fleet.store import JobStore
from tests.fleet.harness import down_dispatcher, served

pytestmark = pytest.mark.slow


def _closed_by_server(sock: socket.socket) -> bytes:
    """What the server sent before closing; a 30 s hang guard (a timeout fails the test)."""
    sock.settimeout(30)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _submit(api: str) -> int:
    request = urllib.request.Request(
        f"{api}/v1/jobs", method="POST", headers={"content-type": "application/json"},
        data=json.dumps({"source": "synthetic://64x48@10?seconds=1"}).encode(),
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_slowloris_of_300_connections_is_closed_at_the_deadlines(store: JobStore) -> None:
    """100 connections send a POST's headers and 10 of its 100 body bytes, 100 stop
    mid-headers, 100 connect and say nothing. Before: all 300 held for as long as the
    clients liked. Now each is closed within its deadline (1 s for headers, 1 s for a
    body, here) — a trickled body with a 408 that says so — no thread is started per
    connection, and a job is accepted afterwards."""
    app = create_app(down_dispatcher(store), publish_interval=60, body_timeout=1.0)
    with served(app, **server_options(header_timeout=1.0, max_connections=1000)) as api:
        host, port = api.removeprefix("http://").split(":")
        baseline = threading.active_count()
        body_head = (
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"source":'
        )
        sockets: list[tuple[str, socket.socket]] = []
        for kind, first in (("body", body_head), ("headers", b"POST /v1/jobs HTTP/1.1\r\nHo"),
                            ("idle", b"")):  # fmt: skip
            for _ in range(100):
                sock = socket.create_connection((host, int(port)), timeout=30)
                if first:
                    sock.sendall(first)
                sockets.append((kind, sock))
        threads_during = threading.active_count()
        began = time.monotonic()
        answers = {kind: [] for kind in ("headers", "body", "idle")}  # type: ignore[var-annotated]
        for kind, sock in sockets:
            answers[kind].append(_closed_by_server(sock))
            sock.close()
        print(f"\n300 slow connections closed by the server within {time.monotonic() - began:.1f}s")
        assert threads_during <= baseline + 2, (threads_during, baseline)
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers["body"]), answers["body"][:3]
        assert b"did not arrive within 1s" in answers["body"][0]
        assert _submit(api) == 202


def test_past_the_connection_cap_a_request_is_answered_503_at_once(store: JobStore) -> None:
    """With the cap (20 here) held by connections that have not finished their headers,
    a complete request is answered 503 at once instead of waiting; once they are closed
    at the header deadline, requests are served again."""
    app = create_app(down_dispatcher(store), publish_interval=60)
    with served(app, **server_options(header_timeout=3.0, max_connections=20)) as api:
        host, port = api.removeprefix("http://").split(":")
        held = []
        for _ in range(20):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            held.append(sock)
        assert _submit(api) == 503
        for sock in held:
            _closed_by_server(sock)
            sock.close()
        assert _submit(api) == 202
