"""Fault → page, end to end, with the real servers: `loglog up` (inference, agent,
Prometheus, Alertmanager, Pushgateway, receiver) with alert timings in seconds."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest

from tests.conftest import until as _until

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


def _pages(urls: dict[str, str], status: str) -> list[str]:
    notifications = _get(f"{urls['alert-receiver']}/alerts")
    return [
        alert["labels"]["alertname"]
        for note in notifications
        if note["receiver"] == "page"
        for alert in note["alerts"]
        if alert["status"] == status
    ]


def test_a_drilled_stall_pages_through_alertmanager_and_resolves(loglog_up):
    """All targets up; a healthy run pages nobody; a stall drill fires InferenceStalled in
    Prometheus and its page reaches the receiver through Alertmanager; ending the drill
    resolves it."""
    stack = loglog_up()
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
