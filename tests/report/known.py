"""A Prometheus filled with known data (promtool backfill), for the report tests."""

from __future__ import annotations

import math
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

SCRAPE = 15  # seconds between samples, as a scrape interval would give
HISTORY = 2 * 3600 + 600  # the data starts ten minutes before a two-hour report's range
LABELS = 'job="inference"'
PERIOD = 3600  # load follows an hourly wave; a two-hour range holds exactly two periods
#: name{labels} → (mean, relative amplitude of the wave), recorded every SCRAPE. The wave is
#: sin(2π (t − end) / PERIOD): zero at the end, so the figures taken at the end are the means.
GAUGES = {
    f"job:inference_delivered_items:rate5m{{{LABELS}}}": (10.0, 0.3),
    f"job:inference_request_duration_seconds:p50{{{LABELS}}}": (0.05, 0.2),
    f"job:inference_request_duration_seconds:p95{{{LABELS}}}": (0.12, 0.2),
    f"job:inference_request_duration_seconds:p99{{{LABELS}}}": (0.3, 0.2),
    f"job:inference_request_slow:ratio_rate5m{{{LABELS}}}": (0.002, 0.0),
    f"job:inference_capacity_items:max{{{LABELS}}}": (40.0, 0.0),
    f"job:inference_pipeline_efficiency:ratio{{{LABELS}}}": (0.25, 0.3),
    f"inference_streams_active{{{LABELS}}}": (2.0, 0.0),
}


def wave(t: float, end: int) -> float:
    return math.sin(2 * math.pi * (t - end) / PERIOD)


#: name{labels} → increase per second (counters).
COUNTERS = {
    f'inference_stage_items_total{{{LABELS},stage="encode"}}': 10.0,
    f'inference_requests_total{{{LABELS},status="ok"}}': 10.0,
    f'inference_requests_total{{{LABELS},status="error"}}': 0.01,
    # Every finished request is timed; 0.02/s of them took longer than the 1 s SLO.
    f"inference_request_duration_seconds_count{{{LABELS}}}": 10.01,
    f'inference_request_duration_seconds_bucket{{{LABELS},le="1.0"}}': 9.99,
}


@dataclass(frozen=True)
class Firing:
    alertname: str
    severity: str
    start_ago: int  # seconds before the end
    minutes: int
    ongoing: bool = False  # still firing at the end (no resolving sample)


#: Alerts firing in the range: a 14-minute page, a ticket firing twice, one still firing.
FIRINGS = (
    Firing("InferenceLatencyBudgetBurn", "critical", 90 * 60, 14),
    Firing("InferenceQueueSaturated", "warning", 40 * 60, 5),
    Firing("InferenceQueueSaturated", "warning", 20 * 60, 5),
    Firing("InferenceStreamLagging", "warning", 8 * 60, 8, ongoing=True),
)


def openmetrics(end: int) -> str:
    """Every series from ``end - HISTORY`` to ``end``; firing alerts end with a NaN sample,
    the stand-in for the staleness marker Prometheus writes when an alert resolves."""
    times = range(end - HISTORY, end + 1, SCRAPE)
    out: list[str] = []
    for series, (mean, amplitude) in GAUGES.items():
        out += [f"{series} {mean * (1 + amplitude * wave(t, end)):.6g} {t}" for t in times]
    for series, per_second in COUNTERS.items():
        out += [f"{series} {per_second * (t - times[0]):.3f} {t}" for t in times]
    by_name: dict[tuple[str, str], list[str]] = {}
    for f in FIRINGS:
        labels = f'alertname="{f.alertname}",alertstate="firing",severity="{f.severity}"'
        first = end - f.start_ago
        last = end + 1 if f.ongoing else first + 60 * f.minutes
        samples = [f"ALERTS{{{labels}}} 1 {t}" for t in range(first, last, SCRAPE)]
        if not f.ongoing:
            samples.append(f"ALERTS{{{labels}}} NaN {last}")
        by_name.setdefault((f.alertname, f.severity), []).extend(samples)
        # A pending alert is not an incident: the report must leave it out.
        pending = f'alertname="{f.alertname}",alertstate="pending",severity="{f.severity}"'
        by_name.setdefault(("pending", f.alertname), []).append(
            f"ALERTS{{{pending}}} 1 {first - SCRAPE}"
        )
    for samples in by_name.values():
        out += samples
    return "\n".join(out) + "\n# EOF\n"


def items_delivered(seconds: int) -> float:
    """The integral of the delivered rate over the last ``seconds`` before the end."""
    mean, amplitude = GAUGES[f"job:inference_delivered_items:rate5m{{{LABELS}}}"]
    # ∫ sin(2πu/P) du from −seconds to 0 = P/2π · (cos(2π·seconds/P) − 1)
    wave_part = PERIOD / (2 * math.pi) * (math.cos(2 * math.pi * seconds / PERIOD) - 1)
    return mean * seconds + mean * amplitude * wave_part


def backfill(text: str, data_dir: Path) -> None:
    """Write OpenMetrics ``text`` (without ``# EOF``) into the TSDB at ``data_dir``."""
    source = data_dir.parent / f"backfill-{time.monotonic_ns()}.om"
    source.write_text(text + "# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        check=True,
        capture_output=True,
        timeout=120,
    )


@contextmanager
def prometheus(
    data_dir: Path,
    *,
    end: int | None,
    log: Path,
    sources: tuple[str, ...] = (),
    flags: tuple[str, ...] = (),
    retention: str = "30d",
) -> Iterator[str]:
    """Backfill (the known data when ``end`` is given, and each of ``sources``) and start
    Prometheus on a free port with ``flags`` added; yields its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if end is not None:
        backfill(openmetrics(end).removesuffix("# EOF\n"), data_dir)
    for text in sources:
        if text.strip():
            backfill(text, data_dir)
    config = data_dir.parent / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.retention.time={retention}",
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)  # polling a start-up, not hoping: bounded by the deadline above
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def aligned_end() -> int:
    """A recent end time on a whole minute, a minute in the past (the head block stays empty)."""
    return int(math.floor(time.time() / 60) * 60) - 60
