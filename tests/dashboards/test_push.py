"""`loglog dashboards push` through grafana-client against the API-faithful Grafana double."""

from __future__ import annotations

import subprocess
import sys

from dashboards.generate import dashboards
from tests.conftest import free_port
from tests.doubles.grafana import GrafanaServer


def _push(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", "dashboards", "push", "--grafana-url", url, *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_push_creates_the_folder_and_every_dashboard_then_changes_nothing():
    """First run: folder created, five dashboards created in it. Second run: every object
    'unchanged' and no write reaches Grafana (idempotent)."""
    with GrafanaServer() as grafana:
        first = _push(grafana.url, "--token", "editor-token")
        assert first.returncode == 0, first.stderr
        assert "created  folder loglog" in first.stdout
        assert grafana.state.folders["loglog"]["title"] == "loglog"
        assert set(grafana.state.dashboards) == set(dashboards())
        assert all(d["meta"]["folderUid"] == "loglog" for d in grafana.state.dashboards.values())
        writes = grafana.state.writes
        second = _push(grafana.url, "--token", "editor-token")
        assert second.returncode == 0, second.stderr
        assert "created" not in second.stdout and "updated" not in second.stdout
        assert second.stdout.count("unchanged") == 1 + len(dashboards())
        assert grafana.state.writes == writes, "a second push writes nothing"


def test_a_changed_dashboard_is_updated_in_place():
    """Someone edited a dashboard in Grafana: the push overwrites it with the source."""
    with GrafanaServer() as grafana:
        assert _push(grafana.url, "--user", "admin", "--password", "admin").returncode == 0
        stored = grafana.state.dashboards["loglog-overview"]
        stored["dashboard"] = {**stored["dashboard"], "title": "edited by hand"}
        again = _push(grafana.url, "--user", "admin", "--password", "admin")
        assert "updated  dashboard loglog-overview" in again.stdout
        assert (
            grafana.state.dashboards["loglog-overview"]["dashboard"]["title"]
            == "loglog · Service overview"
        )
        assert grafana.state.dashboards["loglog-overview"]["meta"]["version"] == 2


def test_datasources_are_created_then_kept():
    """--prometheus-url/--loki-url upsert datasources with the fixed UIDs the dashboards use."""
    with GrafanaServer() as grafana:
        args = (
            "--token",
            "editor-token",
            "--prometheus-url",
            "http://prom:9090",
            "--loki-url",
            "http://loki:3100",
        )
        assert "created  datasource loglog-prometheus" in _push(grafana.url, *args).stdout
        assert grafana.state.datasources["loglog-loki"]["url"] == "http://loki:3100"
        assert "unchanged  datasource loglog-loki" in _push(grafana.url, *args).stdout


def test_bad_credentials_forbidden_and_unreachable_fail_with_a_message():
    """401, 403 and a closed port each exit non-zero with what to check."""
    with GrafanaServer() as grafana:
        wrong = _push(grafana.url, "--token", "nope")
        assert wrong.returncode == 1 and "refused the credentials (401)" in wrong.stderr
        viewer = _push(grafana.url, "--token", "viewer-token")
        assert viewer.returncode == 1 and "needs the Editor or Admin role" in viewer.stderr
        assert grafana.state.dashboards == {}
    closed = _push(f"http://127.0.0.1:{free_port()}", "--token", "editor-token")
    assert closed.returncode == 1 and "cannot reach Grafana" in closed.stderr
