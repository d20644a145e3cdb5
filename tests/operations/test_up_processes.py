"""A child process of `loglog up`, restarted: how it ended, what it wrote since *this*
start (not an earlier run's start-up lines), and nothing of its group left behind to hold
a port when the next start needs it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from stack.processes import Process
from tests.operations.stack_harness import wait

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_the_tail_is_this_runs_output_and_the_exit_says_how(tmp_path):
    log = tmp_path / "logs" / "c.log"
    child = Process("c", ["sh", "-c", "echo run-$RUN; exit 3"], "http://127.0.0.1:1/", log,
                    {"RUN": "one"})  # fmt: skip
    child.start()
    wait("first run ends", lambda: child.exit_status(), 30)
    assert child.exit_status() == "exited with status 3"
    child.env = {"RUN": "two"}
    child.start()
    wait("second run ends", lambda: child.exit_status(), 30)
    assert child.tail() == "    run-two", "only what this start wrote"
    text = log.read_text()
    assert text.count("--- loglog up: c starting at ") == 2 and "run-one" in text
    sleeper = Process("s", ["sleep", "60"], "http://127.0.0.1:1/", log)
    sleeper.start()
    assert sleeper.exit_status() is None and not sleeper.ready()
    assert sleeper.proc is not None
    os.kill(sleeper.proc.pid, signal.SIGKILL)
    wait("sleeper killed", lambda: sleeper.exit_status(), 30)
    assert sleeper.exit_status() == "was killed by SIGKILL"
    assert sleeper.tail() == "    (it wrote nothing)"


def test_what_the_dead_main_process_left_in_its_group_is_killed(tmp_path):
    """A grandchild outliving its parent would keep the port the restart needs (a
    RabbitMQ node under its start script, a server under a shell wrapper)."""
    pidfile = tmp_path / "grandchild"
    child = Process(
        "wrapper",
        ["sh", "-c", f"sleep 600 & echo $! > {pidfile}; wait"],
        "http://127.0.0.1:1/",
        tmp_path / "w.log",
    )
    child.start()
    grandchild = int(
        wait("the grandchild's pid", lambda: pidfile.exists() and pidfile.read_text().strip(), 30)
    )
    assert child.proc is not None
    os.kill(child.proc.pid, signal.SIGKILL)
    wait("the wrapper's death noticed", lambda: child.exit_status(), 30)
    deadline = time.monotonic() + 30
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the leftover in the group was killed"


def test_a_loglog_command_is_titled_loglog_and_its_command(tmp_path):
    """What `pgrep -af '^loglog receiver'` sees, however the command was started (here
    `python -m stack.cli`, as `loglog up` starts its children); no password shown."""
    import subprocess
    import sys

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "receiver", "--port", str(port),
         "--out", str(tmp_path / "a.jsonl"), "--runbooks", "http://u:s3cret@x/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:

        def title() -> str:
            raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            return raw.replace(b"\0", b" ").decode().strip()

        wait("the title", lambda: title().startswith("loglog "), 30)
        assert title().startswith(f"loglog receiver --port {port} --out ")
        assert "s3cret" not in title() and "stack.cli" not in title()
    finally:
        proc.terminate()
        proc.wait(30)
