"""Dashboards as code: generated, well-formed, and only querying declared names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.names import check_expression
from alerts.recording import recorded_names
from dashboards.generate import HERE, dashboards, stale

JSON = HERE / "json"


def _panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _queries(board: dict, kind: str = "prometheus") -> list[str]:
    return [
        t["expr"]
        for p in _panels(board)
        for t in p.get("targets", [])
        if t["datasource"]["type"] == kind
    ]


def test_committed_json_is_what_the_source_generates():
    """Editing a dashboard without regenerating fails here."""
    assert stale() == [], "run: python -m dashboards.generate"


def test_the_five_dashboards_exist_with_stable_uids():
    files = sorted(p.stem for p in JSON.glob("*.json"))
    assert (
        files
        == sorted(dashboards())
        == sorted(
            [
                "loglog-overview",
                "loglog-oncall",
                "loglog-pipeline",
                "loglog-gpu",
                "loglog-logs",
                "loglog-jobs",
            ]
        )
    )


@pytest.mark.parametrize("path", sorted(JSON.glob("*.json")), ids=lambda p: p.stem)
def test_grafana_11_model_units_descriptions_no_angular(path: Path):
    """schemaVersion set, UID ≤ 40 and equal to the file name, datasource variables, no
    Angular 'graph' panel, a unit and a description on every panel, 24-column grid,
    unique panel ids and refIds."""
    board = json.loads(path.read_text())
    assert board["uid"] == path.stem and len(board["uid"]) <= 40
    assert board["schemaVersion"] >= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(board):
        assert panel["type"] != "graph"
        assert panel["type"] in {
            "timeseries",
            "stat",
            "gauge",
            "bargauge",
            "heatmap",
            "table",
            "logs",
        }
        assert panel["description"] and panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(refs)
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in ("${datasource}", "${loki}"), (
                "datasources through variables"
            )


@pytest.mark.parametrize("path", sorted(JSON.glob("*.json")), ids=lambda p: p.stem)
def test_every_query_names_only_declared_metrics_or_recording_rules(path: Path):
    """The guard against the most common dashboard failure: a rename leaves "No data"."""
    recorded = recorded_names()
    for expr in _queries(json.loads(path.read_text())):
        assert check_expression(expr, recorded) == [], expr


def test_audiences_get_what_they_asked_for():
    """Managers see volume vs target and headroom; on-call sees alerts, burn rates and
    error logs; developers see per-stage latency, utilization, bottleneck, efficiency;
    the GPU board has SM/tensor activity and XID; the logs board has drops and spill."""
    boards = dashboards()

    def titles(uid: str) -> set[str]:
        return {p["title"] for p in _panels(boards[uid])}

    assert {
        "Items processed, last 24 h",
        "Last 24 h vs daily target",
        "Capacity headroom (streams)",
        "GPU fleet utilization",
        "Error budget left, 30 days",
    } <= titles("loglog-overview")
    assert {
        "Firing alerts",
        "Error budget burn rate (errors)",
        "Queue saturation",
        "Recent errors",
    } <= titles("loglog-oncall")
    assert {
        "Stage latency p50 / p99",
        "Stage duration heatmap",
        "Bottleneck now",
        "Engine vs pipeline efficiency",
        "MFU",
        "Batch size distribution",
    } <= titles("loglog-pipeline")
    assert {
        "SM and tensor activity (GPM)",
        "Throttle reasons now",
        "XID errors",
        "ECC errors",
    } <= titles("loglog-gpu")
    assert {
        "Drops by sink and reason",
        "Spill on disk",
        "Log lines by level and service",
    } <= titles("loglog-logs")
    exemplar = [
        t for p in _panels(boards["loglog-pipeline"]) for t in p["targets"] if t.get("exemplar")
    ]
    assert exemplar, "stage latency links to traces through exemplars"
