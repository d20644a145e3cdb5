"""``loglog profile``: a table per stage and a verdict in plain words, with advice.

Reads either a server's ``/metrics`` twice (``--interval`` apart) or a Prometheus server
(rates over the last minute, summed across replicas), and feeds the same
:func:`inference.analysis.bottleneck.verdict` the server's own monitor uses — with the same inputs
to its advice: each stage's drilled share (``inference_stage_drilled_seconds_total``), the
engine's device (``inference_model_info``) and the host's CPU busy share, from the node
agent's ``host_cpu_seconds_total`` (``--agent URL``, scraped with the server) or from
Prometheus; without either it is unknown, and the advice says so.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ..analysis.bottleneck import SATURATION, StageWindow, Verdict, verdict
from ..analysis.shared import fuse
from ..types import LAST_STAGE, SOURCE_STAGE, SPECS, STAGES

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_url(url: str) -> str:
    """``url``'s /metrics page: the base URL (``http://host:9400``) or the page itself
    (``http://host:9400/metrics``, as ``loglog up`` prints the agent's) both name it."""
    url = url.rstrip("/")
    return url if url.endswith("/metrics") else url + "/metrics"


def scrape(url: str, timeout: float = 10.0) -> Samples:
    """Every sample of a /metrics page (``url`` as :func:`metrics_url` reads it), keyed by
    (name, sorted labels)."""
    with urllib.request.urlopen(metrics_url(url), timeout=timeout) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and all((k, v) in sample_labels for k, v in labels.items())
    )


