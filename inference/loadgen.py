"""``loglog loadgen``: open-loop requests per second, or N synthetic streams.

``--rps`` sends ``POST /v1/infer`` on a fixed schedule (open loop: a slow server does not
slow the sender, which is what exposes queueing) with a JPEG generated here. ``--streams``
starts synthetic streams through the API, watches their fps, and deletes them. A progress
bar runs on stderr; a summary is printed at the end and, with ``--pushgateway``, pushed
as a batch job (job ``loglog_loadgen``).
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .metrics import LOADGEN_METRICS, REQUEST_BUCKETS


class _Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.local = threading.local()

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout
            )
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            return 0, b""


def _bar(done: float, total: float, text: str) -> None:
    width = 30
    filled = int(width * min(1.0, done / total)) if total else width
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done:5.1f}/{total:.0f}s  {text}   "
    )
    sys.stderr.flush()


def run_rps(url: str, rps: float, duration: float) -> dict[str, Any]:
    from .video import encode_jpeg

    rng = np.random.default_rng(7)
    image = encode_jpeg((rng.random((480, 640, 3)) * 255).astype(np.uint8))
    client = _Client(url)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def one() -> None:
        started = time.perf_counter()
        status, _ = client.request("POST", "/v1/infer", image, "image/jpeg")
        elapsed = time.perf_counter() - started
        key = f"{status // 100}xx" if status else "unreachable"
        with lock:
            statuses[key] = statuses.get(key, 0) + 1
            if status == 200:
                latencies.append(elapsed)

    started = time.monotonic()
    sent = 0
    with ThreadPoolExecutor(max_workers=64) as pool:
        while (now := time.monotonic() - started) < duration:
            due = int(now * rps) + 1
            while sent < due:
                pool.submit(one)
                sent += 1
            if sent % max(1, int(rps // 2)) == 0:
                with lock:
                    done = sum(statuses.values())
                    p99 = np.percentile(latencies, 99) * 1000 if latencies else 0.0
                _bar(
                    now,
                    duration,
                    f"sent {sent}  done {done}  ok {statuses.get('2xx', 0)}  p99 {p99:.0f} ms",
                )
            time.sleep(min(0.01, 1.0 / rps))
    elapsed = time.monotonic() - started
    sys.stderr.write("\n")
    return {
        "mode": "rps",
        "target_rps": rps,
        "sent": sent,
        "statuses": statuses,
        "achieved_rps": statuses.get("2xx", 0) / elapsed,
        "latency_ms": {
            f"p{q}": round(float(np.percentile(latencies, q)) * 1000, 2) for q in (50, 95, 99)
        } if latencies else {},
        "latencies": latencies,
    }  # fmt: skip


def run_streams(url: str, count: int, duration: float, source: str) -> dict[str, Any]:
    client = _Client(url)
    created = []
    for index in range(count):
        body = json.dumps({"source": source, "id": f"loadgen-{index + 1}"}).encode()
        status, answer = client.request("POST", "/v1/streams", body, "application/json")
        if status != 201:
            sys.stderr.write(
                f"loglog loadgen: creating a stream failed ({status}): {answer.decode()[:300]}\n"
            )
            break
        created.append(json.loads(answer)["id"])
    started = time.monotonic()
    fps = 0.0
    try:
        while (now := time.monotonic() - started) < duration:
            status, answer = client.request("GET", "/v1/streams")
            if status == 200:
                streams = [s for s in json.loads(answer) if s["id"] in created]
                fps = sum(s["fps"] for s in streams)
                dropped = sum(sum(s["dropped"].values()) for s in streams)
                _bar(now, duration, f"{len(streams)} streams  {fps:.1f} fps  dropped {dropped}")
            time.sleep(0.5)
    finally:
        for stream_id in created:
            client.request("DELETE", f"/v1/streams/{stream_id}")
        sys.stderr.write("\n")
    return {
        "mode": "streams",
        "streams": len(created),
        "fps": round(fps, 2),
        "duration_s": duration,
    }


def push_summary(gateway: str, summary: dict[str, Any]) -> None:
    """Push the run to a Pushgateway (job ``loglog_loadgen``)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway

    registry = CollectorRegistry()
    help_of = {name: spec[2] for name, spec in LOADGEN_METRICS.items()}
    requests = Counter(
        "loglog_loadgen_requests_total",
        help_of["loglog_loadgen_requests_total"],
        ["status"],
        registry=registry,
    )
    latency = Histogram(
        "loglog_loadgen_latency_seconds",
        help_of["loglog_loadgen_latency_seconds"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )
    achieved = Gauge(
        "loglog_loadgen_achieved_rps", help_of["loglog_loadgen_achieved_rps"], registry=registry
    )
    stamp = Gauge(
        "loglog_loadgen_last_run_timestamp_seconds",
        help_of["loglog_loadgen_last_run_timestamp_seconds"],
        registry=registry,
    )
    for status, count in summary.get("statuses", {}).items():
        requests.labels(status).inc(count)
    for value in summary.get("latencies", []):
        latency.observe(value)
    achieved.set(summary.get("achieved_rps", summary.get("fps", 0.0)))
    stamp.set(time.time())
    push_to_gateway(gateway, job="loglog_loadgen", registry=registry)


def main(
    *,
    url: str,
    rps: float | None,
    streams: int | None,
    duration: float,
    source: str,
    pushgateway: str | None,
) -> int:
    if rps is not None and not 0 < rps <= 10_000:
        sys.stderr.write("loglog loadgen: --rps must be between 0 and 10000\n")
        return 2
    if streams is not None and not 0 < streams <= 1000:
        sys.stderr.write("loglog loadgen: --streams must be between 1 and 1000\n")
        return 2
    summary = (
        run_rps(url, rps, duration)
        if rps is not None
        else run_streams(url, streams or 0, duration, source)
    )
    if pushgateway:
        try:
            push_summary(pushgateway, summary)
        except OSError as exc:
            sys.stderr.write(f"loglog loadgen: pushing to {pushgateway} failed: {exc}\n")
    printable = {k: v for k, v in summary.items() if k != "latencies"}
    print(json.dumps(printable, indent=2))
    ok = (
        summary.get("statuses", {}).get("2xx", 0) > 0 if rps is not None else summary["streams"] > 0
    )
    return 0 if ok else 1
