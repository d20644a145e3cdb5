"""``loglog up``: the whole stack as local processes, with a demo workload.

Starts, on loopback: the alert receiver (in this process), the inference server with
synthetic demo streams and drills allowed, the node agent, a Pushgateway, Alertmanager and
Prometheus (Debian's binaries) — with generated configs checked by ``promtool`` and
``amtool`` first. Prints what runs where, then a timestamped status line now and then,
until Ctrl-C, SIGTERM or SIGHUP (a closed terminal), and stops everything it started, on
every exit path. Exits 2 on a problem found before starting (a binary missing, a port
taken, an unreadable --model), 1 when a component fails to come up at start, or when one
is left down (a crash loop) at exit.

Once up, every component is supervised (:mod:`stack.supervisor`): one that exits is
restarted with backoff, and one that crash-loops is left down while the rest keeps
running; what happened, and the component's own last lines, go to the console, and the
supervisor's metrics to Prometheus (job ``loglog-up``), where alerts page on them.

Every file the stack writes (configs, logs, TSDB, Alertmanager and Pushgateway state,
recordings) is under ``--state-dir``; the children run with it as their working
directory. Runbook links in alerts point at ``--runbook-base-url``, by default the alert
receiver, which serves ``alerts/runbooks/`` over HTTP.
"""

from __future__ import annotations

import argparse
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
from typing import TextIO

import yaml
from prometheus_client import CollectorRegistry

from alerts.alertmanager import alertmanager_config
from alerts.config import FAST, PRODUCTION, Config
from alerts.generate import write as write_alerts
from inference.server.ports import port_free

from . import components, fleet_up
from .metrics import SupervisorCollector
from .options import Options, default_state_dir
from .processes import Process, StackError
from .prometheus import prometheus_config
from .receiver import ReceiverChild
from .supervisor import Supervisor, down_summary
from .types import FAILED, Child

BINARIES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus-pushgateway": "prometheus-pushgateway",
}


