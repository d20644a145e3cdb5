"""``loglog up``: the whole stack as local processes, with a demo workload.

Starts, on loopback: the alert receiver (in this process), the inference server with
synthetic demo streams and drills allowed, the node agent, a Pushgateway, Alertmanager and
Prometheus (Debian's binaries) — with generated configs checked by ``promtool`` and
``amtool`` first. Prints what runs where, then a status line now and then, until Ctrl-C
or SIGTERM, and stops everything it started. Exits 2 on a problem found before starting
(a binary missing, a port taken), 1 when a component fails to come up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO

import yaml

from alerts.alertmanager import alertmanager_config
from alerts.config import FAST, PRODUCTION, Config
from alerts.generate import write as write_alerts
from inference.server.ports import port_free

from . import fleet_up
from .processes import Process, StackError
from .prometheus import prometheus_config
from .receiver import AlertReceiver

BINARIES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus-pushgateway": "prometheus-pushgateway",
}
REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Options:
    """Everything ``loglog up`` can be told."""

    state_dir: Path
    host: str = "127.0.0.1"
    inference_port: int = 8000
    agent_port: int = 9400
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    pushgateway_port: int = 9091
    receiver_port: int = 9095
    demo: bool = True
    demo_streams: int = 3
    fast_alerts: bool = False
    scrape_interval: str = "5s"
    model: str | None = None
    config: str | None = None
    duration: float | None = None  # stop by itself after this many seconds
    fleet: Any = None  # the fleet options (stack.fleet_up), or None: no fleet

    def ports(self) -> dict[str, int]:
        return {
            "inference": self.inference_port,
            "agent": self.agent_port,
            "prometheus": self.prometheus_port,
            "alertmanager": self.alertmanager_port,
            "pushgateway": self.pushgateway_port,
            "alert receiver": self.receiver_port,
            **fleet_up.ports(self.fleet),
        }


def default_state_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "loglog" / "up"


class Stack:
    """The embedded stack; ``run()`` is ``loglog up``."""

    def __init__(self, options: Options, out: TextIO = sys.stdout) -> None:
        self.o = options
        self.out = out
        self.processes: list[Process] = []
        self.receiver: AlertReceiver | None = None
        self.stopping = threading.Event()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def url(self, port: int) -> str:
        return f"http://{self.o.host}:{port}"

    # -- before anything starts ----------------------------------------------------------

    def preflight(self) -> None:
        missing = sorted({pkg for binary, pkg in BINARIES.items() if shutil.which(binary) is None})
        if missing:
            raise StackError(
                f"missing Debian package(s): {', '.join(missing)}. Install them with "
                f"`sudo apt-get install {' '.join(missing)}`, or run `make up`, which does."
            )
        if self.o.fleet is not None:
            fleet_up.preflight(self.o.fleet)
        taken = [
            f"{name} ({port})"
            for name, port in self.o.ports().items()
            if not port_free(self.o.host, port)
        ]
        if taken:
            raise StackError(
                f"port(s) taken: {', '.join(taken)}. Stop what uses them, or pass "
                "--<component>-port (see loglog up --help)."
            )

    def prepare(self) -> dict[str, Path]:
        """Write and check the configs in the state directory."""
        state = self.o.state_dir
        state.mkdir(parents=True, exist_ok=True)
        cfg = Config(
            timing=FAST if self.o.fast_alerts else PRODUCTION,
            runbook_base=(REPO / "alerts" / "runbooks").as_uri(),
        )
        receiver = self.url(self.o.receiver_port)
        written = write_alerts(state / "alerts", cfg, receiver)
        fast = self.o.fast_alerts
        am = alertmanager_config(
            receiver,
            group_wait="1s" if fast else "10s",
            group_interval="5s" if fast else "1m",
            repeat_interval="1h",
        )
        am_path = state / "alertmanager.yml"
        am_path.write_text(yaml.safe_dump(am, sort_keys=False))
        h = self.o.host
        prom = prometheus_config(
            jobs={
                "inference": [f"{h}:{self.o.inference_port}"],
                "agent": [f"{h}:{self.o.agent_port}"],
                "pushgateway": [f"{h}:{self.o.pushgateway_port}"],
                "alertmanager": [f"{h}:{self.o.alertmanager_port}"],
                "prometheus": [f"{h}:{self.o.prometheus_port}"],
            },
            rule_files=[str(written["rules/loglog.rules.yml"])],
            alertmanagers=[f"{h}:{self.o.alertmanager_port}"],
            scrape_interval="1s" if fast else self.o.scrape_interval,
            evaluation_interval="1s" if fast else self.o.scrape_interval,
        )
        if self.o.fleet is not None:
            prom["scrape_configs"] += fleet_up.scrape_configs(self.o.fleet, h)
        prom_path = state / "prometheus.yml"
        prom_path.write_text(yaml.safe_dump(prom, sort_keys=False))
        _check(
            ["promtool", "check", "config", str(prom_path)],
            "promtool rejected the generated Prometheus config",
        )
        _check(
            ["amtool", "check-config", str(am_path)],
            "amtool rejected the generated Alertmanager config",
        )
        return {"prometheus": prom_path, "alertmanager": am_path}

    # -- starting ------------------------------------------------------------------------

    def start(self, configs: dict[str, Path]) -> None:
        o, state, py = self.o, self.o.state_dir, sys.executable
        self.receiver = AlertReceiver(o.host, o.receiver_port, state / "alerts.jsonl")
        self.receiver.start()
        self._done(
            "alert receiver",
            f"{self.receiver.url}/alerts  (notifications: {state / 'alerts.jsonl'})",
            0.0,
        )
        serve = [
            py,
            "-m",
            "stack.cli",
            "serve",
            "--host",
            o.host,
            "--port",
            str(o.inference_port),
            "--allow-drills",
        ]
        if o.demo:
            serve += ["--demo-streams", str(o.demo_streams)]
        if o.model:
            serve += ["--model", o.model]
        if o.config:
            serve += ["--config", o.config]
        child_env = {"LOGLOG_CONSOLE": "json", "LOGLOG_CONSOLE_STREAM": "stdout"}
        agent = [py, "-m", "stack.cli", "agent", "--host", o.host, "--port", str(o.agent_port)]
        agent += ["--watch-name", "stack.cli serve"]
        streams = o.demo_streams if o.demo else "no"
        inference_url = self.url(o.inference_port)
        components = [
            (
                Process(
                    "inference",
                    serve,
                    f"{inference_url}/readyz",
                    state / "logs" / "inference.log",
                    child_env,
                ),
                f"{inference_url}  ({streams} demo streams, drills allowed)",
                180.0,
            ),
            (
                Process(
                    "agent",
                    agent,
                    f"{self.url(o.agent_port)}/healthz",
                    state / "logs" / "agent.log",
                    child_env,
                ),
                f"{self.url(o.agent_port)}/metrics",
                60.0,
            ),
            (
                Process(
                    "pushgateway",
                    [
                        "prometheus-pushgateway",
                        f"--web.listen-address={o.host}:{o.pushgateway_port}",
                    ],
                    f"{self.url(o.pushgateway_port)}/-/ready",
                    state / "logs" / "pushgateway.log",
                ),
                self.url(o.pushgateway_port),
                30.0,
            ),
            (
                Process(
                    "alertmanager",
                    [
                        "prometheus-alertmanager",
                        f"--config.file={configs['alertmanager']}",
                        f"--storage.path={state / 'alertmanager'}",
                        f"--web.listen-address={o.host}:{o.alertmanager_port}",
                        "--cluster.listen-address=",  # no gossip port: a single local instance
                    ],
                    f"{self.url(o.alertmanager_port)}/-/ready",
                    state / "logs" / "alertmanager.log",
                ),
                self.url(o.alertmanager_port),
                30.0,
            ),
            (
                Process(
                    "prometheus",
                    [
                        "prometheus",
                        f"--config.file={configs['prometheus']}",
                        f"--storage.tsdb.path={state / 'prometheus'}",
                        f"--web.listen-address={o.host}:{o.prometheus_port}",
                        "--enable-feature=exemplar-storage",
                        "--web.enable-lifecycle",
                    ],
                    f"{self.url(o.prometheus_port)}/-/ready",
                    state / "logs" / "prometheus.log",
                ),
                self.url(o.prometheus_port),
                60.0,
            ),
        ]
        if o.fleet is not None:
            components += fleet_up.components(o.fleet, o.host, state)
        for process, where, timeout in components:
            if self.out.isatty():
                self.out.write(f"  … {process.name:<15} starting\r")
                self.out.flush()
            process.start()
            self.processes.append(process)
            seconds = process.wait_ready(timeout, self.stopping.is_set)
            self._done(process.name, where, seconds)
        if o.fleet is not None and o.fleet.workers and o.demo:
            self.say(f"  demo jobs: {', '.join(fleet_up.submit_demo_jobs(o.fleet, o.host))}")

    def _done(self, name: str, where: str, seconds: float) -> None:
        self.say(f"  ✓ {name:<15} {where}  ({seconds:.1f} s)")

    # -- running -------------------------------------------------------------------------

    def status(self) -> str:
        """One line: throughput, verdict, firing alerts."""
        try:
            with urllib.request.urlopen(
                f"{self.url(self.o.inference_port)}/v1/profile", timeout=3
            ) as r:
                verdict = json.load(r)["verdict"]
            with urllib.request.urlopen(
                f"{self.url(self.o.prometheus_port)}/api/v1/alerts", timeout=3
            ) as r:
                firing = [
                    a["labels"]["alertname"]
                    for a in json.load(r)["data"]["alerts"]
                    if a["state"] == "firing"
                ]
        except (OSError, ValueError, KeyError, TypeError):
            return "status: (not available yet)"
        rate, capacity = verdict["delivered_per_s"], verdict["capacity_per_s"]
        alerts = ", ".join(sorted(set(firing))) or "none"
        return (
            f"status: {rate:.1f} items/s of {capacity:.1f} capacity, "
            f"bottleneck {verdict['bottleneck']}; firing: {alerts}"
        )

    def wait(self) -> int:
        """Until a signal or --duration; returns 1 if a component died meanwhile."""
        deadline = None if self.o.duration is None else time.monotonic() + self.o.duration
        next_status = time.monotonic() + 10
        while not self.stopping.wait(0.5):
            dead = [p for p in self.processes if not p.alive()]
            if dead:
                self.say(
                    f"loglog up: {dead[0].name} stopped unexpectedly; its log:\n{dead[0].tail()}"
                )
                return 1
            if deadline is not None and time.monotonic() >= deadline:
                return 0
            if time.monotonic() >= next_status:
                self.say(self.status())
                next_status = time.monotonic() + 30
        return 0

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.receiver is not None:
            self.receiver.stop()
        left = [p.name for p in self.processes if p.alive()]
        self.say("stopped everything" if not left else f"could not stop: {', '.join(left)}")

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())
        self.say(f"loglog up — state and logs in {self.o.state_dir}")
        try:
            self.preflight()
            configs = self.prepare()
        except StackError as exc:
            self.say(f"loglog up: {exc}")
            return 2
        try:
            self.start(configs)
        except StackError as exc:
            self.say(f"loglog up: {exc}")
            self.stop()
            return 1
        self.say(_next_steps(self.o))
        code = self.wait()
        self.stop()
        return code


def _check(argv: list[str], message: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"{message}:\n{result.stdout}{result.stderr}")


def _next_steps(o: Options) -> str:
    inference = f"http://{o.host}:{o.inference_port}"
    return (
        "Everything is up. Try:\n"
        f"  loglog profile --url {inference}\n"
        f"  curl -s -XPOST {inference}/v1/drills -H 'content-type: application/json' "
        '-d \'{"stage": "preprocess", "delay_ms": 30, "duration_s": 120}\'\n'
        f"  open http://{o.host}:{o.prometheus_port}/alerts  ·  http://{o.host}:{o.alertmanager_port}\n"
        f"  loglog report --prometheus http://{o.host}:{o.prometheus_port} "
        f"--out {o.state_dir / 'reports'} --pdf\n"
        "Ctrl-C stops everything."
    )


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("up", help="run the whole stack locally with a demo workload")
    parser.add_argument(
        "--state-dir", type=Path, default=None, help=f"default: {default_state_dir()}"
    )
    parser.add_argument("--no-demo", action="store_true", help="serve without demo streams")
    parser.add_argument("--demo-streams", type=int, default=3)
    parser.add_argument(
        "--fast-alerts", action="store_true", help="alert timings in seconds (demos, drills)"
    )
    parser.add_argument("--model", help="serve this .onnx file instead of the built-in model")
    parser.add_argument("--config", help="runtime config (YAML/TOML) for the inference server")
    parser.add_argument("--duration", type=float, help="stop by itself after this many seconds")
    for name, default in Options(state_dir=Path(".")).ports().items():
        parser.add_argument(f"--{name.replace(' ', '-')}-port", type=int, default=default)
    fleet_up.add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import loglog

    loglog.configure(console="text")
    options = Options(
        state_dir=args.state_dir or default_state_dir(),
        inference_port=args.inference_port,
        agent_port=args.agent_port,
        prometheus_port=args.prometheus_port,
        alertmanager_port=args.alertmanager_port,
        pushgateway_port=args.pushgateway_port,
        receiver_port=args.alert_receiver_port,
        demo=not args.no_demo,
        demo_streams=args.demo_streams,
        fast_alerts=args.fast_alerts,
        model=args.model,
        config=args.config,
        duration=args.duration,
        fleet=args if args.workers else None,
    )
    code = Stack(options).run()
    loglog.shutdown()
    return code
