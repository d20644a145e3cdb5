"""``loglog loadgen``: open-loop requests per second, or N synthetic streams.

``--rps`` sends ``POST /v1/infer`` on a fixed schedule — request *i* is due at
``start + i / rps`` whatever happened to the others — and measures each request's latency
from its **scheduled** send time, so a slow server (or a stalled client) cannot hide the
queueing it causes (coordinated omission). Requests run on one asyncio loop with as many
keep-alive connections as there are requests in flight, up to ``max_in_flight`` (1,000
by default); a request due while that many are in flight is not sent, and is counted as
``in_flight_cap`` among the errors. The summary says how many requests were sent later
than :data:`LATE_AFTER` after their due time (the client could not keep its schedule).

``--streams`` starts synthetic streams through the API, watches their fps, and deletes
them. A progress bar runs on stderr; a summary is printed at the end and, with
``--pushgateway``, pushed as a batch job (job ``loglog_loadgen``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .metrics import LOADGEN_METRICS, REQUEST_BUCKETS

#: A request sent more than this after its due time counts as late to send.
LATE_AFTER = 0.010
#: Requests in flight at most, by default; past it a due request is counted, not sent.
MAX_IN_FLIGHT = 1000
#: A request without an answer after this long is counted as ``timeout``.
REQUEST_TIMEOUT = 30.0


class _Client:
    """One keep-alive HTTP connection per thread (for --streams' few control calls)."""

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


class _Connections:
    """Keep-alive HTTP/1.1 connections on one loop: an idle one is reused, else a new one
    is opened, so concurrency follows the requests in flight (no pool caps it)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        #: Requests re-sent because a reused keep-alive connection was closed under them.
        self.stale_retries = 0

    async def post(self, path: str, body: bytes, content_type: str) -> int:
        """POST and read the whole answer; the status, or raises OSError/ValueError."""
        head = f"POST {path} HTTP/1.1\r\nContent-Type: {content_type}\r\n"
        return await self._exchange(head, body)

    async def get(self, path: str) -> int:
        """GET and read the whole answer; the status."""
        return await self._exchange(f"GET {path} HTTP/1.1\r\n", b"")

    async def _exchange(self, head: str, body: bytes) -> int:
        request = (head + f"Host: {self.host}\r\nContent-Length: {len(body)}\r\n\r\n").encode(
            "latin-1"
        ) + body
        reused = None
        while self.idle:
            candidate = self.idle.pop()
            if candidate[0].at_eof():  # the server closed it while idle (keep-alive timeout)
                candidate[1].close()
            else:
                reused = candidate
                break
        if reused is not None:
            try:
                return await self._send_on(reused, request)
            except _ClosedBeforeAnswer:
                # The server closed this idle connection as we reused it, before a byte of
                # an answer: sent once more on a new one. A server that reads a whole
                # request and then closes unanswered gets it twice; the retries are counted
                # (``stale_retries`` in the summary) so that shows.
                self.stale_retries += 1
        connection = await asyncio.open_connection(self.host, self.port)
        try:
            return await self._send_on(connection, request)
        except _ClosedBeforeAnswer as exc:
            raise ConnectionResetError(
                "the server closed the connection without answering"
            ) from exc

    async def _send_on(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> int:
        reader, writer = connection
        try:
            writer.write(request)
            status, keep = await _read_response(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class _ClosedBeforeAnswer(ConnectionError):
    """The connection ended before a single byte of the answer."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the connection stays open; the body is read and discarded."""
    try:
        line = await reader.readline()
    except ConnectionResetError as exc:
        raise _ClosedBeforeAnswer(str(exc)) from exc
    if not line:
        raise _ClosedBeforeAnswer("EOF before the status line")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {line[:80]!r}")
    status, length, chunked, keep = int(parts[1]), 0, False, parts[0] == b"HTTP/1.1"
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            keep = value != "close"
    if chunked:
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    elif length:
        await reader.readexactly(length)
    return status, keep


@dataclass
class OpenLoopRun:
    """What an open-loop run saw: per-request outcomes, in seconds."""

    rps: float
    duration: float
    latencies: list[float] = field(default_factory=list)  # ok requests, from their due time
    send_lags: list[float] = field(default_factory=list)  # every sent request
    statuses: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight_seen: int = 0
    sent: int = 0
    elapsed: float = 0.0

    def count(self, key: str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def summary(self, max_in_flight: int) -> dict[str, Any]:
        ok = self.statuses.get("2xx", 0)
        due = self.sent + self.statuses.get("in_flight_cap", 0)
        late = sum(lag > LATE_AFTER for lag in self.send_lags)

        def ms(values: list[float], q: float) -> float:
            return round(float(np.percentile(values, q)) * 1000, 2)

        return {
            "mode": "rps",
            "target_rps": self.rps,
            "due": due,
            "sent": self.sent,
            "statuses": dict(sorted(self.statuses.items())),
            "errors": due - ok,
            "achieved_rps": round(ok / self.elapsed, 2) if self.elapsed else 0.0,
            "latency_ms": {f"p{q}": ms(self.latencies, q) for q in (50, 95, 99)}
            if self.latencies else {},
            "latency_from": "scheduled send time (open loop)",
            "late_to_send": late,
            "late_after_ms": LATE_AFTER * 1000,
            "send_lag_ms": {"p50": ms(self.send_lags, 50), "p99": ms(self.send_lags, 99),
                            "max": round(max(self.send_lags) * 1000, 2)}
            if self.send_lags else {},
            "max_in_flight": max_in_flight,
            "max_in_flight_seen": self.max_in_flight_seen,
            "latencies": self.latencies,
        }  # fmt: skip


Send = Callable[[], Awaitable[int]]


async def open_loop(
    send: Send,
    rps: float,
    duration: float,
    *,
    max_in_flight: int = MAX_IN_FLIGHT,
    timeout: float = REQUEST_TIMEOUT,
    progress: Callable[[float, OpenLoopRun], None] | None = None,
) -> OpenLoopRun:
    """Call ``send()`` ``rps × duration`` times on schedule; wait for the last answers.

    ``send`` returns the HTTP status (raising OSError/ValueError when the server cannot be
    reached or answers garbage); it is the seam tests replace.
    """
    loop = asyncio.get_running_loop()
    run = OpenLoopRun(rps, duration)
    total = max(1, round(rps * duration))
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        run.send_lags.append(loop.time() - due)
        try:
            status = await asyncio.wait_for(send(), timeout)
        except TimeoutError:
            run.count("timeout")
        except (OSError, ValueError, asyncio.IncompleteReadError):
            run.count("unreachable")
        else:
            run.count(f"{status // 100}xx")
            if status // 100 == 2:
                run.latencies.append(loop.time() - due)
        finally:
            run.in_flight -= 1

    start = loop.time() + 0.01
    next_report = start
    for index in range(total):
        due = start + index / rps
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        if run.in_flight >= max_in_flight:
            run.count("in_flight_cap")
            continue
        run.in_flight += 1
        run.sent += 1
        run.max_in_flight_seen = max(run.max_in_flight_seen, run.in_flight)
        task = loop.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if progress is not None and loop.time() >= next_report:
            progress(loop.time() - start, run)
            next_report += 0.5
    if tasks:
        await asyncio.wait(set(tasks))
    run.elapsed = loop.time() - start
    return run


def request_image(kind: str = "jpeg") -> tuple[bytes, str]:
    """The README's loadgen picture: 640×480 noise as JPEG (290 KiB) or PNG (900 KiB)."""
    from .video import encode_jpeg, encode_png

    rgb = (np.random.default_rng(7).random((480, 640, 3)) * 255).astype(np.uint8)
    if kind == "png":
        return encode_png(rgb), "image/png"
    return encode_jpeg(rgb), "image/jpeg"


def run_rps(
    url: str,
    rps: float,
    duration: float,
    *,
    image: str = "jpeg",
    max_in_flight: int = MAX_IN_FLIGHT,
    quiet: bool = False,
) -> dict[str, Any]:
    """An open-loop run against ``url``; the summary (see the module docstring)."""
    body, content_type = request_image(image)
    parts = urlsplit(url)

    def report(now: float, run: OpenLoopRun) -> None:
        ok = run.latencies[-200:]
        p99 = np.percentile(ok, 99) * 1000 if ok else 0.0
        text = f"sent {run.sent}  in flight {run.in_flight}  ok {len(run.latencies)}"
        _bar(now, duration, f"{text}  p99 {p99:.0f} ms")

    connections = _Connections(parts.hostname or "127.0.0.1", parts.port or 80)

    async def main() -> OpenLoopRun:
        try:
            return await open_loop(
                lambda: connections.post("/v1/infer", body, content_type),
                rps,
                duration,
                max_in_flight=max_in_flight,
                progress=None if quiet else report,
            )
        finally:
            connections.close()

    run = asyncio.run(main())
    if not quiet:
        sys.stderr.write("\n")
    summary = run.summary(max_in_flight)
    summary["image"] = image
    summary["stale_retries"] = connections.stale_retries
    return summary


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
    late = Gauge(
        "loglog_loadgen_late_requests",
        help_of["loglog_loadgen_late_requests"],
        registry=registry,
    )
    late.set(summary.get("late_to_send", 0))
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
    image: str = "jpeg",
    max_in_flight: int = MAX_IN_FLIGHT,
) -> int:
    if rps is not None and not 0 < rps <= 10_000:
        sys.stderr.write("loglog loadgen: --rps must be between 0 and 10000\n")
        return 2
    if not 0 < max_in_flight <= 100_000:
        sys.stderr.write("loglog loadgen: --max-in-flight must be between 1 and 100000\n")
        return 2
    if streams is not None and not 0 < streams <= 1000:
        sys.stderr.write("loglog loadgen: --streams must be between 1 and 1000\n")
        return 2
    summary = (
        run_rps(url, rps, duration, image=image, max_in_flight=max_in_flight)
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
