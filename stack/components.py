"""The core children of ``loglog up``: what each runs, where it is ready, how long it may take.

The inference server, the node agent, the Pushgateway, Alertmanager and Prometheus, in
start order (Prometheus last, so its first scrapes find the others up). The fleet's
children (``--workers``) come from :mod:`stack.fleet_up`. Each is a
:class:`stack.processes.Process` run in the state directory, logging to ``logs/<name>.log``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .processes import Process

REPO = Path(__file__).resolve().parent.parent
#: The alerting path: while one of these is down, nothing can page.
ALERTING = frozenset({"prometheus", "alertmanager", "alert receiver"})
#: What the agent watches (the inference server's process title; see stack.proctitle).
INFERENCE_TITLE = "loglog serve"


def child_env() -> dict[str, str]:
    """Environment for our Python children: JSON logs on stdout, this checkout importable
    (they run in the state directory)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {"LOGLOG_CONSOLE": "json", "LOGLOG_CONSOLE_STREAM": "stdout", "PYTHONPATH": path}


def core(o: Any, configs: dict[str, Path], tsdb: Path) -> list[tuple[Process, str, float]]:
    """(process, where it answers, start-up timeout) for each core component; ``o`` is
    :class:`stack.up.Options`."""
    state, py, h = o.state_dir, sys.executable, o.host

    def url(port: int) -> str:
        return f"http://{h}:{port}"

    serve = [py, "-m", "stack.cli", "serve", "--host", h, "--port", str(o.inference_port),
             "--allow-drills"]  # fmt: skip
    if o.demo:
        serve += ["--demo-streams", str(o.demo_streams)]
    if o.model:
        serve += ["--model", o.model]
    if o.config:
        serve += ["--config", o.config]
    agent = [py, "-m", "stack.cli", "agent", "--host", h, "--port", str(o.agent_port),
             "--watch-name", INFERENCE_TITLE]  # fmt: skip
    streams = o.demo_streams if o.demo else "no"
    logs, env = state / "logs", child_env()
    return [
        (
            Process("inference", serve, f"{url(o.inference_port)}/readyz",
                    logs / "inference.log", env, cwd=state),
            f"{url(o.inference_port)}  ({streams} demo streams, drills allowed)",
            180.0,
        ),
        (
            Process("agent", agent, f"{url(o.agent_port)}/healthz", logs / "agent.log", env,
                    cwd=state),
            f"{url(o.agent_port)}/metrics",
            60.0,
        ),
        (
            Process("pushgateway", ["prometheus-pushgateway",
                                    f"--web.listen-address={h}:{o.pushgateway_port}",
                                    f"--persistence.file={state / 'pushgateway' / 'metrics.db'}"],
                    f"{url(o.pushgateway_port)}/-/ready", logs / "pushgateway.log", cwd=state),
            url(o.pushgateway_port),
            30.0,
        ),
        (
            Process("alertmanager", ["prometheus-alertmanager",
                                     f"--config.file={configs['alertmanager']}",
                                     f"--storage.path={state / 'alertmanager'}",
                                     f"--web.listen-address={h}:{o.alertmanager_port}",
                                     # no gossip port: a single local instance
                                     "--cluster.listen-address="],
                    f"{url(o.alertmanager_port)}/-/ready", logs / "alertmanager.log", cwd=state),
            url(o.alertmanager_port),
            30.0,
        ),
        (
            Process("prometheus", ["prometheus", f"--config.file={configs['prometheus']}",
                                   f"--storage.tsdb.path={tsdb}",
                                   f"--web.listen-address={h}:{o.prometheus_port}",
                                   "--enable-feature=exemplar-storage", "--web.enable-lifecycle"],
                    f"{url(o.prometheus_port)}/-/ready", logs / "prometheus.log", cwd=state),
            url(o.prometheus_port),
            60.0,
        ),
    ]  # fmt: skip
