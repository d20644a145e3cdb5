"""A private RabbitMQ node for tests: its own ports, data and logs under a temp directory.

The shared broker on 5672 cannot be stopped by a test; this one can (the broker-outage
test stops it for 20 s and starts it again on the same ports and data). It runs Debian's
``rabbitmq-server`` directly (``/usr/lib/rabbitmq/bin``: the ``/usr/sbin`` wrapper drops to
the rabbitmq user, which cannot write the temp directory) with the ``rabbitmq_prometheus``
plugin. Start-up takes ~7 s here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.conftest import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def available() -> bool:
    return Path(SERVER).is_file() and os.access(SERVER, os.X_OK)


class PrivateRabbit:
    """``start()``, ``stop()``, ``url``, ``prometheus_url``; ``close()`` removes everything."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port, self.dist_port, self.prom_port = free_port(), free_port(), free_port()
        self.node = f"loglogtest{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"prometheus.tcp.port = {self.prom_port}\n"
            "prometheus.tcp.ip = 127.0.0.1\n"
            "consumer_timeout = 1800000\n"
            "management_agent.disable_metrics_collector = false\n"
        )
        (root / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prom_port}/metrics"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.root / "pid"),
        )
        return env

    def start(self, timeout: float = 90.0) -> float:
        """Start the node; return seconds until it accepted AMQP connections."""
        began = time.monotonic()
        with open(self.root / "server.out", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([SERVER], env=self.env(), stdout=log, stderr=log,
                                         start_new_session=True)  # fmt: skip
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return time.monotonic() - began
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"rabbitmq-server not up after {timeout}s: {self.tail()}")

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node (SIGTERM to its session: beam and epmd helpers it started)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the listener goes with the VM
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.1)
            except OSError:
                return

    def kill(self) -> None:
        """SIGKILL the node (its whole session): a crash, not a shutdown."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def tail(self) -> str:
        path = self.root / "server.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
