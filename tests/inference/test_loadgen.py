"""``loglog loadgen --rps`` is open loop: latency from the scheduled send time, in flight
not capped by a pool (or the cap counted as errors), late sends counted, bad servers
counted rather than fatal."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest

from inference import loadgen
from inference.loadgen import _Connections, open_loop


def test_in_flight_is_not_capped_by_a_small_pool():
    """400 requests/s at a server that holds each for 0.5 s: about 200 must be in flight
    at once (the old thread pool never had more than 64), and all are answered."""

    async def held() -> int:
        await asyncio.sleep(0.5)
        return 200

    run = asyncio.run(open_loop(held, 400, 1.0))
    assert run.statuses == {"2xx": 400}
    assert run.max_in_flight_seen >= 150


def test_the_in_flight_cap_is_reported_and_counted_as_errors():
    """With max_in_flight=10 and every request held, the requests past the cap are not
    sent and are counted as in_flight_cap errors in the summary."""

    async def held() -> int:
        await asyncio.sleep(0.5)
        return 200

    run = asyncio.run(open_loop(held, 100, 0.5, max_in_flight=10))
    summary = run.summary(10)
    assert summary["statuses"]["in_flight_cap"] == 50 - summary["sent"]
    assert summary["sent"] <= 20 and summary["errors"] == summary["statuses"]["in_flight_cap"]
    assert summary["max_in_flight_seen"] == 10


def test_latency_counts_from_the_scheduled_time_and_late_sends_are_counted():
    """The client stalls its own loop for 0.3 s on the first request (a GC pause, a busy
    core): the requests due meanwhile go out late. Their latency includes the stall even
    though the server answers at once — measured from send time it would be ~0 ms."""
    stalled = []

    async def instant() -> int:
        if not stalled:
            stalled.append(True)
            time.sleep(0.3)  # blocks the loop on purpose: the sender falls behind
        return 200

    run = asyncio.run(open_loop(instant, 100, 1.0))
    summary = run.summary(1000)
    assert summary["statuses"] == {"2xx": 100}
    assert summary["late_to_send"] >= 20  # due during the 0.3 s stall
    assert summary["latency_ms"]["p99"] >= 200
    assert summary["send_lag_ms"]["max"] >= 200


def test_failures_are_counted_by_kind_and_the_run_finishes():
    """Unreachable, garbage, 5xx and answers that never come: each counted, none fatal."""
    outcomes = iter(["refused", "garbage", 503, "hang"] * 5)

    async def flaky() -> int:
        outcome = next(outcomes)
        if outcome == "refused":
            raise ConnectionRefusedError
        if outcome == "garbage":
            raise ValueError("not an HTTP response")
        if outcome == "hang":
            await asyncio.sleep(60)
        return int(outcome)

    run = asyncio.run(asyncio.wait_for(open_loop(flaky, 100, 0.2, timeout=0.3), 30))
    assert run.statuses == {"unreachable": 10, "5xx": 5, "timeout": 5}
    assert run.summary(1000)["errors"] == 20 and run.summary(1000)["latency_ms"] == {}


def _tcp_server(
    handle: Callable[[socket.socket, threading.Event], None],
) -> tuple[int, threading.Event]:
    """A loopback TCP server running ``handle(connection, stop)`` on a thread per
    connection until ``stop`` is set; its port and ``stop``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        with listener:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=handle, args=(conn, stop), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], stop


def _serve(answer: bytes, hold: float = 0.0) -> tuple[int, threading.Event]:
    """A loopback TCP server answering every request on a connection with ``answer``."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.settimeout(5)
            buffer = b""
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) < length:
                        break
                    buffer = rest[length:]
                    time.sleep(hold)
                    conn.sendall(answer)

    return _tcp_server(handle)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", {"2xx": 30}),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", {"2xx": 30}),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", {"5xx": 30}),
        (b"SSH-2.0-OpenSSH\r\n", {"unreachable": 30}),
    ],
)
def test_the_http_client_reads_keep_alive_chunked_close_and_garbage(answer, expected):
    """The real client against a loopback server: keep-alive answers are read whole (the
    connection is reused), chunked bodies too, 5xx counted, a non-HTTP peer is an error."""
    port, stop = _serve(answer)
    try:

        async def main() -> loadgen.OpenLoopRun:
            connections = _Connections("127.0.0.1", port)
            try:
                return await open_loop(
                    lambda: connections.post("/v1/infer", b"x" * 1000, "image/jpeg"),
                    100, 0.3, timeout=5,
                )  # fmt: skip
            finally:
                connections.close()

        run = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        stop.set()
    assert run.statuses == expected


def test_an_unreachable_server_is_counted_not_fatal():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    summary = loadgen.run_rps(f"http://127.0.0.1:{port}", 50, 0.2, quiet=True)
    assert summary["statuses"] == {"unreachable": 10} and summary["achieved_rps"] == 0


def _serve_once_per_connection(idle_close: float | None) -> tuple[int, threading.Event]:
    """Answers the first request of each connection, keep-alive. Then, with ``idle_close``,
    closes the connection after that many idle seconds (uvicorn's keep-alive timeout);
    without it, reads the next request and closes without answering (the close racing
    the client's reuse)."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.settimeout(5)
            buffer = b""
            while b"\r\n\r\n" not in buffer or len(buffer.partition(b"\r\n\r\n")[2]) < 10:
                buffer += conn.recv(65536)
            conn.sendall(ok)
            if idle_close is not None:
                time.sleep(idle_close)
            else:
                conn.recv(65536)  # the second request: dropped unanswered

    return _tcp_server(handle)


@pytest.mark.parametrize("idle_close", [0.05, None], ids=["closed-while-idle", "closed-on-reuse"])
def test_a_keep_alive_connection_the_server_closed_is_not_an_error(idle_close):
    """A benchmark run reported 5 "unreachable" requests against a healthy server: the
    client reused keep-alive connections the server had closed after its idle timeout.
    A connection closed while idle is not reused; one closed as the request went out
    (not a byte answered) is retried once on a new connection."""
    port, stop = _serve_once_per_connection(idle_close)
    try:

        async def main() -> tuple[list[int], int]:
            connections = _Connections("127.0.0.1", port)
            statuses = []
            for _ in range(5):
                statuses.append(await connections.post("/v1/infer", b"x" * 10, "image/jpeg"))
                await asyncio.sleep(0.2)
            connections.close()
            return statuses, connections.stale_retries

        statuses, retries = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        stop.set()
    assert statuses == [200] * 5
    assert retries == (0 if idle_close else 4)


def test_a_server_that_never_answers_is_not_retried_forever():
    """Closing every connection unanswered: each request fails once, as unreachable."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.recv(65536)

    port, stop = _tcp_server(handle)
    try:
        summary = loadgen.run_rps(f"http://127.0.0.1:{port}", 50, 0.2, quiet=True)
    finally:
        stop.set()
    assert summary["statuses"] == {"unreachable": 10}
