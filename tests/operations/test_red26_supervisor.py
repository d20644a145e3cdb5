"""Red-team findings (red26) on `loglog up`'s supervisor: a restart that cannot write its
log, and a child that stops answering without exiting (SIGSTOP, a deadlock)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from stack.processes import Process, StackError
from stack.supervisor import RestartPolicy, Supervisor
from stack.types import BACKOFF, RUNNING
from tests.conftest import free_port
from tests.operations.stack_harness import wait

pytestmark = pytest.mark.slow


def _state(supervisor: Supervisor, name: str) -> str:
    return next(s.state for s in supervisor.status() if s.name == name)


def test_a_restart_whose_logs_dir_is_gone_is_a_failed_start_not_the_end_of_loglog_up(tmp_path):
    """The logs directory replaced by a file (or unwritable, or on a broken disk) while
    the stack runs: the next restart raised a bare OSError out of tick(), which ended
    `loglog up` and with it every other component."""
    logs = tmp_path / "logs"
    child = Process("c", ["sleep", "600"], "http://127.0.0.1:1/", logs / "c.log")
    child.start()
    lines: list[str] = []
    supervisor = Supervisor(lines.append, policy=RestartPolicy(first_delay_s=0.0))
    supervisor.watch(child, start_timeout=5)
    try:
        for entry in logs.iterdir():
            entry.unlink()
        logs.rmdir()
        logs.write_text("not a directory")
        assert child.proc is not None
        os.kill(child.proc.pid, signal.SIGKILL)
        wait("the exit noticed", lambda: (supervisor.tick(), _state(supervisor, "c"))[1]
             == BACKOFF, 30)  # fmt: skip
        supervisor.tick()  # the restart: must not raise
        assert _state(supervisor, "c") == BACKOFF
        assert "could not be started" in lines[-1] and str(logs / "c.log") in lines[-1]
    finally:
        supervisor.stop()


def test_a_full_disk_for_the_log_is_named_not_blamed_on_the_program(tmp_path):
    """ENOSPC writing the start marker said "cannot run sleep: No space left on device":
    the program is fine, the log's disk is full."""
    child = Process("c", ["sleep", "600"], "http://127.0.0.1:1/", Path("/dev/full"))
    with pytest.raises(StackError) as caught:
        child.start()
    message = str(caught.value)
    assert "/dev/full" in message and "No space left on device" in message
    assert "cannot run" not in message
    assert child.proc is None or child.proc.poll() is not None


def test_a_stopped_child_that_no_longer_answers_is_restarted(tmp_path):
    """SIGSTOP (or a deadlock) keeps the process alive and silent: it stayed "running",
    up=1 on /metrics, forever, while its port answered nothing."""
    port = free_port()
    child = Process(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        f"http://127.0.0.1:{port}/",
        tmp_path / "web.log",
        cwd=tmp_path,
    )
    child.start()
    child.wait_ready(30)
    lines: list[str] = []
    policy = RestartPolicy(first_delay_s=0.0, liveness_interval_s=0.2, liveness_failures=3)
    supervisor = Supervisor(lines.append, policy=policy)
    supervisor.watch(child, start_timeout=30)
    try:
        assert child.proc is not None
        stopped = child.proc.pid
        os.kill(stopped, signal.SIGSTOP)
        wait("the silent child restarted", lambda: (supervisor.tick(), child.proc.pid)[1]
             != stopped, 60)  # fmt: skip
        assert any("did not answer" in line for line in lines), lines
        wait("back", lambda: (supervisor.tick(), _state(supervisor, "web"))[1] == RUNNING, 60)
        restarts = next(s.restarts for s in supervisor.status() if s.name == "web")
        assert restarts == 1
    finally:
        supervisor.stop()
