"""`loglog up` survives its parts, with default alert timings: each kind of child SIGKILLed
in turn comes back within its backoff while the others keep their pids, each restart is
counted in /metrics, scraped by Prometheus and notified as a ticket; an inference server
that can no longer start (its model replaced by garbage) crash-loops, is left down with
one line, pages (LoglogUpComponentCrashLoop, then InferenceDown), and comes back on
SIGUSR1 once the model is restored. The runbooks' process commands find the real processes.

One stack for all of it: a `loglog up` takes about a minute to start on a shared 2-core
machine. Figures (kill → back, kill → notification) are printed for docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from inference.engines.model import default_model_path
from tests.operations.stack_harness import (
    check_runbook_commands,
    runbook_pgrep_patterns,
    start_up,
    wait,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="needs Debian's prometheus (make test installs it)",
    ),
]
KINDS = ("inference", "agent", "pushgateway", "alertmanager", "prometheus")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _query(prometheus: str, expr: str) -> list[dict]:
    body = _get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return json.loads(body)["data"]["result"]


def test_each_child_killed_comes_back_notified_and_a_crash_loop_pages(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(default_model_path(), model)
    up = start_up(tmp_path, "--demo-streams", "1", "--model", str(model), "--duration", "850")
    try:
        text = up.text()
        assert "every component is restarted when it exits" in text
        pids = up.pids()
        assert set(pids) == set(KINDS), pids
        # The runbooks' commands name the real processes (titles set by stack.proctitle).
        assert runbook_pgrep_patterns() == {
            "^loglog serve", "^loglog agent", "^loglog worker", "^loglog up"
        }  # fmt: skip
        check_runbook_commands(up, {"^loglog serve": {pids["inference"]},
                                    "^loglog agent": {pids["agent"]},
                                    "^loglog up": {up.proc.pid}, "^loglog worker": set()})  # fmt: skip

        back: dict[str, float] = {}
        for kind in KINDS:
            before = up.pids()
            up.kill(kind)
            back[kind] = up.back(kind)
            after = up.pids()
            assert after[kind] != before[kind], f"{kind} runs again as a new process"
            others = {k: v for k, v in before.items() if k != kind}
            assert {k: after[k] for k in others} == others, f"killing {kind} stopped nothing else"
            assert f"✗ {kind} was killed by SIGKILL (pid {before[kind]}); restarting it in 1 s" in (
                up.text()
            )

        # Counted where Prometheus scrapes it, and scraped.
        metrics = _get(f"http://127.0.0.1:{up.ports['alert-receiver']}/metrics")
        for kind in KINDS:
            assert f'loglog_up_component_restarts_total{{component="{kind}"}} 1.0' in metrics
        prometheus = f"http://127.0.0.1:{up.ports['prometheus']}"
        wait(
            "the restarts scraped by Prometheus",
            lambda: len(_query(prometheus, "loglog_up_component_restarts_total == 1")) == 5,
            120,
        )
        killed_at = dict(up.kills)  # the crash loop below kills inference again

        # The model becomes garbage: every start of the server now fails.
        model_bytes = model.read_bytes()
        model.write_bytes(b"not an onnx model")
        rest = {k: v for k, v in up.pids().items() if k != "inference"}
        up.kill("inference")
        wait("the crash-loop line", lambda: ": crash loop, " in up.text(), 300)
        crash = next(line for line in up.text().splitlines() if ": crash loop, " in line)
        assert crash.split(" ", 1)[1].startswith("✗ inference exited with status"), crash
        assert "LEFT DOWN; the rest of the stack keeps running" in crash
        assert f"kill -USR1 {up.proc.pid}" in crash
        assert {k: v for k, v in up.pids().items() if k != "inference"} == rest
        page = wait(
            "the crash-loop page",
            lambda: up.notified("LoglogUpComponentCrashLoop", "inference", "page"),
            180,
        )
        crash_page = page - up.kills["inference"]
        wait("InferenceDown paged", lambda: up.notified("InferenceDown", "inference", "page"), 240)
        wait(
            "a status line naming what is down",
            lambda: "DOWN: inference failed (crash loop" in up.text(),
            60,
        )

        # A ticket per component, with the default timings (group_wait 10 s, 5 s scrapes);
        # checked after the crash loop, by when they have long arrived.
        notified = {}
        for kind in KINDS:
            at = wait(
                f"the ticket for {kind}'s restart",
                lambda kind=kind: up.notified("LoglogUpComponentRestarted", kind, "ticket"),
                180,
            )
            notified[kind] = at - killed_at[kind]

        # Fixed: SIGUSR1 retries it, and it comes back.
        model.write_bytes(model_bytes)
        up.kills["inference"] = time.time()
        os.kill(up.proc.pid, signal.SIGUSR1)
        up.back("inference", times=2, timeout=240)
        assert "SIGUSR1: retrying: inference" in up.text()
        assert {k: v for k, v in up.pids().items() if k != "inference"} == rest
        print(
            "\nkill → back (s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in back.items())
            + "\nkill → ticket (s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in notified.items())
            + f"\nlast kill of inference → crash-loop page: {crash_page:.1f} s"
        )
    finally:
        code = up.stop()
    text = up.text()
    assert code == 0, text[-5000:]
    assert "stopped everything" in text
