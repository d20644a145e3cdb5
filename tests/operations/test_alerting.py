"""Alert rules, routing and the receiver, checked with the real promtool, amtool and
Alertmanager."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from alerts.config import Config
from alerts.generate import HERE as ALERTS
from alerts.generate import stale
from alerts.names import check_expression
from alerts.recording import recorded_names
from alerts.render import all_alerts
from stack.receiver import AlertReceiver
from tests.conftest import free_port

RULES = ALERTS / "rules" / "loglog.rules.yml"
TESTS = ALERTS / "tests" / "loglog.test.yml"
pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs Debian's prometheus (make test installs it)"
)


def _rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_committed_rules_tests_runbooks_and_routing_are_generated_from_the_source():
    """Editing a rule without regenerating fails here: the committed files are outputs."""
    assert stale() == [], "run: python -m alerts.generate"


def test_every_alert_has_severity_summary_description_and_a_runbook_that_exists():
    """Every alert pages or tickets, explains itself, and links a runbook with the three
    sections an on-call engineer needs."""
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert len(alerts) >= 25
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), (rule["alert"], key)
        runbook = ALERTS / "runbooks" / f"{rule['alert']}.md"
        assert rule["annotations"]["runbook_url"].endswith(f"/{rule['alert']}.md")
        text = runbook.read_text()
        for section in ("## What it means", "## How to confirm", "## How to fix"):
            assert section in text, (runbook, section)


def test_every_rule_names_only_declared_metrics_or_recording_rules():
    """A metric rename cannot silently break an alert: unknown names fail the build."""
    recorded = recorded_names()
    for rule in _rules():
        assert check_expression(rule["expr"], recorded) == [], rule.get("alert") or rule.get(
            "record"
        )


def test_the_names_check_catches_an_undeclared_metric():
    """The check itself can fail (so the test above means something)."""
    assert check_expression('rate(inference_stage_itemz_total{stage="infer"}[5m])') == [
        "inference_stage_itemz_total"
    ]


def test_promtool_accepts_the_rule_file():
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.slow
def test_promtool_unit_tests_pass_for_every_alert():
    """Each alert fires on its bad data (with the rendered annotations) and stays silent
    on healthy data."""
    result = subprocess.run(
        ["promtool", "test", "rules", TESTS.name], cwd=TESTS.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_case_and_a_healthy_case():
    for alert in all_alerts(Config()):
        assert any(case.fires for case in alert.cases), f"{alert.name}: no case that fires"
        assert any(not case.fires for case in alert.cases), f"{alert.name}: no healthy case"


def test_alertmanager_config_is_accepted_by_amtool():
    result = subprocess.run(
        ["amtool", "check-config", str(ALERTS / "alertmanager.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=InferenceStalled"], "page"),
        (["severity=warning", "alertname=InferenceQueueSaturated"], "ticket"),
        (["severity=info", "alertname=Something"], "null"),
        (["alertname=NoSeverity"], "ticket"),
        (
            ["severity=critical", "alertname=LoglogUpComponentCrashLoop", "component=prometheus"],
            "page",
        ),
        (["severity=warning", "alertname=LoglogUpComponentRestarted", "component=agent"], "ticket"),
    ],
)
def test_routing_pages_critical_tickets_warning_and_drops_info(labels, receiver):
    """amtool proves each route (exit 1 on a mismatch)."""
    config = str(ALERTS / "alertmanager.yml")
    result = subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={config}", f"--verify.receivers={receiver}", *labels],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def alertmanager(tmp_path):
    """A real Alertmanager with the committed routing and inhibition rules."""
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={ALERTS / 'alertmanager.yml'}", f"--storage.path={tmp_path}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def _post_alerts(url: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5)


def _states(url: str) -> dict[str, list[str]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        return {a["labels"]["alertname"]: a["status"]["inhibitedBy"] for a in json.load(response)}


def test_inference_down_inhibits_its_stage_alerts_and_agent_down_inhibits_gpu_alerts(alertmanager):
    """With the real Alertmanager: a down server silences its own stage alerts (same
    instance only) and a down agent silences its GPUs' alerts."""
    inf = {"job": "inference", "instance": "inf:8000"}
    node = {"job": "agent", "instance": "node:9400"}
    _post_alerts(alertmanager, [
        {"labels": {"alertname": "InferenceDown", "severity": "critical", "component": "inference", **inf}},
        {"labels": {"alertname": "InferenceQueueSaturated", "severity": "warning", "component": "inference", "queue": "infer", **inf}},
        {"labels": {"alertname": "InferenceStreamLagging", "severity": "warning", "component": "inference", "job": "inference", "instance": "other:8000"}},
        {"labels": {"alertname": "AgentDown", "severity": "warning", "component": "agent", **node}},
        {"labels": {"alertname": "GpuTemperatureHigh", "severity": "warning", "component": "gpu", "gpu": "0", **node}},
    ])  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = _states(alertmanager)
        if len(states) == 5 and states["InferenceQueueSaturated"] and states["GpuTemperatureHigh"]:
            break
        time.sleep(0.2)
    assert states["InferenceQueueSaturated"], "stage alert of a down server is inhibited"
    assert states["GpuTemperatureHigh"], "GPU alert of a down agent is inhibited"
    assert states["InferenceStreamLagging"] == [], "another instance is not inhibited"
    assert states["InferenceDown"] == [] and states["AgentDown"] == []


