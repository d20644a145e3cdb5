"""`loglog up` ends cleanly however it is ended: SIGHUP (a closed terminal) stops every
child and frees every port; even SIGKILL leaves no child behind. The URLs it prints answer,
its status lines carry the time, and everything it writes is under --state-dir."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="needs Debian's prometheus (make test installs it)",
    ),
]
_NAMES = ("inference", "agent", "prometheus", "alertmanager", "pushgateway", "alert-receiver")


def _descendants(pid: int) -> set[int]:
    """Every process whose parent chain reaches ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, dict[str, int], set[int]]:
    ports = {name: free_port() for name in _NAMES}
    args = [sys.executable, "-m", "stack.cli", "up", "--fast-alerts", "--demo-streams", "1",
            "--state-dir", str(tmp_path / "state"), "--duration", "400"]  # fmt: skip
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    log_path = tmp_path / "up.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path
        )
    until(
        lambda: "Everything is up" in log_path.read_text() or proc.poll() is not None,
        180,
        "loglog up",
    )
    assert proc.poll() is None, log_path.read_text()
    children = _descendants(proc.pid)
    assert len(children) >= 5, children
    return proc, log_path, ports, children


def _nothing_left(children: set[int], ports: dict[str, int]) -> None:
    until(lambda: not any(_alive(pid) for pid in children), 60, "children gone")
    for name, port in ports.items():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"{name} still listens"


def test_sighup_stops_everything_and_the_printed_urls_answer(tmp_path):
    proc, log_path, ports, children = _start(tmp_path)
    try:
        text = log_path.read_text()
        alerts_page = re.search(r"open (http://127\.0\.0\.1:\d+/\S*alerts)", text)
        assert alerts_page, text
        with urllib.request.urlopen(alerts_page.group(1), timeout=10) as response:
            assert response.status == 200, "the printed Prometheus alerts URL answers"
        rules = (tmp_path / "state" / "alerts" / "rules" / "loglog.rules.yml").read_text()
        runbook = re.search(r"runbook_url: (\S+)", rules)
        assert runbook and runbook.group(1).startswith("http://127.0.0.1:")
        with urllib.request.urlopen(runbook.group(1), timeout=10) as response:
            assert response.status == 200 and response.read().startswith(b"#")
    finally:
        os.kill(proc.pid, signal.SIGHUP)  # what a closing terminal sends to the shell's job
        proc.wait(90)
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert re.search(r"^\d\d:\d\d:\d\d stopped everything$", text, re.M), text
    _nothing_left(children, ports)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "up.log"], (
        "nothing written outside --state-dir"
    )
    assert (tmp_path / "state" / "pushgateway").is_dir()


def test_even_sigkill_leaves_no_child_and_no_port(tmp_path):
    """The children get SIGTERM from the kernel when `loglog up` dies without cleaning up
    (parent-death signal), so they do not keep the ports."""
    proc, _log_path, ports, children = _start(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    _nothing_left(children, ports)
