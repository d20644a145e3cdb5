"""The jobs API under slow clients, over real sockets (uvicorn with the options `loglog
jobs serve` uses): headers that never finish, bodies that trickle and idle connections
are all closed by the server at their deadline, and it goes on answering."""

from __future__ import annotations

import json
import socket
import threading
import time
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


def test_a_slowloris_of_300_connections_is_closed_at_the_deadlines(store: JobStore) -> None:
    """100 connections send a POST's headers and 10 of its 100 body bytes, 100 stop
    mid-headers, 100 connect and say nothing. Before: all 300 held for as long as the
    clients liked. Now each is closed within its deadline (1 s for headers, 1 s for a
    body, here) — a trickled body with a 408 that says so, those past the connection cap
    (50 here) with a 503 at once — no thread is started per connection, and a job is
    accepted afterwards."""
    app = create_app(down_dispatcher(store), publish_interval=60, body_timeout=1.0)
    with served(app, **server_options(header_timeout=1.0, max_connections=50)) as api:
        host, port = api.removeprefix("http://").split(":")
        baseline = threading.active_count()
        body_head = (
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"source":'
        )
        sockets: list[tuple[str, socket.socket]] = []
        # Bodies first: past the cap (50 here) a request is answered 503 at once.
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
        timed_out = [a for a in answers["body"] if a.startswith(b"HTTP/1.1 408")]
        refused = [a for a in answers["body"] if a.startswith(b"HTTP/1.1 503")]
        assert len(timed_out) + len(refused) == 100, answers["body"][:3]
        assert timed_out and b"did not arrive within 1s" in timed_out[0]
        assert refused, "the cap answered none of the connections past it"
        print(f"slow bodies: {len(timed_out)} answered 408, {len(refused)} 503 (over the cap)")
        request = urllib.request.Request(
            f"{api}/v1/jobs", method="POST", headers={"content-type": "application/json"},
            data=json.dumps({"source": "synthetic://64x48@10?seconds=1"}).encode(),
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
