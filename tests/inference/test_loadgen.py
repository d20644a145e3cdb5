"""``loglog loadgen --rps`` is open loop: latency from the scheduled send time, in flight
not capped by a pool (or the cap counted as errors), late sends counted, bad servers
counted rather than fatal."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable

import pytest

from inference.tools import loadgen
from inference.tools.loadclient import Connections
from inference.tools.loadgen import open_loop
from tests.conftest import http_server


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
    assert summary["latency_ms_2xx"]["p99"] >= 200
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
    assert run.summary(1000)["errors"] == 20 and run.summary(1000)["latency_ms_2xx"] == {}


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
            connections = Connections("127.0.0.1", port)
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
            connections = Connections("127.0.0.1", port)
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


@pytest.mark.slow  # over 2 s: the full suite runs it
def test_goodput_counts_2xx_within_the_slo_and_refusals_are_reported_apart():
    """A third of the requests are refused at once (503), a third answered 200 after 1.5 s
    (past a 1 s SLO), a third answered 200 at once: goodput counts only the last third,
    2xx latency leaves the refusals out, and every status code is counted."""
    outcomes = iter([503, "slow", 200] * 20)

    async def mixed() -> int:
        outcome = next(outcomes)
        if outcome == "slow":
            await asyncio.sleep(1.5)
            return 200
        return int(outcome)

    run = asyncio.run(asyncio.wait_for(open_loop(mixed, 60, 1.0, slo=1.0), 60))
    summary = run.summary(1000)
    assert summary["status_codes"] == {"200": 40, "503": 20}
    assert summary["within_slo"] == 20 and summary["goodput_rps"] == 20.0
    assert summary["rejected"] == 20 and len(run.latencies) == 40
    assert summary["latency_ms_2xx"]["p99"] >= 1500
    assert set(summary["rejection_latency_ms"]) == {"p50", "p99", "max"}
    assert summary["slo_ms"] == 1000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("50", (50.0, False)), ("1.5x", (1.5, True)), (" 2X ", (2.0, True)), (7, (7.0, False))],
)
def test_rps_is_a_rate_or_a_multiple_of_capacity(text, expected):
    assert loadgen.parse_rps(text) == expected


@pytest.mark.parametrize("text", ["x", "fast", "-1x", "0", "nanx", "infx", "1.5xx"])
def test_a_bad_rps_names_the_accepted_forms(text):
    with pytest.raises(ValueError, match="--rps"):
        loadgen.parse_rps(text)


def _fake_server(profile: dict, streams: list | None = None):
    """A loopback server answering /v1/profile, /v1/streams and POST /v1/infer (200)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(profile if self.path == "/v1/profile" else streams or [])

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self._answer({"outputs": {}})

        def log_message(self, *args: object) -> None:
            pass

    return http_server(Handler)


def test_a_relative_rate_is_that_multiple_of_the_capacity_the_streams_leave(capsys):
    """``--rps 0.2x`` against a server calibrated at 100 items/s (its best batch) whose
    streams take 45 frames/s: 0.2 × 55 = 11 requests/s, and the SLO is the server's."""
    profile = {
        "capacity_items_per_s": {"1": 40.0, "8": 100.0},
        "admission": {"stream_items_per_s": 45.0, "latency_slo_s": 0.5},
    }
    with _fake_server(profile) as url:
        code = loadgen.main(
            url=url, rps="0.2x", streams=None, duration=1.0, source="", pushgateway=None
        )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["target_rps"] == 11.0 and summary["rps_factor"] == 0.2
    assert summary["server"]["http"] == 55.0 and summary["slo_ms"] == 500.0
    assert summary["status_codes"] == {"200": 11}


def test_a_relative_rate_against_a_server_without_admission_uses_its_streams_fps(capsys):
    """An older server reports no stream load: the streams' fps stand in, the SLO is 1 s."""
    profile = {"capacity_items_per_s": {"4": 50.0}}
    with _fake_server(profile, streams=[{"fps": 15.0}, {"fps": 15.0}]) as url:
        code = loadgen.main(
            url=url, rps="0.5x", streams=None, duration=1.0, source="", pushgateway=None
        )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["target_rps"] == 10.0 and summary["slo_ms"] == 1000.0


def test_a_relative_rate_without_a_server_is_a_clear_error(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = loadgen.main(
        url=f"http://127.0.0.1:{port}", rps="2x", streams=None, duration=1.0, source="",
        pushgateway=None,
    )  # fmt: skip
    assert code == 2 and "cannot read the server's capacity" in capsys.readouterr().err
