"""`loglog up --workers 2`: its own RabbitMQ node, the jobs API, two workers and demo jobs,
scraped by the stack's Prometheus. A busy worker SIGKILLed at ~30 % of a 7,200-frame job is
restarted by the supervisor and the job finishes with every frame exactly once, no manual
step; the restart is ticketed with the default timings; a minute after the restart the
job's ETA is within 2× of the time it really took (the job is long enough to run well past
that minute). Then the Jobs dashboard's queries return data. One stack for both: it takes
a minute to start on a shared 2-core machine."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from argparse import Namespace
from pathlib import Path

import pytest
import redis

from alerts.config import Config
from dashboards.jobs import build
from stack.fleet_up import store_prefix
from tests.fleet.harness import metric, result_frames
from tests.fleet.rabbit import available
from tests.operations.stack_harness import check_runbook_commands, start_up, wait

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("prometheus") is None or not available(),
                       reason="needs Debian's prometheus and rabbitmq-server (make deps)"),
]  # fmt: skip
#: Queries that need something this short run cannot have: a running job at the moment
#: of the query, a firing bottleneck.
MAY_BE_EMPTY = ("fleet_job_eta_seconds", "fleet_job_progress_ratio",
                "inference_pipeline_bottleneck")  # fmt: skip
FRAMES = 7200
JOB = f"synthetic://160x120@10?seconds={FRAMES // 10}"  # 72 segments of 100 frames
STORE = "redis://127.0.0.1:6379/0"  # loglog up's default store


def _query(prometheus: str, expr: str) -> dict:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _busy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return metric(r.read().decode(), "fleet_worker_busy") == 1
    except OSError:
        return False


def test_up_with_workers_survives_a_killed_worker_and_feeds_the_jobs_dashboard(
    tmp_path: Path,
) -> None:
    store = redis.Redis.from_url(STORE)
    prefix = store_prefix(Namespace(store_prefix=None), tmp_path / "state")
    up = start_up(tmp_path, "--demo-streams", "1", "--workers", "2", "--duration", "850",
                  "--store", STORE, fleet=True)  # fmt: skip
    try:
        text = up.text()
        assert "demo jobs:" in text
        assert f"under prefix {prefix}; job files only from {tmp_path}" in text
        pids = up.pids()
        check_runbook_commands(up, {"^loglog worker": {pids["worker-0"], pids["worker-1"]},
                                    "^loglog serve": {pids["inference"]}})  # fmt: skip
        api = f"http://127.0.0.1:{up.ports['jobs-api']}"
        status, refused = _call(f"{api}/v1/jobs", {"source": "/etc/hostname"})
        assert status == 422 and f"source_dirs ({tmp_path})" in refused["error"], refused

        status, job = _call(f"{api}/v1/jobs", {"source": JOB, "priority": 9})
        assert status == 202 and job["total_frames"] == FRAMES, job
        job_url = f"{api}/v1/jobs/{job['id']}"
        worker_ports = {f"worker-{i}": up.ports["worker-metrics"] + i for i in range(2)}

        def busy_at_30_percent() -> str | None:
            state = _call(job_url)[1]
            if state["progress"] < 0.3:
                return None
            return next((w for w in state["workers"] if _busy(worker_ports[w])), None)

        victim = wait("a busy worker at 30 %", busy_at_30_percent, 300, every=0.1)
        done_at_kill = _call(job_url)[1]["frames_done"]
        other = next(w for w in worker_ports if w != victim)
        other_pid = up.pids()[other]
        up.kill(victim)
        back: float | None = None  # seconds from the kill to the supervisor's "is back"
        samples = []  # (s after the kill, ETA seconds, ETA status, wall time, frames done)
        while True:
            state = _call(job_url)[1]
            now = time.time()
            if back is None and f"✓ {victim} is back" in up.text():
                back = now - up.kills[victim]
            if state["state"] in ("succeeded", "failed", "cancelled"):
                break
            samples.append((now - up.kills[victim], state["eta_seconds"], state["eta_status"], now,
                            state["frames_done"]))  # fmt: skip
            assert now - up.kills[victim] < 600, f"job not done: {state}"
            time.sleep(1)
        finished = time.time()
        back = back if back is not None else up.back(victim)
        assert state["state"] == "succeeded", state
        assert result_frames(state["result"]) == list(range(FRAMES)), "every frame exactly once"
        assert state["frames_done"] == FRAMES and state["redeliveries"] >= 1, state
        assert up.pids()[other] == other_pid, "the other worker was never restarted"
        assert up.proc.poll() is None
        # The job lives under this stack's own prefix (two stacks on one Redis don't mix).
        assert store.exists(f"{prefix}:job:{job['id']}") == 1
        ticket = wait(
            f"the ticket for {victim}'s restart",
            lambda: up.notified("LoglogUpComponentRestarted", victim, "ticket"),
            180,
        )
        # (s after the kill, ETA, real seconds left, status)
        etas = [(t, eta, finished - at, status) for t, eta, status, at, _ in samples]
        # The same samples read with the ETA before issue 20 (the job's average rate since
        # it started), for the figures: an anchor from the same run.
        averages = [(FRAMES - done) * (at - state["started"]) / done / (finished - at)
                    for t, _, _, at, done in samples if t >= back + 60 and done and at < finished]  # fmt: skip
        shown = [f"{t:.0f}: {'-' if eta is None else f'{eta:.0f}'}/{real:.0f}"
                 + ("" if status == "known" else f" {status}")
                 for t, eta, real, status in etas[::10]]  # fmt: skip
        minute = [e for e in etas if e[0] >= back + 60]
        ratios = [eta / real for _, eta, real, _ in minute if eta is not None and real > 0]
        print(f"\n{victim} killed at {done_at_kill}/{FRAMES} frames: back after {back:.1f} s, "
              f"ticket after {ticket - up.kills[victim]:.1f} s; job done "
              f"{finished - up.kills[victim]:.0f} s after the kill. ETA/real every 10 s "
              f"(s after the kill: ETA/real): {', '.join(shown)}; from a minute after the "
              f"restart ({len(minute)} samples) ETA÷real "
              + (f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "-")
              + "; the average since the start would have read "
              + (f"{min(averages):.2f}–{max(averages):.2f}" if averages else "-"))  # fmt: skip
        # One worker kept analysing: the job was never without frames, never "stalled".
        assert all(status != "stalled" for *_, status in etas), shown
        for t, eta, real, _ in etas:
            if t >= back and eta is not None:  # a hang guard against 796 s for 66 s left
                assert eta <= 4 * real + 30, f"ETA {eta:.0f} s for {real:.0f} s left"
        for t, eta, real, status in minute:
            # Generous (a shared 2-core machine, the last segments of a job): within 2× of
            # the real remaining time, ±10 s, a minute after the restart.
            assert status == "known" and eta is not None, (t, status)
            assert real / 2 - 10 <= eta <= 2 * real + 10, (
                f"{t:.0f} s: ETA {eta:.0f}, real {real:.0f}"
            )

        prometheus = f"http://127.0.0.1:{up.ports['prometheus']}"
        assert (up.state / "prometheus-fleet").is_dir(), "a TSDB of the fleet mode's own"
        assert not (up.state / "prometheus").exists()

        def scraped() -> bool:
            ups = _query(prometheus, "up")["data"]["result"]
            jobs = {r["metric"]["job"] for r in ups if r["value"][1] == "1"}
            frames = _query(prometheus, "sum(fleet_worker_frames_total)")["data"]["result"]
            return (
                {"fleet-api", "fleet-worker", "rabbitmq", "loglog-up"} <= jobs
                and bool(frames)
                and float(frames[0]["value"][1]) > 0
            )

        wait("fleet targets up and frames analysed", scraped, 180)
        wait(
            "a rate",
            lambda: _query(
                prometheus, 'sum(rate(fleet_worker_frames_total{job="fleet-worker"}[1m]))'
            )["data"]["result"],
            90,
        )
        empty, allowed_empty = [], []
        ran = 0
        for panel in build(Config())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "1m")
                expr = re.sub(r"\[1h\]", "[5m]", expr)
                answer = _query(prometheus, expr)
                assert answer["status"] == "success", (panel["title"], answer)
                ran += 1
                if not answer["data"]["result"]:
                    if any(m in expr for m in MAY_BE_EMPTY):
                        allowed_empty.append(panel["title"])
                    else:
                        empty.append(f"{panel['title']}: {expr}")
        print(f"{ran} Jobs dashboard queries; {ran - len(empty) - len(allowed_empty)} returned "
              f"data; empty by design in this run: {allowed_empty}")  # fmt: skip
        assert ran >= 20
        assert empty == [], "Jobs dashboard queries without data:\n" + "\n".join(empty)
    finally:
        code = up.stop()
        keys = list(store.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            store.delete(*keys)
    assert code == 0, up.text()[-3000:]
    assert "stopped everything" in up.text()
