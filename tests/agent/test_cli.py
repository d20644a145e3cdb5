"""`loglog agent` as users run it, on this machine without a GPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import free_port, until


def test_loglog_agent_serves_no_gpu_and_host_metrics_and_stops_cleanly(tmp_path):
    """The real command: /metrics says why there is no GPU data and has host metrics;
    /healthz answers; SIGTERM stops it with exit 0."""
    port = free_port()
    with open(tmp_path / "agent.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "agent", "--port", str(port), "--interval", "200ms"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        until(
            lambda: urllib.request.urlopen(f"{url}/healthz", timeout=1).status == 200, 30, "agent"
        )
        body = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0
    assert 'agent_nvml_up{reason="library_not_found"} 0.0' in body
    assert "host_memory_total_bytes" in body and "host_cpu_seconds_total" in body
    assert "no GPU data; exporting host metrics only" in (tmp_path / "agent.log").read_text()


def test_bad_arguments_fail_with_what_to_write(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stack.cli", "agent", "--interval", "often"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "e.g. 1s, 500ms, 2m" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port 70000 is not a TCP port"),
        (["--port", "-1"], "is not a TCP port"),
        (["--port", "eighty"], "invalid int value"),
        (["--interval", "nan"], "--interval must be 50ms–1h"),
        (["--hang-timeout", "nan"], "--hang-timeout ≥ --interval"),
        (["--watch-pid", "0"], "--watch-pid takes a process id"),
        (["--host", "no.such.host.invalid"], "cannot listen on no.such.host.invalid"),
        (["--watch-name", ""], "--watch-name '' would match every process"),
        (["--watch-name", "x", "--watch-name", " "], "would match every process"),
    ],
)
def test_every_bad_flag_exits_2_with_a_message_not_a_traceback(args, message):
    """Bad flags exit 2 saying what to write (before: --port 70000 ended in a traceback)."""
    result = subprocess.run(
        [sys.executable, "-m", "stack.cli", "agent", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 here")
def test_loglog_agent_serves_on_ipv6_loopback(tmp_path):
    """``loglog agent --host ::1`` serves (it was refused: the server was IPv4-only) and
    logs a URL with the address in brackets."""
    port = free_port()
    with open(tmp_path / "agent.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "agent", "--host", "::1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        until(
            lambda: urllib.request.urlopen(f"http://[::1]:{port}/healthz", timeout=1).status == 200,
            30,
            "agent on ::1",
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0, (tmp_path / "agent.log").read_text()
    assert f"http://[::1]:{port}/metrics" in (tmp_path / "agent.log").read_text()
