"""Running a real `loglog up` in a test: free ports, its children by component, the
notifications its receiver got, and the process commands the runbooks tell people to type."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.generate import HERE as ALERTS
from tests.conftest import free_port

CORE_PORTS = ("inference", "agent", "prometheus", "alertmanager", "pushgateway", "alert-receiver")
FLEET_PORTS = ("jobs-api", "amqp", "rabbitmq-prometheus", "rabbitmq-dist", "worker-metrics")
_PGREP = re.compile(r"`pgrep -af '([^']+)'`")


def wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll ``check`` until truthy; a hang guard (fails with ``what``), not a timing assert."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (read from /proc), zombies excluded."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def component_of(command: str) -> str | None:
    """Which component of `loglog up` a direct child's command line belongs to."""
    worker = re.match(r"^loglog worker .*--name (worker-\d+)", command)
    if worker:
        return worker.group(1)
    for prefix, name in (("loglog serve ", "inference"), ("loglog agent ", "agent"),
                         ("loglog jobs serve ", "jobs api"), ("prometheus-pushgateway ", "pushgateway"),
                         ("prometheus-alertmanager ", "alertmanager"), ("prometheus ", "prometheus")):  # fmt: skip
        if command.startswith(prefix):
            return name
    return "rabbitmq" if "rabbitmq-server" in command else None


@dataclass
class Up:
    """One running `loglog up` started by a test."""

    proc: subprocess.Popen[bytes]
    log: Path
    state: Path
    ports: dict[str, int]
    kills: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """Component name → pid of its main process, for the children alive now."""
        out = {}
        for pid in children_of(self.proc.pid):
            name = component_of(cmdline(pid))
            if name:
                out[name] = pid
        return out

    def notifications(self) -> list[dict[str, Any]]:
        path = self.state / "alerts.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def notified(self, alertname: str, component: str, receiver: str) -> float | None:
        """When the receiver first got ``alertname`` firing for ``component`` on ``receiver``."""
        for entry in self.notifications():
            for alert in entry["alerts"]:
                labels = alert["labels"]
                if (
                    entry["receiver"] == receiver
                    and alert["status"] == "firing"
                    and labels.get("alertname") == alertname
                    and labels.get("component", component) == component
                ):
                    return float(entry["received_at"])
        return None

    def kill(self, component: str, sig: signal.Signals = signal.SIGKILL) -> int:
        pid = self.pids()[component]
        self.kills[component] = time.time()
        os.kill(pid, sig)
        return pid

    def back(self, component: str, times: int = 1, timeout: float = 180) -> float:
        """Wait for the supervisor's ``times``-th "is back" line about ``component``;
        seconds since the last kill of it."""
        line = f"✓ {component} is back"
        wait(f"{component} back (#{times})", lambda: self.text().count(line) >= times
             or self.proc.poll() is not None, timeout)  # fmt: skip
        assert self.proc.poll() is None, self.text()[-5000:]
        return time.time() - self.kills[component]

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)


def start_up(tmp_path: Path, *args: str, fleet: bool = False, timeout: float = 300) -> Up:
    """`loglog up ARGS` on free ports with its state under ``tmp_path``; returns once it
    printed "Everything is up"."""
    names = CORE_PORTS + (FLEET_PORTS if fleet else ())
    ports = {name: free_port() for name in names}
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "stack.cli", "up", "--state-dir", str(state), *args]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path
        )
    up = Up(proc, log, state, ports)
    wait("loglog up", lambda: "Everything is up" in up.text() or proc.poll() is not None, timeout)
    assert proc.poll() is None, up.text()
    return up


def runbook_pgrep_patterns() -> set[str]:
    """Every `pgrep -af '…'` pattern the runbooks tell the on-call to type."""
    return {
        match for page in (ALERTS / "runbooks").glob("*.md") for match in _PGREP.findall(page.read_text())
    }  # fmt: skip


def pgrep(pattern: str) -> set[int]:
    result = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return {int(pid) for pid in result.stdout.split()}


def check_runbook_commands(up: Up, expected: dict[str, set[int]]) -> None:
    """Each runbook pattern finds exactly the expected processes of this stack (other
    engineers' stacks may run on the machine: only this stack's processes are compared)."""
    ours = {up.proc.pid, *up.pids().values()}
    for pattern, pids in expected.items():
        found = pgrep(pattern) & ours
        assert found == pids, (pattern, found, pids, {p: cmdline(p) for p in ours})