class Stack:
    """The embedded stack; ``run()`` is ``loglog up``."""

    def __init__(self, options: Options, out: TextIO = sys.stdout) -> None:
        # Absolute paths: the children run with the state directory as their cwd.
        options.state_dir = options.state_dir.resolve()
        for name in ("model", "config"):
            value = getattr(options, name)
            if value:
                setattr(options, name, str(Path(value).resolve()))
        self.o = options
        self.out = out
        self.processes: list[Process] = []
        self.receiver: ReceiverChild | None = None
        self.stopping = threading.Event()
        self.retry_asked = False  # set by SIGUSR1
        self.alerts_path = "/alerts"  # Prometheus UI; set once it answers (see _alerts_ui)
        self.supervisor = Supervisor(
            self.stamp, retry_hint=f"`kill -USR1 {os.getpid()}` (this loglog up) retries it"
        )
        self.registry = CollectorRegistry()
        self.registry.register(SupervisorCollector(self.supervisor.status))

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def stamp(self, text: str) -> None:
        """A status line, with the local time first (logs are read after the fact)."""
        self.say(f"{time.strftime('%H:%M:%S')} {text}")

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
        if self.o.model and not os.access(self.o.model, os.R_OK):
            raise StackError(
                f"--model {self.o.model}: no such readable file. Give the path of an .onnx, "
                "TensorRT or .pt file, or leave --model out to serve the built-in model."
            )
        if self.o.fleet is not None:
            fleet_up.preflight(self.o.fleet)
        by_port: dict[int, list[str]] = {}
        for name, port in self.o.ports().items():
            by_port.setdefault(port, []).append(name)
        shared = [
            f"{port} ({', '.join(names)})" for port, names in by_port.items() if len(names) > 1
        ]
        if shared:
            # Two of our own components on one port: the second fails to bind, possibly
            # after it reported ready through a different listener (RabbitMQ does).
            raise StackError(
                f"the same port is given to several components: {'; '.join(shared)}. "
                "Pass a distinct --<component>-port to each (see loglog up --help)."
            )
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
        receiver = self.url(self.o.receiver_port)
        cfg = Config(
            timing=FAST if self.o.fast_alerts else PRODUCTION,
            runbook_base=(self.o.runbook_base_url or f"{receiver}/runbooks").rstrip("/"),
        )
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
                # The supervisor's own metrics, on the alert receiver's /metrics.
                "loglog-up": [f"{h}:{self.o.receiver_port}"],
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
        o, state = self.o, self.o.state_dir
        receiver = ReceiverChild(o.host, o.receiver_port, state / "alerts.jsonl", self.registry)
        receiver.start()
        self.receiver = receiver
        self.supervisor.watch(receiver, start_timeout=10.0, alerting=True)
        self._done(
            "alert receiver",
            f"{receiver.url}/alerts  (notifications: {state / 'alerts.jsonl'})",
            0.0,
        )
        (state / "pushgateway").mkdir(parents=True, exist_ok=True)
        started = components.core(o, configs, self.tsdb())
        if o.fleet is not None:
            started += fleet_up.components(o.fleet, o.host, state)
        for process, where, timeout in started:
            if self.out.isatty():
                self.out.write(f"  … {process.name:<15} starting\r")
                self.out.flush()
            process.start()
            self.processes.append(process)
            seconds = process.wait_ready(timeout, self.stopping.is_set)
            self.supervisor.watch(
                process, start_timeout=timeout, alerting=process.name in components.ALERTING
            )
            if process.name == "prometheus":
                self.alerts_path = self._alerts_ui()
                where = f"{where}{self.alerts_path}"
            self._done(process.name, where, seconds)
        if o.fleet is not None and o.fleet.workers:
            self.say(f"  job store: {fleet_up.store_line(o.fleet, state)}")
            if o.demo:
                jobs = fleet_up.submit_demo_jobs(o.fleet, o.host)
                self.say(f"  demo jobs: {', '.join(jobs)}")
        self.say(
            f"  every component is restarted when it exits ({self.supervisor.policy.describe()})"
        )

    def tsdb(self) -> Path:
        """Prometheus' data directory: one per mode, so that switching between a plain and
        a ``--workers`` stack in one state directory never evaluates the other mode's
        series (they linger 5 minutes after a restart and paged FleetBrokerDown)."""
        mode = "" if self.o.fleet is None else "-fleet"
        return self.o.state_dir / f"prometheus{mode}"

    def _alerts_ui(self) -> str:
        """The Prometheus alerts page that answers: ``/alerts`` where the bundled UI has
        it (3.x, upstream 2.x), ``/classic/alerts`` on Debian's 2.x, which ships without
        the React UI (its ``/alerts`` is a 404)."""
        for path in ("/alerts", "/classic/alerts"):
            try:
                with urllib.request.urlopen(
                    f"{self.url(self.o.prometheus_port)}{path}", timeout=5
                ) as response:
                    if response.status == 200:
                        return path
            except (OSError, ValueError):
                continue
        return "/classic/alerts" if _prometheus_major() == 2 else "/alerts"

    def _done(self, name: str, where: str, seconds: float) -> None:
        self.say(f"  ✓ {name:<15} {where}  ({seconds:.1f} s)")

    # -- running -------------------------------------------------------------------------

    def status(self) -> str:
        """One line: throughput, verdict, firing alerts, and what is down and why."""
        down = down_summary(self.supervisor.status())
        try:
            with urllib.request.urlopen(
                f"{self.url(self.o.inference_port)}/v1/profile", timeout=3
            ) as r:
                verdict = json.load(r)["verdict"]
            rate, capacity = verdict["delivered_per_s"], verdict["capacity_per_s"]
            serving = (
                f"{rate:.1f} items/s of {capacity:.1f} capacity, bottleneck {verdict['bottleneck']}"
            )
        except (OSError, ValueError, KeyError, TypeError):
            serving = "inference not answering"
        try:
            with urllib.request.urlopen(
                f"{self.url(self.o.prometheus_port)}/api/v1/alerts", timeout=3
            ) as r:
                firing = [
                    a["labels"]["alertname"]
                    for a in json.load(r)["data"]["alerts"]
                    if a["state"] == "firing"
                ]
            alerts = ", ".join(sorted(set(firing))) or "none"
        except (OSError, ValueError, KeyError, TypeError):
            alerts = "(Prometheus not answering)"
        return f"status: {serving}; firing: {alerts}" + (f"; DOWN: {down}" if down else "")

    def wait(self) -> int:
        """Supervise until a signal or --duration; 1 if a component is left down then."""
        deadline = None if self.o.duration is None else time.monotonic() + self.o.duration
        next_status = time.monotonic() + 10
        while not self.stopping.wait(0.5):
            if self.retry_asked:
                self.retry_asked = False
                names = self.supervisor.retry_failed()
                asked = f"retrying: {', '.join(names)}" if names else "nothing is left down"
                self.stamp(f"SIGUSR1: {asked}")
            self.supervisor.tick()
            if deadline is not None and time.monotonic() >= deadline:
                break
            if time.monotonic() >= next_status:
                self.stamp(self.status())
                next_status = time.monotonic() + 30
        left_down = [s.name for s in self.supervisor.status() if s.state == FAILED]
        if left_down:
            self.stamp(f"loglog up: left down at exit: {', '.join(left_down)}")
        return 1 if left_down else 0

    def stop(self) -> None:
        # Prometheus first: it stops watching before the rest goes away on purpose, so
        # the last samples it keeps are of a healthy stack (no "down" series that page
        # after the next start); the receiver last, in case something still notifies.
        first = [p for name in ("prometheus", "alertmanager") for p in self.processes
                 if p.name == name]  # fmt: skip
        order: list[Child] = [*first, *(p for p in reversed(self.processes) if p not in first)]
        if self.receiver is not None:
            order.append(self.receiver)
        left = self.supervisor.stop(order)
        self.stamp("stopped everything" if not left else f"could not stop: {', '.join(left)}")

    def run(self) -> int:
        # SIGHUP too: a closed terminal or a dropped SSH session must stop the stack like
        # Ctrl-C does (before, it killed only this process and orphaned five children).
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: self.stopping.set())
        # SIGUSR1: retry components left down by a crash loop (after fixing the cause).
        # A plain attribute, not an Event: the handler must not take a lock.
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "retry_asked", True))
        self.say(f"loglog up — state and logs in {self.o.state_dir}")
        try:
            self.preflight()
            configs = self.prepare()
        except StackError as exc:
            self.say(f"loglog up: {exc}")
            return 2
        try:
            self.start(configs)
            self.say(_next_steps(self.o, self.alerts_path))
            return self.wait()
        except StackError as exc:
            self.say(f"loglog up: {exc}")
            return 1
        finally:  # every exit path, exceptions included, stops what was started
            self.stop()


