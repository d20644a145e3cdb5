"""The agent's HTTP server under hostile clients: slow connections are closed at their
deadline, connections past the cap are answered 503 without a thread, IPv6 binds."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from agent.collector import Agent
from agent.server import MetricsServer
from tests.conftest import free_port, read_until_closed, slow_clients


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("agent_test_total", "a sample", registry=registry).inc()
    return registry


@pytest.mark.slow
def test_a_slowloris_of_300_connections_holds_no_more_than_the_cap_and_only_until_the_deadline() -> (
    None
):
    """300 connections each send half a request line and stop. Before: 300 threads, held
    forever. Now the first 16 (the cap here) get a thread each and are closed after the
    1 s deadline; the other 284 are answered 503 at once and closed, with no thread; the
    thread count never grows past the cap; afterwards a scrape is answered."""
    server = MetricsServer(_registry(), "127.0.0.1", 0, max_connections=16, request_timeout=1.0)
    server.start()
    baseline = threading.active_count()
    peak = baseline
    sockets: list[socket.socket] = []
    try:
        for _ in range(300):
            sockets += slow_clients(server.port, 1, b"GET /metr")
            peak = max(peak, threading.active_count())
        answers = [read_until_closed(sock) for sock in sockets]
        peak = max(peak, threading.active_count())
    finally:
        for sock in sockets:
            sock.close()
    busy = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    # Generous: a 503 can be lost to a reset when the client's bytes arrive after it.
    assert len(busy) >= 200 and all(b"too many connections" in a for a in busy)
    assert peak <= baseline + 16, (peak, baseline)
    deadline = time.monotonic() + 30  # hang guard: the held ones end at their deadline
    while server.open_connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.open_connections() == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as answer:
        assert b"agent_test_total 1.0" in answer.read()
    server.stop()


@pytest.mark.slow
def test_a_request_trickled_byte_by_byte_is_cut_at_the_deadline() -> None:
    """A client sending one header byte every 0.2 s never idles long enough for a read
    timeout; the deadline counts from accept, so it is cut after 1 s all the same."""
    server = MetricsServer(_registry(), "127.0.0.1", 0, request_timeout=1.0)
    server.start()
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        try:
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                sock.send(bytes([byte]))
                time.sleep(0.2)
                if time.monotonic() - began > 30:  # hang guard
                    break
        except OSError:
            pass  # reset by the server: what this test waits for
        assert read_until_closed(sock) == b""
    assert time.monotonic() - began < 30
    server.stop()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_the_agent_binds_ipv6_loopback() -> None:
    """``--host ::1`` was refused (the server was IPv4-only)."""
    server = MetricsServer(_registry(), "::1", free_port())
    server.start()
    try:
        with urllib.request.urlopen(f"http://[::1]:{server.port}/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.stop()


def test_a_blank_watch_name_is_refused() -> None:
    """A blank pattern is in every command line: it would export every process."""
    for blank in ("", "  "):
        with pytest.raises(ValueError, match="matches every process"):
            Agent(watch_names=["loglog", blank])


@pytest.mark.slow
def test_stop_closes_every_connection_held_or_refused_at_once() -> None:
    """Eight slow clients hold the cap, eight more are refused and still draining: stop()
    closes all sixteen then, not at their 30 s deadline (the old server's stop left held
    connections to their own thread's timeout)."""
    server = MetricsServer(_registry(), "127.0.0.1", 0, max_connections=8, request_timeout=30.0)
    server.start()
    sockets = slow_clients(server.port, 16, b"GET /metr")
    try:
        deadline = time.monotonic() + 30  # hang guard: the first eight are being served
        while server.open_connections() < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.open_connections() == 8
        began = time.monotonic()
        server.stop()
        for sock in sockets:
            sock.settimeout(10)  # far below the 30 s deadline: closed by stop(), not by it
            read_until_closed(sock)
        assert time.monotonic() - began < 20
    finally:
        for sock in sockets:
            sock.close()
