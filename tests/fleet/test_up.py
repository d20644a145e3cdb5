"""`loglog up --workers 1`: its own RabbitMQ node, the jobs API, a worker and demo jobs,
scraped by the stack's Prometheus — and the Jobs dashboard's queries return data."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from alerts.config import Config
from dashboards.jobs import build
from tests.conftest import free_port, until
from tests.fleet.rabbit import available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None or not available(),
                       reason="needs Debian's prometheus and rabbitmq-server (make deps)"),
]  # fmt: skip
#: Queries that need something this short run cannot have: a finished job (jobs/h uses
#: the job histogram), a running job at the moment of the query, a firing bottleneck.
MAY_BE_EMPTY = ("fleet_job_duration_seconds", "fleet_job_eta_seconds", "fleet_job_progress_ratio",
                "inference_pipeline_bottleneck", "rabbitmq_channel_messages_redelivered_total",
                "fleet_worker_redeliveries_total")  # fmt: skip


def _query(prometheus: str, expr: str) -> dict:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_up_with_workers_runs_jobs_and_feeds_the_jobs_dashboard(tmp_path: Path) -> None:
    """Everything comes up, the demo jobs progress, Prometheus scrapes the API, the worker
    (found through http_sd) and RabbitMQ, and the dashboard's queries return data."""
    names = ("inference", "agent", "prometheus", "alertmanager", "pushgateway", "alert-receiver",
             "jobs-api", "amqp", "rabbitmq-prometheus", "rabbitmq-dist", "worker-metrics")  # fmt: skip
    ports = {name: free_port() for name in names}
    args = [sys.executable, "-m", "stack.cli", "up", "--fast-alerts", "--demo-streams", "1",
            "--workers", "1", "--state-dir", str(tmp_path / "state"), "--duration", "400"]  # fmt: skip
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        until(
            lambda: "Everything is up" in log.read_text() or proc.poll() is not None,
            300,
            "loglog up",
        )
        assert proc.poll() is None, log.read_text()
        assert "demo jobs:" in log.read_text()
        prometheus = f"http://127.0.0.1:{ports['prometheus']}"

        def scraped() -> bool:
            ups = _query(prometheus, "up")["data"]["result"]
            jobs = {r["metric"]["job"] for r in ups if r["value"][1] == "1"}
            frames = _query(prometheus, "sum(fleet_worker_frames_total)")["data"]["result"]
            return (
                {"fleet-api", "fleet-worker", "rabbitmq"} <= jobs
                and bool(frames)
                and float(frames[0]["value"][1]) > 0
            )

        until(scraped, 180, "fleet targets up and frames analysed")
        until(
            lambda: _query(
                prometheus, 'sum(rate(fleet_worker_frames_total{job="fleet-worker"}[30s]))'
            )["data"]["result"],
            60,
            "a rate",
        )
        empty, allowed_empty = [], []
        ran = 0
        for panel in build(Config())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "30s")
                expr = re.sub(r"\[1h\]", "[5m]", expr)
                answer = _query(prometheus, expr)
                assert answer["status"] == "success", (panel["title"], answer)
                ran += 1
                if not answer["data"]["result"]:
                    if any(m in expr for m in MAY_BE_EMPTY):
                        allowed_empty.append(panel["title"])
                    else:
                        empty.append(f"{panel['title']}: {expr}")
        print(f"\n{ran} Jobs dashboard queries; {ran - len(empty) - len(allowed_empty)} returned "
              f"data; empty by design in this run: {allowed_empty}")  # fmt: skip
        assert ran >= 20
        assert empty == [], "Jobs dashboard queries without data:\n" + "\n".join(empty)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(120)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "stopped everything" in log.read_text()
