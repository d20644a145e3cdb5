"""Benchmark: the job fleet on this machine — 1, 2 and 4 worker processes on one backlog.

Not a test. For each fleet size, in one run against a private RabbitMQ node and the local
Redis: the same backlog (``--jobs`` synthetic jobs of ``--seconds`` video at 10 fps, 2 s
segments) is submitted at once and drained. Reported per size: jobs/h and frames/s over
the drain, the speed-up over one worker (the anchor: same run, same backlog), and the ETA
error — the API's fleet ETA (backlog ÷ fleet throughput, read once the first segments are
done) against the real remaining drain time. Then the broker and API overhead per
segment: one worker drains a job of one-frame segments; the time per segment, its one
frame included, is an upper bound on what a segment costs beyond its frames.

Usage: ``python -m bench.fleet_bench [--quick] [--sizes 1,2,4] [--extra "pin_engine: false"]``;
writes ``bench/results/fleet.json``. Each worker is pinned to one engine thread so the sizes
compare like for like; each worker's engine claims a core of its own host-wide
(inference/feed/claims.py) — ``--extra`` adds config lines, e.g. ``pin_engine: false`` to
compare with the engines left to the OS.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fleet.store import JobStore
from tests.fleet.harness import Fleet, metric, wait_for
from tests.fleet.rabbit import PrivateRabbit

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = "calibration_seconds: 0.2\nmax_batch: 4\nengine_threads: 1\nmonitor_interval_s: 1\n"


def drain(rabbit: PrivateRabbit, store: JobStore, tmp: Path, workers: int, jobs: int,
          seconds: int, segment_seconds: float = 2.0,
          extra: str = "") -> dict[str, Any]:  # fmt: skip
    fleet = Fleet(rabbit.url, store, tmp, segment_seconds=segment_seconds)
    fleet.config.write_text(CONFIG + extra)
    try:
        names = [f"w{workers}-{i}" for i in range(workers)]
        for name in names:
            fleet.start_worker(name)
        for name in names:
            fleet.wait_worker(name, timeout=300)
        with fleet.api() as api:
            started = time.monotonic()
            source = f"synthetic://64x48@10?seconds={seconds}"
            ids = [api.post("/v1/jobs", json={"source": source}).json()["id"] for _ in range(jobs)]
            frames = jobs * seconds * 10

            def progressed() -> tuple[float, float] | None:
                text = api.get("/metrics").text
                eta = metric(text, "fleet_drain_eta_seconds")
                throughput = metric(text, "fleet_throughput_frames_per_second") or 0
                backlog = metric(text, "fleet_backlog_frames") or 0
                # Read the ETA once a quarter is done: throughput is measured by then.
                if eta is not None and throughput > 0 and backlog <= 0.75 * frames:
                    return eta, time.monotonic()
                return None

            eta, eta_at = wait_for("a measured ETA", progressed, timeout=1800, every=0.5)
            for job in ids:
                fleet.wait_state(api, job, ("succeeded", "failed"), timeout=3600)
            ended = time.monotonic()
            states = [api.get(f"/v1/jobs/{job}").json()["state"] for job in ids]
        wall = ended - started
        actual_left = ended - eta_at
        return {
            "workers": workers, "jobs": jobs, "frames": frames, "wall_s": round(wall, 2),
            "jobs_per_hour": round(jobs / wall * 3600, 1), "frames_per_s": round(frames / wall, 2),
            "eta_estimate_s": round(eta, 1), "eta_actual_s": round(actual_left, 1),
            "eta_error_pct": round(100 * (eta - actual_left) / max(actual_left, 1e-9), 1),
            "all_succeeded": all(s == "succeeded" for s in states),
        }  # fmt: skip
    finally:
        fleet.close()


def overhead(rabbit: PrivateRabbit, store: JobStore, tmp: Path, segments: int,
             frame_s: float) -> dict[str, Any]:  # fmt: skip
    """One worker, a job of one-frame segments: per-segment cost beyond its frame."""
    fleet = Fleet(rabbit.url, store, tmp, segment_seconds=0.1)  # 1 frame at 10 fps
    fleet.config.write_text(CONFIG)
    try:
        fleet.start_worker("ovh")
        fleet.wait_worker("ovh", timeout=300)
        with fleet.api() as api:
            started = time.monotonic()
            job = api.post(
                "/v1/jobs", json={"source": f"synthetic://64x48@10?seconds={segments / 10:g}"}
            ).json()["id"]
            submitted = time.monotonic()
            fleet.wait_state(
                api,
                job,
                ("succeeded", "failed"),
                timeout=1800,
            )
            wall = time.monotonic() - started
        per_segment = wall / segments
        return {"segments": segments, "submit_ms": round(1000 * (submitted - started), 1),
                "per_segment_ms": round(1000 * per_segment, 1),
                "frame_ms_in_drain_run": round(1000 * frame_s, 1)}  # fmt: skip
    finally:
        fleet.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller backlog")
    parser.add_argument("--sizes", default="1,2,4")
    parser.add_argument("--extra", default="", help="config lines added for every worker")
    parser.add_argument("--no-overhead", action="store_true", help="skip the overhead run")
    args = parser.parse_args(argv)
    extra = args.extra.replace("\\n", "\n") + ("\n" if args.extra else "")
    jobs, seconds, segs = (4, 12, 60) if args.quick else (8, 20, 150)
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    rabbit = PrivateRabbit(root / "rabbit")
    store = JobStore.connect(
        "redis://127.0.0.1:6379/0", prefix=f"loglog-bench:{uuid.uuid4().hex[:8]}"
    )
    rows: list[dict[str, Any]] = []
    try:
        print(f"rabbitmq node up in {rabbit.start():.1f} s")
        for size in [int(s) for s in args.sizes.split(",")]:
            rows.append(drain(rabbit, store, root / f"n{size}", size, jobs, seconds, extra=extra))
            print(rows[-1], flush=True)
        base = rows[0]["frames_per_s"]
        for row in rows:
            row["speedup"] = round(row["frames_per_s"] / base, 2)
        ovh = (
            {"segments": 0, "submit_ms": None, "per_segment_ms": None,
             "frame_ms_in_drain_run": None}
            if args.no_overhead
            else overhead(rabbit, store, root / "overhead", segs, 1 / base)
        )  # fmt: skip
    finally:
        rabbit.close()
        keys = list(store.client.scan_iter(f"{store.prefix}:*", count=1000))
        if keys:
            store.client.delete(*keys)
    day = time.strftime("%Y-%m-%d")
    print(f"\nfleet bench, {day}: {jobs} jobs × {seconds * 10} frames, 2 s segments")
    columns = ("workers", "wall_s", "jobs_per_hour", "frames_per_s", "speedup",
               "eta_estimate_s", "eta_actual_s", "eta_error_pct")  # fmt: skip
    print(" ".join(f"{c:>14}" for c in columns))
    for r in rows:
        print(" ".join(f"{r[c]!s:>14}" for c in columns))
    print(f"config extra: {args.extra!r}")
    print(
        f"\nper segment (1 worker, {ovh['segments']} one-frame segments): "
        f"{ovh['per_segment_ms']} ms end to end, its one frame included (an upper bound on the "
        f"broker + store + results overhead; a frame took {ovh['frame_ms_in_drain_run']} ms "
        f"in the 1-worker drain); submitting the job took {ovh['submit_ms']} ms"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(
        json.dumps({"extra": args.extra, "drain": rows, "overhead": ovh}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
