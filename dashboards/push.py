"""``loglog dashboards push``: upsert the dashboards (and optionally datasources) into Grafana.

Through grafana-client. Idempotent: the folder is created only when missing, a dashboard
is written only when its content differs from what Grafana has (running twice changes
nothing), datasources are created or updated by their fixed UID. 401/403/unreachable stop
with a message that says what to check, and a non-zero exit.
"""

from __future__ import annotations

import sys
from typing import Any

from .generate import dashboards
from .variables import LOKI_UID, PROMETHEUS_UID

_IGNORED = ("id", "version")


class PushError(Exception):
    """Grafana refused or could not be reached; the message says what to check."""


def _explain(exc: Exception, url: str) -> PushError:
    status = getattr(exc, "status_code", None)
    if status == 401:
        return PushError(
            f"Grafana at {url} refused the credentials (401): check --token or --user/--password"
        )
    if status == 403:
        return PushError(
            f"Grafana at {url} forbids this (403): the token or user needs the Editor or Admin role"
        )
    if status in (0, None):
        return PushError(
            f"cannot reach Grafana at {url}: {exc} — check --grafana-url and that Grafana runs"
        )
    return PushError(f"Grafana at {url} answered {status}: {getattr(exc, 'message', exc)}")


def connect(
    url: str, token: str | None = None, user: str | None = None, password: str | None = None
) -> Any:
    from grafana_client import GrafanaApi

    credential: Any = token or ((user, password) if user else None)
    api = GrafanaApi.from_url(url, credential=credential, timeout=10.0)
    try:
        api.health.check()
    except Exception as exc:
        raise _explain(exc, url) from exc
    return api


def push(
    api: Any,
    *,
    folder: str = "loglog",
    prometheus_url: str | None = None,
    loki_url: str | None = None,
    url: str = "",
) -> dict[str, str]:
    """Upsert everything; returns what happened to each object (created/updated/unchanged)."""
    from grafana_client.client import GrafanaClientError

    report: dict[str, str] = {}
    try:
        try:
            api.folder.get_folder(folder)
            report[f"folder {folder}"] = "unchanged"
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(folder, uid=folder)
            report[f"folder {folder}"] = "created"
        for uid, ds_url, kind, name in (
            (PROMETHEUS_UID, prometheus_url, "prometheus", "Prometheus (loglog)"),
            (LOKI_UID, loki_url, "loki", "Loki (loglog)"),
        ):
            if ds_url:
                report[f"datasource {uid}"] = _upsert_datasource(api, uid, kind, name, ds_url)
        for uid, board in dashboards().items():
            report[f"dashboard {uid}"] = _upsert_dashboard(api, board, folder)
    except PushError:
        raise
    except Exception as exc:
        raise _explain(exc, url) from exc
    return report


def _upsert_datasource(api: Any, uid: str, kind: str, name: str, url: str) -> str:
    from grafana_client.client import GrafanaClientError

    wanted = {
        "uid": uid,
        "name": name,
        "type": kind,
        "url": url,
        "access": "proxy",
        "jsonData": {"timeInterval": "5s"} if kind == "prometheus" else {},
    }
    try:
        current = api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.datasource.create_datasource(wanted)
        return "created"
    if all(current.get(key) == value for key, value in wanted.items()):
        return "unchanged"
    api.datasource.update_datasource_by_uid(uid, wanted)
    return "updated"


def _upsert_dashboard(api: Any, board: dict[str, Any], folder: str) -> str:
    from grafana_client.client import GrafanaClientError

    try:
        current = api.dashboard.get_dashboard(board["uid"])
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        current = None
    if current is not None:
        same_folder = current.get("meta", {}).get("folderUid") == folder
        existing = {k: v for k, v in current["dashboard"].items() if k not in _IGNORED}
        if same_folder and existing == {k: v for k, v in board.items() if k not in _IGNORED}:
            return "unchanged"
    api.dashboard.update_dashboard(
        {
            "dashboard": {**board, "id": None},
            "folderUid": folder,
            "overwrite": True,
            "message": "loglog dashboards push",
        }
    )
    return "created" if current is None else "updated"


def main(args: Any) -> int:
    try:
        api = connect(args.grafana_url, args.token, args.user, args.password)
        report = push(
            api,
            folder=args.folder,
            prometheus_url=args.prometheus_url,
            loki_url=args.loki_url,
            url=args.grafana_url,
        )
    except PushError as exc:
        sys.stderr.write(f"loglog dashboards push: {exc}\n")
        return 1
    for name, outcome in report.items():
        print(f"{outcome:>9}  {name}")
    return 0
