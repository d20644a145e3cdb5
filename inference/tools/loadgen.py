"""``loglog loadgen``: open-loop requests per second, or N synthetic streams.

``--rps`` sends ``POST /v1/infer`` on a fixed schedule — request *i* is due at
``start + i / rps`` whatever happened to the others — and measures each request's latency
from its **scheduled** send time, so a slow server (or a stalled client) cannot hide the
queueing it causes (coordinated omission). ``--rps 1.5x`` is a multiple of what the server
says it can serve over HTTP: its calibrated capacity less the live streams' frames
(``/v1/profile``), so a game day overloads by a stated factor on any machine.

The summary separates what users got: ``goodput_rps`` (2xx answered within ``--slo-ms``,
by default the server's latency SLO, per second of the schedule), ``latency_ms_2xx``,
``rejection_latency_ms`` (how fast 429/503 refusals came), and the count of each status
code apart from time-outs and unreachable. Requests run on one asyncio loop with as many
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
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..metrics import LOADGEN_METRICS, REQUEST_BUCKETS
from .loadclient import Connections, ControlClient

#: A request sent more than this after its due time counts as late to send.
LATE_AFTER = 0.010
#: Requests in flight at most, by default; past it a due request is counted, not sent.
MAX_IN_FLIGHT = 1000
#: A request without an answer after this long is counted as ``timeout``.
REQUEST_TIMEOUT = 30.0


def _bar(done: float, total: float, text: str) -> None:
    width = 30
    filled = int(width * min(1.0, done / total)) if total else width
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done:5.1f}/{total:.0f}s  {text}   "
    )
    sys.stderr.flush()


#: Statuses a server sheds load with (their latency is reported apart).
REJECTIONS = (429, 503)


@dataclass
class OpenLoopRun:
    """What an open-loop run saw: per-request outcomes, in seconds."""

    rps: float
    duration: float
    slo: float = 1.0  # a 2xx later than this (from its due time) is not goodput
    latencies: list[float] = field(default_factory=list)  # ok requests, from their due time
    rejections: list[float] = field(default_factory=list)  # 429/503s, from their due time
    send_lags: list[float] = field(default_factory=list)  # every sent request
    statuses: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)  # every HTTP status code answered
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

        good = sum(latency <= self.slo for latency in self.latencies)
        return {
            "mode": "rps",
            "target_rps": self.rps,
            "due": due,
            "sent": self.sent,
            "statuses": dict(sorted(self.statuses.items())),
            "status_codes": dict(sorted(self.codes.items())),
            "errors": due - ok,
            "achieved_rps": round(ok / self.elapsed, 2) if self.elapsed else 0.0,
            "goodput_rps": round(good / self.duration, 2) if self.duration else 0.0,
            "slo_ms": round(self.slo * 1000, 1),
            "within_slo": good,
            "latency_ms_2xx": {f"p{q}": ms(self.latencies, q) for q in (50, 95, 99)}
            if self.latencies else {},
            "rejected": len(self.rejections),
            "rejection_latency_ms": {"p50": ms(self.rejections, 50), "p99": ms(self.rejections, 99),
                                     "max": round(max(self.rejections) * 1000, 2)}
            if self.rejections else {},
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
    slo: float = 1.0,
    progress: Callable[[float, OpenLoopRun], None] | None = None,
) -> OpenLoopRun:
    """Call ``send()`` ``rps × duration`` times on schedule; wait for the last answers.

    ``send`` returns the HTTP status (raising OSError/ValueError when the server cannot be
    reached or answers garbage); it is the seam tests replace.
    """
    loop = asyncio.get_running_loop()
    run = OpenLoopRun(rps, duration, slo)
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
            run.codes[str(status)] = run.codes.get(str(status), 0) + 1
            if status // 100 == 2:
                run.latencies.append(loop.time() - due)
            elif status in REJECTIONS:
                run.rejections.append(loop.time() - due)
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
    from ..media.video import encode_jpeg, encode_png

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
    slo: float = 1.0,
    quiet: bool = False,
) -> dict[str, Any]:
    """An open-loop run against ``url``; the summary (see the module docstring)."""
    body, content_type = request_image(image)
    parts = urlsplit(url)

    def report(now: float, run: OpenLoopRun) -> None:
        ok = run.latencies[-200:]
        p99 = np.percentile(ok, 99) * 1000 if ok else 0.0
        text = (
            f"sent {run.sent}  in flight {run.in_flight}  ok {len(run.latencies)}  "
            f"refused {len(run.rejections)}"
        )
        _bar(now, duration, f"{text}  p99 {p99:.0f} ms")

    connections = Connections(parts.hostname or "127.0.0.1", parts.port or 80)

    async def main() -> OpenLoopRun:
        try:
            return await open_loop(
                lambda: connections.post("/v1/infer", body, content_type),
                rps,
                duration,
                max_in_flight=max_in_flight,
                slo=slo,
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
    client = ControlClient(url)
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


def parse_rps(text: str | float) -> tuple[float, bool]:
    """``"50"`` → (50.0, False): requests/s; ``"1.5x"`` → (1.5, True): a multiple of the
    server's HTTP capacity. ValueError with the accepted forms otherwise."""
    raw = str(text).strip().lower()
    relative = raw.endswith("x")
    try:
        value = float(raw[:-1] if relative else raw)
    except ValueError:
        raise ValueError(
            f"--rps {str(text)[:40]!r}: give requests/s (50) or a multiple of the server's "
            "capacity (1.5x)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"--rps {str(text)[:40]!r} must be positive")
    return value, relative


def server_rates(url: str) -> dict[str, float]:
    """What the server says it serves: ``capacity`` (items/s, model-only, at the batch it
    batches to), ``streams`` (frames/s its live streams take first), ``http`` (capacity −
    streams) and its latency ``slo`` in seconds. A server without admission control
    reports no stream load or SLO: then its streams' fps and 1 s."""
    client = ControlClient(url, timeout=10)
    try:
        status, answer = client.request("GET", "/v1/profile")
        if status != 200:
            raise OSError(f"GET /v1/profile answered {status or 'nothing'}; is the server ready?")
        profile = json.loads(answer)
        capacity = max(float(v) for v in profile["capacity_items_per_s"].values())
        admission = profile.get("admission") or {}
        if "stream_items_per_s" in admission:
            streams = float(admission["stream_items_per_s"])
        else:
            status, answer = client.request("GET", "/v1/streams")
            streams = sum(s["fps"] for s in json.loads(answer)) if status == 200 else 0.0
    finally:
        client.close()
    return {
        "capacity": capacity,
        "streams": streams,
        "http": max(0.0, capacity - streams),
        "slo": float(admission.get("latency_slo_s", 1.0)),
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
    if "goodput_rps" in summary:
        goodput = Gauge(
            "loglog_loadgen_goodput_rps", help_of["loglog_loadgen_goodput_rps"], registry=registry
        )
        goodput.set(summary["goodput_rps"])
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
    rps: str | float | None,
    streams: int | None,
    duration: float,
    source: str,
    pushgateway: str | None,
    image: str = "jpeg",
    max_in_flight: int = MAX_IN_FLIGHT,
    slo_ms: float | None = None,
) -> int:
    resolved: dict[str, Any] = {}
    if rps is not None:
        try:
            rate, relative = parse_rps(rps)
        except ValueError as exc:
            sys.stderr.write(f"loglog loadgen: {exc}\n")
            return 2
        if relative or slo_ms is None:
            try:
                rates = server_rates(url)
            except (OSError, ValueError, KeyError) as exc:
                if relative:
                    sys.stderr.write(f"loglog loadgen: cannot read the server's capacity: {exc}\n")
                    return 2
                rates = {"slo": 1.0}  # an absolute rate needs nothing from the server
            if relative:
                resolved = {"rps_factor": rate, "server": rates}
                rate = round(rate * rates["http"], 2)
                sys.stderr.write(
                    f"loglog loadgen: {rps} = {rate:g} requests/s ({resolved['rps_factor']:g} × "
                    f"({rates['capacity']:.1f} items/s capacity − {rates['streams']:.1f} "
                    "frames/s of streams))\n"
                )
            if slo_ms is None:
                slo_ms = rates["slo"] * 1000
        rps = rate
    if rps is not None and not 0 < rps <= 10_000:
        sys.stderr.write("loglog loadgen: --rps must be between 0 and 10000\n")
        return 2
    if slo_ms is not None and not 0 < slo_ms <= 3_600_000:
        sys.stderr.write("loglog loadgen: --slo-ms must be positive\n")
        return 2
    if not 0 < max_in_flight <= 100_000:
        sys.stderr.write("loglog loadgen: --max-in-flight must be between 1 and 100000\n")
        return 2
    if streams is not None and not 0 < streams <= 1000:
        sys.stderr.write("loglog loadgen: --streams must be between 1 and 1000\n")
        return 2
    summary = (
        {
            **run_rps(
                url,
                float(rps),
                duration,
                image=image,
                max_in_flight=max_in_flight,
                slo=(slo_ms or 1000.0) / 1000,
            ),
            **resolved,
        }
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