def test_supervisor_alerts_are_grouped_per_component(alertmanager):
    """Two components restarted: two groups, so the second ticket is sent after
    group_wait, not a group_interval behind the first (other alerts group by instance)."""
    up = {"job": "loglog-up", "instance": "up:9095", "severity": "warning"}
    _post_alerts(alertmanager, [
        {"labels": {"alertname": "LoglogUpComponentRestarted", "component": "agent", **up}},
        {"labels": {"alertname": "LoglogUpComponentRestarted", "component": "inference", **up}},
        {"labels": {"alertname": "InferenceQueueSaturated", "component": "inference", "queue": "a", **up}},
        {"labels": {"alertname": "InferenceQueueSaturated", "component": "inference", "queue": "b", **up}},
    ])  # fmt: skip

    def groups() -> list[tuple[str, int]]:
        with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts/groups", timeout=5) as r:
            return sorted((g["labels"]["alertname"], len(g["alerts"])) for g in json.load(r))

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(n for _, n in groups()) < 4:
        time.sleep(0.2)
    assert groups() == [
        ("InferenceQueueSaturated", 2),
        ("LoglogUpComponentRestarted", 1),
        ("LoglogUpComponentRestarted", 1),
    ]


def _webhook(alertname: str, status: str, severity: str) -> dict:
    return {
        "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status, "receiver": "page",
        "groupLabels": {"alertname": alertname}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{"status": status, "labels": {"alertname": alertname, "severity": severity},
                    "annotations": {"summary": "s", "runbook_url": "r"}, "startsAt": "2026-11-21T00:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "g", "fingerprint": "f1"}],
    }  # fmt: skip


def test_the_receiver_records_notifications_through_loglog_and_to_a_file(tmp_path):
    """Webhook payloads (version 4) are logged and appended as JSON lines; a malformed one
    gets a 400 that says what is missing."""
    from loglog.testing import capture

    out = tmp_path / "alerts.jsonl"
    with capture() as records:
        receiver = AlertReceiver("127.0.0.1", 0, out)
        receiver.start()
        try:
            for status in ("firing", "resolved"):
                body = json.dumps(_webhook("InferenceStalled", status, "critical")).encode()
                request = urllib.request.Request(
                    f"{receiver.url}/alerts/page",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                assert urllib.request.urlopen(request, timeout=5).status == 200
            bad = urllib.request.Request(f"{receiver.url}/alerts/page", data=b'{"alerts": []}')
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(bad, timeout=5)
            assert info.value.code == 400 and b"missing version" in info.value.read()
            listed = json.load(urllib.request.urlopen(f"{receiver.url}/alerts", timeout=5))
        finally:
            receiver.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert (
        [line["status"] for line in lines]
        == ["firing", "resolved"]
        == [n["status"] for n in listed]
    )
    assert (
        lines[0]["route"] == "page"
        and lines[0]["alerts"][0]["labels"]["alertname"] == "InferenceStalled"
    )
    messages = [(r.levelname, r.message) for r in records if r.logger == "alerts"]
    assert messages == [("error", "PAGE: alert firing"), ("info", "alert resolved")]


def test_up_generates_configs_that_promtool_and_amtool_accept(tmp_path):
    """The Prometheus and Alertmanager configs `loglog up` writes pass both checkers."""
    import io

    from stack.up import Options, Stack

    stack = Stack(Options(state_dir=tmp_path), out=io.StringIO())
    configs = stack.prepare()
    for argv in (
        ["promtool", "check", "config", str(configs["prometheus"])],
        ["amtool", "check-config", str(configs["alertmanager"])],
    ):
        result = subprocess.run(argv, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    prometheus = yaml.safe_load(configs["prometheus"].read_text())
    assert {job["job_name"] for job in prometheus["scrape_configs"]} == {
        "inference",
        "agent",
        "pushgateway",
        "alertmanager",
        "prometheus",
        "loglog-up",  # the supervisor's own metrics, on the receiver's /metrics
    }
    rules = Path(prometheus["rule_files"][0])
    text = rules.read_text()
    assert "file://" not in text, "runbook links must open for whoever receives the page"
    receiver = f"http://127.0.0.1:{stack.o.receiver_port}/runbooks/"
    assert receiver in text, "runbook links point at the receiver, which serves them"


def _run_up(
    *args: str, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    import os
    import sys

    return subprocess.run(
        [sys.executable, "-m", "stack.cli", "up", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_up_refuses_a_taken_port_with_the_fix(tmp_path):
    """A port already in use: exit 2 before starting anything, naming the port and the flag."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_up("--state-dir", str(tmp_path), "--prometheus-port", str(port))
    assert result.returncode == 2
    assert f"prometheus ({port})" in result.stdout and "--<component>-port" in result.stdout


def test_up_refuses_one_port_given_to_two_components(tmp_path):
    """Two components configured on one free port (a CI run got the alert receiver and
    RabbitMQ's AMQP listener on the same port, the broker "came up" through its metrics
    listener and every job then timed out): exit 2 before starting anything."""
    from tests.conftest import free_port

    port = free_port()
    result = _run_up("--state-dir", str(tmp_path), "--workers", "1", "--prometheus-port", str(port),
                     "--amqp-port", str(port))  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{port} (prometheus, amqp)" in result.stdout, result.stdout
    assert "distinct --<component>-port" in result.stdout


def test_free_port_never_hands_out_the_same_port_twice():
    """The helper every end-to-end test uses to pick ports for `loglog up`."""
    from tests.conftest import free_port

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_up_refuses_when_a_binary_is_missing_and_says_how_to_install(tmp_path):
    """Without Debian's binaries on PATH: exit 2 with the apt-get command."""
    import os
    import sys

    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").symlink_to(sys.executable)
    result = _run_up("--state-dir", str(tmp_path), env={"PATH": str(bare)})
    assert result.returncode == 2
    assert "sudo apt-get install" in result.stdout and "prometheus" in result.stdout
    assert os.environ["PATH"]  # the test process keeps its PATH


def test_a_page_names_where_it_fired_never_instance_null(tmp_path):
    """An SLO alert aggregates by job (no instance label): its console line names the job
    instead of printing ``instance=null`` (a new user's game day showed that)."""
    from loglog.testing import capture

    receiver = AlertReceiver("127.0.0.1", 0, tmp_path / "alerts.jsonl")
    by_job = _webhook("InferenceErrorsBudgetBurn", "firing", "critical")
    by_job["alerts"][0]["labels"]["job"] = "inference"
    by_instance = _webhook("InferenceDown", "firing", "critical")
    by_instance["alerts"][0]["labels"].update(job="inference", instance="127.0.0.1:8000")
    receiver.start()
    try:
        with capture() as records:
            receiver.record(by_job, "page")
            receiver.record(by_instance, "page")
    finally:
        receiver.stop()
    fields = [r.fields for r in records if r.logger == "alerts"]
    assert fields[0]["job"] == "inference" and "instance" not in fields[0]
    assert fields[1]["instance"] == "127.0.0.1:8000" and "job" not in fields[1]