def _buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    found: dict[float, float] = {}
    for (sample_name, sample_labels), value in samples.items():
        if sample_name != name + "_bucket":
            continue
        labeled = dict(sample_labels)
        if all(labeled.get(k) == v for k, v in labels.items()):
            bound = float(labeled["le"])
            found[bound] = found.get(bound, 0.0) + value
    return sorted(found.items())


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) pairs."""
    pairs = list(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _bucket_delta(
    first: Samples, second: Samples, name: str, **labels: str
) -> list[tuple[float, float]]:
    before = dict(_buckets(first, name, **labels))
    return [
        (bound, count - before.get(bound, 0.0)) for bound, count in _buckets(second, name, **labels)
    ]


def cpu_busy(first: Samples, second: Samples) -> float | None:
    """The host's CPU busy share between two scrapes of the node agent (None without its
    ``host_cpu_seconds_total``): 1 − (idle + iowait) ÷ all, as the server's monitor reads
    /proc/stat."""

    def by_mode(samples: Samples) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, labels), value in samples.items():
            if name == "host_cpu_seconds_total":
                mode = dict(labels).get("mode", "")
                out[mode] = out.get(mode, 0.0) + value
        return out

    before, after = by_mode(first), by_mode(second)
    total = sum(after.values()) - sum(before.values())
    if not before or not after or total <= 0:
        return None
    idle = sum(after.get(m, 0.0) - before.get(m, 0.0) for m in ("idle", "iowait"))
    return min(1.0, max(0.0, 1.0 - idle / total))


def gpu_engine(devices: Iterable[str]) -> bool | None:
    """Whether the engine runs on a GPU, from ``inference_model_info``'s device labels
    (None: no model reported)."""
    found = set(devices)
    return None if not found else any(device != "cpu" for device in found)


def from_scrapes(
    first: Samples,
    second: Samples,
    elapsed: float,
    agent: tuple[Samples, Samples] | None = None,
) -> dict[str, Any]:
    """Stage rows and verdict inputs from two scrapes ``elapsed`` seconds apart (and two
    scrapes of the node agent on the server's host, taken with them)."""

    def delta(name: str, **labels: str) -> float:
        return max(0.0, _value(second, name, **labels) - _value(first, name, **labels))

    def latest(name: str) -> list[float]:
        return [value for (sample, _), value in second.items() if sample == name]

    rows = []
    for stage in STAGES:
        durations = _bucket_delta(first, second, "inference_stage_duration_seconds", stage=stage)
        waits = _bucket_delta(first, second, "inference_queue_wait_seconds", queue=stage)
        workers = int(_value(second, "inference_stage_workers", stage=stage))
        capacity = _value(second, "inference_queue_capacity", queue=stage)
        depth_before = _value(first, "inference_queue_depth", queue=stage)
        depth_after = _value(second, "inference_queue_depth", queue=stage)
        busy = delta("inference_stage_busy_seconds_total", stage=stage)
        # The stage's normal speed over its whole life: a hung stage finishes nothing
        # in the interval, yet its usual duration is still known.
        lifetime = _buckets(second, "inference_stage_duration_seconds", stage=stage)
        drilled = delta("inference_stage_drilled_seconds_total", stage=stage)
        rows.append(
            {
                "stage": stage,
                "items_per_s": delta("inference_stage_items_total", stage=stage) / elapsed,
                "drilled_share": min(1.0, drilled / busy) if busy > 0 else 0.0,
                "p50_s": quantile(0.5, durations),
                "p99_s": quantile(0.99, durations),
                "normal_p50_s": quantile(0.5, lifetime),
                "normal_p99_s": quantile(0.99, lifetime),
                "inflight": int(_value(second, "inference_stage_inflight", stage=stage)),
                "oldest_inflight_s": _value(
                    second, "inference_stage_oldest_inflight_seconds", stage=stage
                ),
                "utilization": busy / elapsed / workers if workers else 0.0,
                "workers": workers,
                "queue_depth": (depth_before + depth_after) / 2 if capacity else None,
                "queue_capacity": capacity or None,
                "queue_growth": (depth_after - depth_before) / elapsed,
                "wait_p99_s": quantile(0.99, waits) if capacity else None,
            }
        )
    efficiency = latest("inference_engine_efficiency_ratio")
    devices = [
        dict(labels).get("device", "")
        for (name, labels), value in second.items()
        if name == "inference_model_info" and value
    ]
    return {
        "rows": rows,
        "delivered_per_s": delta("inference_stage_items_total", stage=LAST_STAGE) / elapsed,
        "capacity_per_s": max(latest("inference_model_capacity_items_per_second"), default=0.0),
        "engine_efficiency": sum(efficiency) / len(efficiency) if efficiency else None,
        "cpu_busy": cpu_busy(*agent) if agent else None,
        "gpu": gpu_engine(devices),
        "decode_processes": sum(latest("inference_decode_processes")),
    }


def from_prometheus(base: str, window: str = "1m") -> dict[str, Any]:
    """The same inputs from PromQL (rates over ``window``, summed across replicas)."""

    def query(expr: str, by: str | None = None) -> dict[str, float]:
        url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            data = json.load(response)
        if not isinstance(data, dict) or data.get("status") != "success":
            raise RuntimeError(f"Prometheus query failed: {data}")
        out = {}
        try:
            for result in data["data"]["result"]:
                labels = result["metric"]
                key = labels.get(by, "") if by else labels.get("stage") or labels.get("queue")
                key = key or ""
                value = float(result["value"][1])
                out[key] = value if math.isfinite(value) else 0.0
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            # JSON, but not Prometheus' shape: a proxy, or another server on that port.
            raise RuntimeError(
                f"the answer to {expr!r} is not a Prometheus query result "
                f"({type(exc).__name__}: {exc}): is --prometheus the Prometheus server?"
            ) from exc
        return out

    def quantile_of(q: float, metric: str, by: str, over: str = window) -> dict[str, float]:
        rates = f"sum by (le, {by}) (rate({metric}_bucket[{over}]))"
        return query(f"histogram_quantile({q}, {rates})")

    items = query(f"sum by (stage) (rate(inference_stage_items_total[{window}]))")
    inflight = query("sum by (stage) (inference_stage_inflight)")
    oldest = query("max by (stage) (inference_stage_oldest_inflight_seconds)")
    normal50 = quantile_of(0.5, "inference_stage_duration_seconds", "stage", "1h")
    normal99 = quantile_of(0.99, "inference_stage_duration_seconds", "stage", "1h")
    busy = query(f"sum by (stage) (rate(inference_stage_busy_seconds_total[{window}]))")
    workers = query("sum by (stage) (inference_stage_workers)")
    p50 = quantile_of(0.5, "inference_stage_duration_seconds", "stage")
    p99 = quantile_of(0.99, "inference_stage_duration_seconds", "stage")
    depth = query("sum by (queue) (inference_queue_depth)")
    capacity = query("sum by (queue) (inference_queue_capacity)")
    growth = query(f"sum by (queue) (deriv(inference_queue_depth[{window}]))")
    wait = quantile_of(0.99, "inference_queue_wait_seconds", "queue")
    model_capacity = query("max(inference_model_capacity_items_per_second)")
    efficiency = query("avg(inference_engine_efficiency_ratio)")
    drilled = query(f"sum by (stage) (rate(inference_stage_drilled_seconds_total[{window}]))")
    devices = query("count by (device) (inference_model_info)", by="device")
    # The busiest host's CPUs (contention anywhere is worth naming), as the monitor reads
    # /proc/stat: 1 − (idle + iowait) ÷ all.
    idle = f'sum by (instance) (rate(host_cpu_seconds_total{{mode=~"idle|iowait"}}[{window}]))'
    every = f"sum by (instance) (rate(host_cpu_seconds_total[{window}]))"
    cpu = query(f"max(1 - {idle} / {every})")
    processes = query("sum(inference_decode_processes)")
    rows = []
    for stage in STAGES:
        count = int(workers.get(stage, 0))
        spent = busy.get(stage, 0.0)
        rows.append(
            {
                "stage": stage,
                "items_per_s": items.get(stage, 0.0),
                "drilled_share": min(1.0, drilled.get(stage, 0.0) / spent) if spent > 0 else 0.0,
                "p50_s": p50.get(stage),
                "p99_s": p99.get(stage),
                "normal_p50_s": normal50.get(stage),
                "normal_p99_s": normal99.get(stage),
                "inflight": int(inflight.get(stage, 0)),
                "oldest_inflight_s": oldest.get(stage, 0.0),
                "utilization": busy.get(stage, 0.0) / count if count else 0.0,
                "workers": count,
                "queue_depth": depth.get(stage),
                "queue_capacity": capacity.get(stage),
                "queue_growth": growth.get(stage, 0.0),
                "wait_p99_s": wait.get(stage),
            }
        )
    return {
        "rows": rows,
        "delivered_per_s": items.get(LAST_STAGE, 0.0),
        "capacity_per_s": next(iter(model_capacity.values()), 0.0),
        "engine_efficiency": next(iter(efficiency.values()), None),
        "cpu_busy": next(iter(cpu.values()), None),
        "gpu": gpu_engine(devices),
        "decode_processes": next(iter(processes.values()), 0.0),
    }


def _fill(row: dict[str, Any]) -> float | None:
    """The input queue's fill; None where unknown — and for the stage sources run
    (decode) when its (HTTP) queue is empty, since streams queue frames in mailboxes
    that are not measured."""
    spec = SPECS.get(row["stage"])
    if not row["queue_capacity"] or (spec is not None and spec.sourced and not row["queue_depth"]):
        return None
    return float(row["queue_depth"] / row["queue_capacity"])


def judge(data: dict[str, Any]) -> Verdict:
    windows = [
        StageWindow(
            row["stage"],
            row["items_per_s"],
            min(1.0, row["utilization"]),
            row["workers"],
            _fill(row),
            row["queue_growth"],
            inflight=row["inflight"],
            oldest_inflight_s=row["oldest_inflight_s"],
            p50_s=row["normal_p50_s"] or None,
            p99_s=row["normal_p99_s"] or None,
            drilled_share=row.get("drilled_share", 0.0),
        )
        for row in data["rows"]
    ]
    if data.get("decode_processes"):
        # Decode and preprocess share each stream's thread in a decode process.
        busy = {row["stage"]: row["utilization"] * row["workers"] for row in data["rows"]}
        streams = next(row["workers"] for row in data["rows"] if row["stage"] == SOURCE_STAGE)
        windows = fuse(windows, busy, 1.0, streams, SATURATION)
    return verdict(
        windows,
        delivered_per_s=data["delivered_per_s"],
        capacity_per_s=data["capacity_per_s"],
        engine_efficiency=data["engine_efficiency"],
        cpu_busy=data.get("cpu_busy"),
        gpu=data.get("gpu"),
        decode_processes=int(data.get("decode_processes") or 0),
    )


def render(data: dict[str, Any], result: Verdict) -> str:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value * 1000:.2f}"

    lines = [
        f"{'stage':<12}{'items/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'util':>7}{'workers':>9}"
        f"{'queue':>12}{'wait p99 ms':>13}{'in flight':>11}{'oldest s':>10}",
    ]
    for row in data["rows"]:
        queue = (
            "—"
            if row["queue_capacity"] is None
            else f"{row['queue_depth']:.0f}/{row['queue_capacity']:.0f}"
        )
        lines.append(
            f"{row['stage']:<12}{row['items_per_s']:>9.1f}{ms(row['p50_s']):>9}{ms(row['p99_s']):>9}"
            f"{row['utilization']:>7.0%}{row['workers']:>9}{queue:>12}{ms(row['wait_p99_s']):>13}"
            f"{row['inflight']:>11}{row['oldest_inflight_s']:>10.1f}"
        )
    state = " (STALLED)" if result.stalled else ""
    lines += [
        "",
        f"Bottleneck: {result.bottleneck}{state}",
        result.reason,
        f"Advice: {result.advice}",
    ]
    if result.engine_efficiency is not None:
        lines.append(
            f"Engine efficiency (model speed vs its calibration): {result.engine_efficiency:.0%}"
        )
    cpu = data.get("cpu_busy")
    lines.append(
        "Host CPUs: unknown (pass --agent URL, or --prometheus URL)"
        if cpu is None
        else f"Host CPUs: {cpu:.0%} busy"
    )
    return "\n".join(lines)