def _check(argv: list[str], message: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"{message}:\n{result.stdout}{result.stderr}")


def _prometheus_major() -> int:
    """The major version of the ``prometheus`` binary (2 when it cannot be told)."""
    try:
        result = subprocess.run(
            ["prometheus", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        words = (result.stdout + result.stderr).split()
        version = words[words.index("version") + 1]
        return int(version.split(".")[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return 2


def _next_steps(o: Options, alerts_path: str = "/alerts") -> str:
    inference = f"http://{o.host}:{o.inference_port}"
    loglog = Path(sys.executable).parent / "loglog"
    on_path = shutil.which("loglog") == str(loglog)
    command = "loglog" if on_path else str(loglog)
    activate = Path(sys.executable).parent / "activate"
    hint = (
        ""
        if on_path or not activate.exists()
        else f"  (to type just `loglog`: . {os.path.relpath(activate)})\n"
    )
    return (
        "Everything is up. Try:\n"
        f"{hint}"
        f"  {command} profile --url {inference} --agent http://{o.host}:{o.agent_port}\n"
        f"  curl -s -XPOST {inference}/v1/drills -H 'content-type: application/json' "
        '-d \'{"stage": "preprocess", "delay_ms": 100, "duration_s": 120}\'\n'
        f"  open http://{o.host}:{o.prometheus_port}{alerts_path}  ·  "
        f"http://{o.host}:{o.alertmanager_port}\n"
        f"  {command} report --prometheus http://{o.host}:{o.prometheus_port} "
        f"--out {o.state_dir / 'reports'} --pdf\n"
        "Ctrl-C stops everything."
    )


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
        runbook_base_url=args.runbook_base_url,
    )
    code = Stack(options).run()
    loglog.shutdown()
    return code
