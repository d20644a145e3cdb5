"""Fault → page, end to end, with the real servers: `loglog up` (inference, agent,
Prometheus, Alertmanager, Pushgateway, receiver) with alert timings in seconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="needs Debian's prometheus (make test installs it)",
    ),
]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _send(method: str, url: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture
def stack(tmp_path):
    ports = {
        name: free_port()
        for name in (
            "inference",
            "agent",
            "prometheus",
            "alertmanager",
            "pushgateway",
            "alert-receiver",
        )
    }
    args = [
        sys.executable,
        "-m",
        "stack.cli",
        "up",
        "--fast-alerts",
        "--demo-streams",
        "2",
        "--state-dir",
        str(tmp_path / "state"),
        "--duration",
        "400",
    ]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        _until(
            lambda: (
                "Everything is up" in (tmp_path / "up.log").read_text() or proc.poll() is not None
            ),
            120,
            "loglog up",
        )
        assert proc.poll() is None, (tmp_path / "up.log").read_text()
        yield urls
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # what Ctrl-C / SIGTERM does: stop everything
        proc.wait(60)
        log.close()
    assert proc.returncode == 0, (tmp_path / "up.log").read_text()
    assert "stopped everything" in (tmp_path / "up.log").read_text()
    for name, port in ports.items():
        with __import__("socket").socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"{name} still listens after stop"


def _pages(urls: dict[str, str], status: str) -> list[str]:
    notifications = _get(f"{urls['alert-receiver']}/alerts")
    return [
        alert["labels"]["alertname"]
        for note in notifications
        if note["receiver"] == "page"
        for alert in note["alerts"]
        if alert["status"] == status
    ]


def test_a_drilled_stall_pages_through_alertmanager_and_resolves(stack):
    """All targets up; a healthy run pages nobody; a stall drill fires InferenceStalled in
    Prometheus and its page reaches the receiver through Alertmanager; ending the drill
    resolves it."""
    prometheus = stack["prometheus"]

    def all_up():
        targets = _get(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
        return len(targets) == 5 and all(t["health"] == "up" for t in targets)

    _until(all_up, 60, "every scrape target up")
    time.sleep(25)  # a healthy stretch with the fast rules evaluating every second
    firing = [
        a["labels"]
        for a in _get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
        if a["state"] == "firing"
    ]
    assert [a for a in firing if a["severity"] == "critical"] == [], f"healthy run fired: {firing}"
    assert _pages(stack, "firing") == [], "a healthy run pages nobody"

    assert (
        _send(
            "POST",
            f"{stack['inference']}/v1/drills",
            {"stage": "postprocess", "delay_ms": 60000, "duration_s": 300},
        )
        == 201
    )
    _until(
        lambda: any(
            a["labels"]["alertname"] == "InferenceStalled" and a["state"] == "firing"
            for a in _get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
        ),
        60, "InferenceStalled firing in Prometheus",
    )  # fmt: skip
    _until(lambda: "InferenceStalled" in _pages(stack, "firing"), 30, "the page at the receiver")

    assert _send("DELETE", f"{stack['inference']}/v1/drills") == 200
    _until(lambda: "InferenceStalled" in _pages(stack, "resolved"), 60, "the resolved notification")
