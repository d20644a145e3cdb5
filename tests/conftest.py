"""Shared fixtures: scenario subprocesses with hard timeouts, free ports, loglog isolation."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


_HANDED_OUT: set[int] = set()


def run_code(
    code: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a fresh interpreter from the repository root, with a hard
    timeout; ``env`` adds to this process's environment."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


#: Ports handed out come from below Linux's ephemeral range (32768–60999), so no outgoing
#: connection's local port can take one between free_port() and the server's bind; each
#: pytest-xdist worker draws from a block of its own, so two workers never hand out the
#: same port (the kernel's bind(0) would give both workers the same just-freed port).
_PORT_BASE, _PORT_BLOCK = 10_000, 2_000
_PORT_RANDOM = random.Random()  # private: tests that seed the global generator stay repeatable


def _port_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = _PORT_BASE + (index % 11) * _PORT_BLOCK
    return range(start, start + _PORT_BLOCK)


def free_port() -> int:
    """A TCP port nothing listens on right now (loopback), never one this process handed
    out before (a test that asks for several ports before starting anything would
    otherwise get the same one twice), and never one another xdist worker hands out."""
    block = _port_block()
    for _ in range(1000):
        port = _PORT_RANDOM.choice(block)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no fresh free port in {block.start}–{block.stop - 1} after 1000 tries")


@contextmanager
def http_server(handler: Any) -> Iterator[str]:
    """``handler`` (a ``BaseHTTPRequestHandler`` class or factory) served on a free
    loopback port by a threading ``http.server``; yields its base URL, shuts it down on
    exit."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def slow_clients(port: int, count: int, first: bytes) -> list[socket.socket]:
    """``count`` connections to ``port`` that each send ``first`` (half a request) and
    stop: a slowloris. The caller closes them."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(first)
        sockets.append(sock)
    return sockets


def read_until_closed(sock: socket.socket) -> bytes:
    """What the server sent before closing (b"" when it sent nothing); a 30 s hang guard
    unless the socket has a shorter timeout already."""
    sock.settimeout(min(30, sock.gettimeout() or 30))
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:  # closed with our bytes unread: closed all the same
        pass
    return data


@dataclass
class Scenario:
    """The outcome of a scenario script run in its own process."""

    returncode: int
    seconds: float
    stderr: str
    result: dict[str, Any]
    #: time.monotonic() when the process was seen gone (CLOCK_MONOTONIC is system-wide,
    #: so a script can print its own monotonic time and a test can compare).
    ended_at: float = 0.0

    def marker(self, name: str) -> float:
        """The float a script printed to stderr as ``NAME <monotonic>``."""
        return float(self.stderr.split(f"{name} ")[1].split()[0])


def run_scenario(
    code: str,
    *,
    timeout: float,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    stdout: Any = subprocess.DEVNULL,
    args: list[str] | None = None,
) -> Scenario:
    """Run ``code`` in a fresh interpreter; kill it and fail the test if it outlives
    ``timeout``. The script reports by writing JSON to the file named by $RESULT."""
    script = tmp_path / f"scenario_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(code))
    result_file = tmp_path / f"{script.stem}.json"
    errors = tmp_path / f"{script.stem}.stderr"
    full_env = {
        **os.environ,
        "RESULT": str(result_file),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    full_env.pop("PYTEST_CURRENT_TEST", None)
    started = time.monotonic()
    with open(errors, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), *(args or [])],
            stdout=stdout,
            stderr=err,
            env=full_env,
            cwd=tmp_path,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            pytest.fail(
                f"scenario hung: still running after {timeout}s\n"
                f"--- stderr ---\n{errors.read_text()[-4000:]}"
            )
    ended_at = time.monotonic()
    if proc.stdout is not None:
        proc.stdout.close()  # the unread pipe of a stalled-stdout scenario
    text = errors.read_text()
    data = json.loads(result_file.read_text()) if result_file.exists() else {}
    return Scenario(proc.returncode, ended_at - started, text, data, ended_at)


@pytest.fixture
def scenario(tmp_path: Path) -> Any:
    def run(code: str, *, timeout: float = 60.0, **kwargs: Any) -> Scenario:
        return run_scenario(code, timeout=timeout, tmp_path=tmp_path, **kwargs)

    return run


@pytest.fixture(autouse=True, scope="session")
def _private_core_claims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runtimes built in this test process claim cores in a folder of their own: test
    processes running side by side (xdist) must not move each other's engines, nor take
    the cores of servers running on this host."""
    from inference.feed import claims

    before = claims.DEFAULT_DIR
    claims.DEFAULT_DIR = str(tmp_path_factory.mktemp("core-claims"))
    yield
    claims.DEFAULT_DIR = before


@pytest.fixture(autouse=True)
def _loglog_isolated() -> Iterator[None]:
    """Tests that configure loglog in-process leave nothing running behind them."""
    yield
    import loglog

    loglog.shutdown(timeout=5.0)


def _gpu_available() -> bool:
    from agent.nvml import Nvml, NvmlError, load_module

    try:
        nvml = Nvml(load_module())
        nvml.init()
        nvml.shutdown()
        return True
    except NvmlError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked gpu run only where NVML finds a GPU; elsewhere they skip, saying so."""
    if not any("gpu" in item.keywords for item in items) or _gpu_available():
        return
    skip = pytest.mark.skip(reason="no NVIDIA GPU/driver here: run `pytest -m gpu` on a GPU host")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def until(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate`` every second until it is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture
def loglog_up(tmp_path: Path) -> Iterator[Any]:
    """Start the real `loglog up` (``--fast-alerts`` unless told otherwise) on free ports;
    returns component URLs.
    At teardown it sends SIGTERM (what Ctrl-C does) and checks nothing is left listening."""
    started: list[tuple[subprocess.Popen[bytes], Path, dict[str, int]]] = []

    def start(
        fast_alerts: bool = True, model: str | os.PathLike[str] | None = None
    ) -> dict[str, str]:
        names = (
            "inference",
            "agent",
            "prometheus",
            "alertmanager",
            "pushgateway",
            "alert-receiver",
        )
        ports = {name: free_port() for name in names}
        args = [sys.executable, "-m", "stack.cli", "up", "--demo-streams", "2",
                "--state-dir", str(tmp_path / "state"), "--duration", "400"]  # fmt: skip
        if fast_alerts:
            args.append("--fast-alerts")
        if model is not None:
            args += ["--model", str(model)]
        for name, port in ports.items():
            args += [f"--{name}-port", str(port)]
        log_path = tmp_path / "up.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        started.append((proc, log_path, ports))
        until(
            lambda: "Everything is up" in log_path.read_text() or proc.poll() is not None,
            120,
            "loglog up",
        )
        assert proc.poll() is None, log_path.read_text()
        return {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    yield start
    for proc, log_path, ports in started:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        assert proc.returncode == 0, log_path.read_text()
        assert "stopped everything" in log_path.read_text()
        for name, port in ports.items():
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, (
                    f"{name} still listens after stop"
                )
