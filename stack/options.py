"""What ``loglog up`` can be told: its options and its command line.

Apart from :mod:`stack.up` so that the ``loglog`` command (and ``loglog report``, which
reads the same defaults) builds its parser without the packages ``loglog up`` runs on:
on a logger-only install, ``loglog up`` then says which extra it needs (stack/extras.py).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from . import fleet_up


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
    runbook_base_url: str | None = None  # default: the alert receiver's /runbooks

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


def add_parser(sub: Any) -> Any:
    """``loglog up``'s arguments; the caller (stack/cli.py) sets what runs it."""
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
    parser.add_argument(
        "--runbook-base-url",
        help="where alerts' runbook links point (default: the alert receiver's /runbooks)",
    )
    for name, default in Options(state_dir=Path(".")).ports().items():
        parser.add_argument(f"--{name.replace(' ', '-')}-port", type=int, default=default)
    fleet_up.add_arguments(parser)
    parser.set_defaults(extra="serve,agent")
    return parser