def _unreachable(exc: BaseException) -> bool:
    """True when no server answered (refused, timed out, no such host), not when one
    answered with an error (an HTTP status, or something that is not metrics)."""
    if isinstance(exc, urllib.error.HTTPError):
        return False
    if isinstance(exc, urllib.error.URLError):
        return isinstance(exc.reason, OSError | str)
    return isinstance(exc, ConnectionError | TimeoutError)


def _agent(url: str | None) -> Samples | None:
    """The node agent's samples, or None (no --agent, or it does not answer: then the CPU
    load is unknown, which the advice says — not a reason to fail the profile)."""
    if not url:
        return None
    try:
        return scrape(url)
    except (OSError, ValueError) as exc:
        # Said, not silent: "Host CPUs: unknown" alone reads as if --agent were missing.
        sys.stderr.write(f"loglog profile: --agent {url}: cannot read {metrics_url(url)} "
                         f"({exc}); the host's CPU load is unknown\n")  # fmt: skip
        return None


def main(
    *,
    url: str,
    prometheus: str | None,
    interval: float,
    as_json: bool,
    window: str = "1m",
    agent: str | None = None,
) -> int:
    if not prometheus and not (0 < interval < math.inf):
        # Rates are deltas over the interval: 0 (or nan, negative, inf) has no rate.
        sys.stderr.write(f"loglog profile: --interval {interval}: use a positive number of "
                         "seconds between the two scrapes, e.g. --interval 5\n")  # fmt: skip
        return 2
    try:
        if prometheus:
            data = from_prometheus(prometheus, window)
        else:
            first = scrape(url)
            host = _agent(agent)
            started = time.monotonic()
            time.sleep(interval)
            second = scrape(url)
            later = _agent(agent) if host is not None else None
            pair = (host, later) if host is not None and later is not None else None
            data = from_scrapes(first, second, time.monotonic() - started, pair)
    except (OSError, ValueError, RuntimeError) as exc:
        where = prometheus or url
        sys.stderr.write(f"loglog profile: cannot read metrics from {where}: {exc}\n")
        if _unreachable(exc):
            sys.stderr.write(
                "  Nothing answers there: start it (`loglog up`) or pass --prometheus URL.\n"
                if prometheus
                else "  Nothing answers there: start it (`loglog up` / `loglog serve`) "
                "or pass --url.\n"
            )
        return 2
    result = judge(data)
    if as_json:
        print(json.dumps({**data, "verdict": result.as_dict()}, indent=2))
    else:
        print(render(data, result))
    return 0
