"""End-to-end harness: worker subprocesses, an in-process jobs API, waiting with deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from fleet.access import SourcePolicy
from fleet.api import create_app
from fleet.celeryapp import make_app
from fleet.dispatch import Dispatcher
from fleet.errors import StoreUnavailable
from fleet.heartbeat import WorkerBeat
from fleet.store import JobStore
from tests.conftest import ROOT, free_port

T = TypeVar("T")
RUNTIME_CONFIG = "calibration_seconds: 0.1\nmax_batch: 4\nmonitor_interval_s: 0.5\n"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 120.0,
             every: float = 0.1) -> T:  # fmt: skip
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline
    (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Fleet:
    """One test's fleet: a private queue and key prefix on the given broker and Redis."""

    def __init__(
        self, broker: str, store: JobStore, tmp: Path, *, segment_seconds: float = 1.0
    ) -> None:
        self.broker, self.store, self.tmp = broker, store, tmp
        self.queue = f"loglog.test.{uuid.uuid4().hex[:8]}"
        self.results_dir = tmp / "results"
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "runtime.yaml"
        self.config.write_text(RUNTIME_CONFIG)
        self.segment_seconds = segment_seconds
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(make_app(self.broker, self.queue), self.store, queue=self.queue,
                          segment_seconds=self.segment_seconds)  # fmt: skip

    @contextmanager
    def api(self) -> Iterator[TestClient]:
        """The jobs API in this process (a new app each time: a 'restart')."""
        policy = SourcePolicy(file_dirs=(str(self.tmp),))  # the tests' videos live there
        with TestClient(
            create_app(self.dispatcher(), publish_interval=0.3, policy=policy)
        ) as client:
            yield client

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "worker", "--broker", self.broker,
             "--store", self.store.url, "--prefix", self.store.prefix, "--queue", self.queue,
             "--results-dir", str(self.results_dir), "--name", name, "--heartbeat", "0.5",
             "--config", str(self.config)],
            cwd=ROOT, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "LOGLOG_LEVEL": "info"},
        )  # fmt: skip
        self.workers[name] = proc
        return proc

    def wait_worker(self, name: str, timeout: float = 150.0) -> WorkerBeat:
        def live() -> WorkerBeat | None:
            proc = self.workers[name]
            if proc.poll() is not None:
                raise AssertionError(f"worker {name} exited {proc.returncode}: {self.log(name)}")
            return next((w for w in self.store.workers() if w.name == name), None)

        return wait_for(f"worker {name}'s first heartbeat", live, timeout)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.workers[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(60)

    def close(self) -> None:
        for name in list(self.workers):
            proc = self.workers[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)

    def wait_state(
        self, client: TestClient, job: str, states: tuple[str, ...], timeout: float = 180.0
    ) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"/v1/jobs/{job}").json()
            return body if body.get("state") in states else None

        return wait_for(f"job {job} to reach {states}", done, timeout, every=0.25)


def result_frames(path: str | Path) -> list[int]:
    """Frame indices in a results file, in file order."""
    return [json.loads(line)["frame"] for line in Path(path).read_text().splitlines()]


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.split()[-1])
    return None


def down_dispatcher(store: JobStore) -> Dispatcher:
    """A dispatcher whose broker is down (nothing listens on its port): jobs stay pending."""
    broker = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    return Dispatcher(make_app(broker, "q"), store, queue="q", segment_seconds=1.0)


@contextmanager
def served(app: Any, **options: Any) -> Iterator[str]:
    """``app`` served by a real uvicorn on a free loopback port (``options``: more
    ``uvicorn.Config`` arguments); yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30  # hang guard only
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "the test server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def private_redis_server(data_dir: Path, *extra: str) -> Iterator[str]:
    """A redis-server of its own on a free port (never the machine's 6379), answering
    before this yields its URL; ``extra`` are more server flags. Stopped on exit."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
         "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                JobStore.connect(url, timeout=0.5)
                break
            except StoreUnavailable:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
