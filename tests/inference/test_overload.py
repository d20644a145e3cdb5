"""`loglog serve` past its capacity, over real sockets: requests it cannot answer in time
are refused at once with a 503 and Retry-After, the ones it admits are answered, its
scrapes are answered throughout, and the counters add up to what the client saw."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inference.tools.loadclient import Connections
from inference.tools.loadgen import open_loop, request_image
from tests.conftest import free_port, until

pytestmark = pytest.mark.slow


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def drill(self, stage: str, delay_ms: float) -> None:
        body = json.dumps({"stage": stage, "delay_ms": delay_ms, "duration_s": 300}).encode()
        status, _, _ = self.call("POST", "/v1/drills", body, {"Content-Type": "application/json"})
        assert status == 201

    def counters(self) -> dict[str, float]:
        _, _, text = self.call("GET", "/metrics")
        return {
            sample.name + (f"[{sample.labels['reason']}]" if "reason" in sample.labels else "")
            + (f"[{sample.labels['status']}]" if "status" in sample.labels else ""): sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples
            if sample.name.startswith(("inference_requests_shed", "inference_requests_admitted",
                                       "inference_requests_total"))
        }  # fmt: skip


def _serve(tmp_path: Path, config: str) -> Iterator[Served]:
    port = free_port()
    path = tmp_path / "serve.yaml"
    path.write_text("calibration_seconds: 0.1\n" + config)
    log = open(tmp_path / "serve.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "serve", "--port", str(port), "--config",
         str(path), "--allow-drills"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ),
    )  # fmt: skip
    log.close()
    served = Served(proc, port)
    try:
        until(lambda: served.call("GET", "/readyz")[0] == 200, 180, "loglog serve ready")
        yield served
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, "")


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, "max_connections: 4\n")


async def _scrape_while(port: int, stop: asyncio.Event) -> list[tuple[int, float]]:
    """GET /metrics every 0.2 s until ``stop``: (status, seconds) of each."""
    connections = Connections("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, float]] = []
    try:
        while not stop.is_set():
            started = loop.time()
            try:
                status = await asyncio.wait_for(connections.get("/metrics"), 30)
            except (OSError, ValueError, TimeoutError):
                status = 0
            seen.append((status, loop.time() - started))
            await asyncio.sleep(0.2)
    finally:
        connections.close()
    return seen


def test_an_overload_is_shed_with_503s_while_scrapes_and_admitted_requests_are_served(server):
    """The engine is slowed to ≤ 20 items/s (a 50 ms drill per item) and offered 100
    requests/s for 3 s: most are refused with a 503, some are served, none times out or
    goes unanswered; every scrape during it is answered 200; a request that cannot meet
    its deadline gets Retry-After and a body naming the limit; and the server's counters
    match what the client saw, exactly."""
    server.drill("infer", 50)
    body, content_type = request_image("jpeg")

    async def flood() -> tuple[dict[str, int], list[tuple[int, float]]]:
        connections = Connections("127.0.0.1", server.port)
        stop = asyncio.Event()
        scrapes = asyncio.create_task(_scrape_while(server.port, stop))
        try:
            run = await open_loop(
                lambda: connections.post("/v1/infer", body, content_type), 100, 3.0, timeout=30
            )
        finally:
            stop.set()
            connections.close()
        return run.codes | {k: v for k, v in run.statuses.items() if "x" not in k}, await scrapes

    codes, scrapes = asyncio.run(asyncio.wait_for(flood(), 300))
    assert set(codes) <= {"200", "503"}, codes  # no time-out, nothing unreachable
    assert codes.get("503", 0) >= 100 and codes.get("200", 0) >= 10, codes
    assert scrapes and all(status == 200 for status, _ in scrapes), scrapes
    assert max(seconds for _, seconds in scrapes) < 10  # a hang guard, not a target

    counted = server.counters()
    admitted = counted["inference_requests_admitted_total"]
    refused = counted["inference_requests_shed_total[predicted_wait]"]
    refused += counted["inference_requests_shed_total[queue_full]"]
    expired = counted["inference_requests_shed_total[expired]"]
    assert admitted + refused == 300
    assert admitted == counted["inference_requests_total[ok]"] + expired
    assert codes["200"] == counted["inference_requests_total[ok]"]
    assert codes["503"] == refused + expired

    status, headers, answer = server.call(
        "POST", "/v1/infer", body,
        {"Content-Type": content_type, "X-Request-Timeout": "0.001"},
    )  # fmt: skip
    assert status == 503 and int(headers["retry-after"]) >= 1
    detail = json.loads(answer)
    assert detail["reason"] == "predicted_wait" and detail["limit"] == "request_timeout_s"


def test_past_max_connections_inference_gets_a_503_naming_it_and_metrics_still_answer(
    small_server,
):
    """max_connections 4 and six slow requests at once (a 2 s drill per item, so that on a
    loaded host the six still overlap): the ones past the limit are refused with a 503
    whose body names max_connections (counted); meanwhile /metrics, /healthz and
    /v1/profile answer 200."""
    small_server.drill("infer", 2000)
    body, content_type = request_image("jpeg")
    results: list[tuple[int, dict[str, str], bytes]] = []

    def slow_request() -> None:
        headers = {"Content-Type": content_type, "X-Request-Timeout": "60"}
        try:
            results.append(small_server.call("POST", "/v1/infer", body, headers))
        except OSError as exc:  # a reset before the answer: the failure this guards
            results.append((0, {}, repr(exc).encode()))

    threads = [threading.Thread(target=slow_request) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the requests are in flight (each takes ≥ 2 s in the engine)
    probes = [small_server.call("GET", path)[0] for path in ("/metrics", "/healthz", "/v1/profile")]
    for thread in threads:
        thread.join(120)
    assert probes == [200, 200, 200]
    assert len(results) == 6 and all(status in (200, 503) for status, _, _ in results), results
    limited = [json.loads(answer) for status, _, answer in results if status == 503]
    assert limited and all(r["reason"] == "max_connections" for r in limited), results
    assert all("max_connections" in r["detail"] for r in limited)
    assert [status for status, _, _ in results].count(200) >= 1
    counted = small_server.counters()
    assert counted["inference_requests_shed_total[max_connections]"] == len(limited)
