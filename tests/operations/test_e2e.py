"""Fault → page, end to end, with the real servers: `loglog up` (inference, agent,
Prometheus, Alertmanager, Pushgateway, receiver) with its DEFAULT timings — 5 s scrape and
evaluation, Alertmanager group_wait 10 s and group_interval 1 m, production alert rules —
so the time it measures is the time a user of `make up` waits for a page."""

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


def _alerts(prometheus: str) -> list[dict]:
    return _get(f"{prometheus}/api/v1/alerts")["data"]["alerts"]


def test_a_hung_stage_pages_within_two_minutes_with_default_timings_and_resolves(loglog_up):
    """All targets up; a healthy stretch has no critical alert even pending and pages
    nobody. A postprocess drill of 60 s per item (a hang that still lets one item through
    a minute — a ≥ 95 % throughput loss) is named stalled by /v1/profile within 10 s, and
    InferenceStalled and InferenceThroughputCollapsed reach the receiver through
    Alertmanager within 2 minutes. Ending the drill resolves both within 2 minutes."""
    began = time.monotonic()
    stack = loglog_up(fast_alerts=False)
    prometheus, inference = stack["prometheus"], stack["inference"]

    def all_up():
        targets = _get(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
        return len(targets) == 6 and all(t["health"] == "up" for t in targets)  # + loglog-up

    _until(all_up, 60, "every scrape target up")

    def critical() -> list[dict]:
        return [a["labels"] for a in _alerts(prometheus) if a["labels"]["severity"] == "critical"]

    # Before the first scrape, InferenceAbsent is pending: wait for one evaluation after it.
    _until(lambda: critical() == [], 30, "no critical alert once every target is scraped")
    stall_alerts = {"InferenceStalled", "InferenceThroughputCollapsed"}
    healthy_until = time.monotonic() + 30
    while time.monotonic() < healthy_until:
        alerts = _alerts(prometheus)
        firing = [a["labels"] for a in alerts if a["state"] == "firing"]
        assert [a for a in firing if a["severity"] == "critical"] == [], f"fired: {firing}"
        # The stall rules may not even start counting (pending) on a healthy pipeline. (On
        # this loaded 2-core machine the latency SLO may legitimately go pending: frames
        # can take over 1 s when the model runs near its capacity.)
        pending = [a["labels"]["alertname"] for a in alerts if a["state"] == "pending"]
        assert stall_alerts.isdisjoint(pending), f"a healthy run looked stalled: {pending}"
        time.sleep(2)
    assert _pages(stack, "firing") == [], "a healthy run pages nobody"

    started = time.monotonic()
    drill = {"stage": "postprocess", "delay_ms": 60000, "duration_s": 300}
    assert _send("POST", f"{inference}/v1/drills", drill) == 201
    seen: dict[str, float] = {}
    wanted = {"verdict", "InferenceStalled", "InferenceThroughputCollapsed"}
    while not wanted <= seen.keys() and time.monotonic() - started < 150:
        verdict = _get(f"{inference}/v1/profile")["verdict"]
        if "verdict" not in seen and verdict["stalled"] and verdict["bottleneck"] == "postprocess":
            seen["verdict"] = time.monotonic() - started
            assert "postprocess is stalled (hung, not slow)" in verdict["reason"]
            assert "Headroom" not in verdict["advice"]
        for name in set(_pages(stack, "firing")) & wanted - seen.keys():
            seen[name] = time.monotonic() - started
        time.sleep(1)
    print(f"\ntime to verdict and to page (s): {seen}")
    assert seen.get("verdict", 99) <= 10, f"verdict late: {seen}"
    assert seen.get("InferenceStalled", 999) <= 120, f"stall page late: {seen}"
    assert seen.get("InferenceThroughputCollapsed", 999) <= 120, f"collapse page late: {seen}"

    ended = time.monotonic()
    assert _send("DELETE", f"{inference}/v1/drills") == 200
    resolved: dict[str, float] = {}
    while len(resolved) < 2 and time.monotonic() - ended < 150:
        for name in set(_pages(stack, "resolved")) & wanted - resolved.keys():
            resolved[name] = time.monotonic() - ended
        time.sleep(1)
    print(f"time to resolve (s): {resolved}; whole test {time.monotonic() - began:.0f} s")
    assert resolved.get("InferenceStalled", 999) <= 120, f"resolve late: {resolved}"
    assert resolved.get("InferenceThroughputCollapsed", 999) <= 120, f"resolve late: {resolved}"
