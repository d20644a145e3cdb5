"""The pieces `loglog up` is built from, without starting it: a per-mode Prometheus TSDB,
Prometheus stopped first, the fleet's per-stack key prefix, queue and absolute source
directories, process titles, the receiver restarted in place, and the CLI's answers when
its reader or its server is gone."""

from __future__ import annotations

import io
import json
import os
import urllib.request
from argparse import Namespace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fleet.access import check_source
from fleet.errors import SourceUnreadable
from inference.tools.profile import main as profile
from stack.cli import build_parser
from stack.fleet_up import components, store_prefix
from stack.proctitle import title
from stack.receiver import ReceiverChild
from stack.up import Options, Stack
from tests.conftest import free_port, http_server


def _fleet_args(**overrides: object) -> Namespace:
    args = build_parser().parse_args(["up", "--workers", "2"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_each_mode_keeps_its_own_prometheus_tsdb(tmp_path):
    """Switching between a plain and a --workers stack in one state directory: each mode
    reads only its own series, so the fleet's last samples (worker/broker targets down at
    shutdown) cannot page FleetBrokerDown or FleetWorkerLost in a stack without a fleet."""
    plain = Stack(Options(state_dir=tmp_path), out=io.StringIO())
    fleet = Stack(Options(state_dir=tmp_path, fleet=_fleet_args()), out=io.StringIO())
    assert plain.tsdb() == tmp_path.resolve() / "prometheus"
    assert fleet.tsdb() == tmp_path.resolve() / "prometheus-fleet"


class _Stub:
    """Records the order in which `loglog up` stops its children."""

    def __init__(self, name: str, stopped: list[str]) -> None:
        self.name, self.stopped = name, stopped

    def stop(self, grace: float = 10.0) -> None:
        self.stopped.append(self.name)

    def exit_status(self) -> str | None:
        return "exited with status 0" if self.name in self.stopped else None


def test_prometheus_is_stopped_first_and_the_receiver_last(tmp_path):
    """Prometheus stops watching before the rest goes away on purpose, so its last samples
    are of a healthy stack (before: the fleet's targets were scraped down at shutdown and
    paged ~90 s into the next start)."""
    stopped: list[str] = []
    stack = Stack(Options(state_dir=tmp_path), out=io.StringIO())
    names = ("inference", "agent", "pushgateway", "alertmanager", "prometheus", "rabbitmq",
             "jobs api", "worker-0")  # fmt: skip
    stack.processes = [_Stub(name, stopped) for name in names]  # type: ignore[misc]
    stack.receiver = _Stub("alert receiver", stopped)  # type: ignore[assignment]
    stack.stop()
    assert stopped == ["prometheus", "alertmanager", "worker-0", "jobs api", "rabbitmq",
                       "pushgateway", "agent", "inference", "alert receiver"]  # fmt: skip
    assert stack.out.getvalue().endswith("stopped everything\n")  # type: ignore[attr-defined]


def test_the_fleet_runs_under_a_prefix_and_queue_of_its_own_with_absolute_source_dirs(
    tmp_path, monkeypatch
):
    """Two stacks on one Redis (or one --broker) never see each other's jobs: the key
    prefix comes from the state directory (or --store-prefix) and names the queue too;
    job files come only from --source-dir, given to the API as absolute paths."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    a, b = tmp_path / "a", tmp_path / "b"
    assert store_prefix(_fleet_args(), a) == store_prefix(_fleet_args(), a)
    assert store_prefix(_fleet_args(), a) != store_prefix(_fleet_args(), b)
    assert store_prefix(_fleet_args(store_prefix="team:x"), a) == "team:x"
    argv = {
        p.name: p.argv
        for p, _, _ in components(_fleet_args(source_dirs=["videos"]), "127.0.0.1", a)
    }
    prefix = store_prefix(_fleet_args(), a)
    for name in ("jobs api", "worker-0", "worker-1"):
        args = argv[name]
        assert args[args.index("--prefix") + 1] == prefix
        assert args[args.index("--queue") + 1] == f"loglog.segments.{prefix}"
    api = argv["jobs api"]
    assert api[api.index("--source-dir") + 1] == str(tmp_path / "videos")
    default = {p.name: p.argv for p, _, _ in components(_fleet_args(), "127.0.0.1", a)}
    assert str(tmp_path) in default["jobs api"]


def test_jobs_serve_refusals_name_the_absolute_directories_allowed(tmp_path, monkeypatch):
    """Before: "only from source_dirs (.)" — which directory "." was, nobody could tell."""
    from fleet.cli import source_policy

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["jobs", "serve", "--source-dir", "clips"])
    with pytest.raises(SourceUnreadable) as refused:
        check_source(source_policy(args), "/etc/hostname")
    assert f"source_dirs ({tmp_path / 'clips'})" in str(refused.value)
    default = build_parser().parse_args(["jobs", "serve"])
    with pytest.raises(SourceUnreadable) as refused:
        check_source(source_policy(default), "/etc/hostname")
    assert f"source_dirs ({tmp_path})" in str(refused.value)


def test_process_titles_say_loglog_and_the_command_without_passwords():
    assert title(["serve", "--port", "8000"]) == "loglog serve --port 8000"
    named = title(["worker", "--broker", "amqp://guest:s3cret@h:5672//", "--name", "a b"])
    assert named.startswith("loglog worker --broker ") and "s3cret" not in named
    assert named.endswith("--name 'a b'")


def test_the_receiver_restarts_in_place_and_serves_the_supervisor_metrics(tmp_path):
    """Its thread ended: the supervisor sees an exit and a new start gets the same port."""
    registry = CollectorRegistry()
    child = ReceiverChild("127.0.0.1", free_port(), tmp_path / "alerts.jsonl", registry)
    child.start()
    try:
        assert child.exit_status() is None and child.ready()
        assert child.receiver is not None
        child.receiver.stop()  # its thread ends, behind the supervisor's back
        assert child.exit_status() == "stopped serving (its thread ended)"
        child.start()
        assert child.exit_status() is None and child.ready()
        with urllib.request.urlopen(f"{child.url}/metrics", timeout=5) as response:
            assert response.status == 200
            assert "text/plain" in response.headers["Content-Type"]
    finally:
        child.stop()


def test_profile_on_an_unreachable_server_says_how_to_start_one(capsys):
    """Before: what failed, not what to do."""
    port = free_port()
    assert profile(url=f"http://127.0.0.1:{port}", prometheus=None, interval=0.1,
                   as_json=False) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "start it (`loglog up` / `loglog serve`) or pass --url" in err
    assert profile(url="", prometheus=f"http://127.0.0.1:{port}", interval=5,
                   as_json=False) == 2  # fmt: skip
    assert "start it (`loglog up`) or pass --prometheus URL" in capsys.readouterr().err


def test_profile_on_a_server_that_answers_an_error_does_not_say_start_it(capsys):
    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    with http_server(Failing) as url:
        assert profile(url=url, prometheus=None, interval=0.1, as_json=False) == 2
    err = capsys.readouterr().err
    assert "500" in err and "start it" not in err


def test_profile_reads_the_agent_from_the_url_loglog_up_prints(capsys):
    """`--agent http://127.0.0.1:9400/metrics` (what `loglog up` prints) reads the same page
    as the base URL; before, it asked /metrics/metrics and said "Host CPUs: unknown"."""
    from inference.tools.profile import _agent

    class Agent(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'host_cpu_seconds_total{mode="idle"} 12.5\n'
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    key = ("host_cpu_seconds_total", (("mode", "idle"),))
    with http_server(Agent) as url:
        for given in (url, f"{url}/", f"{url}/metrics", f"{url}/metrics/"):
            assert _agent(given) == {key: 12.5}, given
        assert capsys.readouterr().err == ""
        assert _agent(f"{url}/nothing") is None
    assert f"--agent {url}/nothing: cannot read {url}/nothing/metrics" in capsys.readouterr().err


@pytest.mark.slow
def test_jobs_ls_into_a_closed_pipe_exits_quietly(tmp_path):
    """`loglog jobs ls | head -1`: rc 141 (or 0), no BrokenPipeError traceback."""
    import subprocess
    import sys

    jobs = [{"id": f"job{i:06d}", "state": "queued", "progress": 0.0, "frames_done": 0,
             "total_frames": 10, "eta_seconds": None, "source": "synthetic://x" * 8}
            for i in range(20_000)]  # fmt: skip
    body = json.dumps({"jobs": jobs}).encode()

    class Jobs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    with http_server(Jobs) as url:
        result = subprocess.run(
            f"set -o pipefail; {sys.executable} -m stack.cli jobs ls --api {url} | head -1",
            shell=True, capture_output=True, text=True, timeout=60,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            executable="/bin/bash",
        )  # fmt: skip
    assert result.stdout.startswith("ID ")
    assert result.returncode in (0, 141), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
