"""``loglog dashboards generate|push``."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("dashboards", help="generate the dashboard JSON, or push it to Grafana")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = actions.add_parser("generate", help="write dashboards/json and compose provisioning")
    generate.add_argument(
        "--check", action="store_true", help="exit 1 if the committed files are stale"
    )
    generate.set_defaults(run=_generate, extra="dashboards")
    push = actions.add_parser("push", help="upsert the dashboards into a Grafana (idempotent)")
    push.add_argument(
        "--grafana-url", default=os.environ.get("GRAFANA_URL", "http://127.0.0.1:3000")
    )
    push.add_argument(
        "--token", default=os.environ.get("GRAFANA_TOKEN"), help="service account token"
    )
    push.add_argument("--user", help="basic auth user (instead of a token)")
    push.add_argument("--password", default=os.environ.get("GRAFANA_PASSWORD"))
    push.add_argument("--folder", default="loglog", help="folder UID and title")
    push.add_argument("--prometheus-url", help="also create/update the Prometheus datasource")
    push.add_argument("--loki-url", help="also create/update the Loki datasource")
    push.set_defaults(run=_push, extra="dashboards")


def _generate(args: argparse.Namespace) -> int:
    from .generate import main

    return main(["--check"] if args.check else [])


def _push(args: argparse.Namespace) -> int:
    from .push import main

    return main(args)
