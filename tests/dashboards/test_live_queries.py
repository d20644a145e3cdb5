"""Every dashboard query runs against a live Prometheus scraping a running inference
server and agent (`loglog up`); the ones whose metrics exist return data."""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import urllib.request

import pytest

from alerts.names import identifiers
from dashboards.generate import dashboards
from tests.conftest import until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus"),
]
VARIABLES = {
    "$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m", "$daily_target": "1000000",
    # Single-valued (matched with =, not =~): Grafana gives it one stage, so do we.
    "$stage": "infer",
}  # fmt: skip
#: Queries that are empty on a healthy stack by design.
EMPTY_WHEN_HEALTHY = {'ALERTS{alertstate="firing"}'}


def _query(prometheus: str, expr: str) -> dict:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        return json.load(exc)


def _substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?[a-zA-Z_]+\}?", ".*", expr)  # $job, $instance, $model… → all


def test_every_prometheus_query_runs_and_returns_data_where_its_metrics_exist(loglog_up):
    prometheus = loglog_up()["prometheus"]
    wanted = "job:inference_delivered_items:rate5m"
    until(lambda: _query(prometheus, wanted)["data"]["result"], 90, "recording rules with data")
    names = set(
        json.load(urllib.request.urlopen(f"{prometheus}/api/v1/label/__name__/values"))["data"]
    )
    ran, with_data, expected_empty = 0, 0, []
    for uid, board in dashboards().items():
        if uid == "loglog-jobs":
            continue  # needs a fleet: tests/fleet/test_up.py runs it against `up --workers 1`
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] != "prometheus":
                    continue
                expr = _substitute(target["expr"])
                answer = _query(prometheus, expr)
                assert answer["status"] == "success", (
                    f"{uid} / {panel['title']}: {answer.get('error')} in {expr}"
                )
                ran += 1
                if answer["data"]["result"]:
                    with_data += 1
                elif (
                    identifiers(target["expr"]) <= names
                    and target["expr"] not in EMPTY_WHEN_HEALTHY
                ):
                    expected_empty.append(f"{uid} / {panel['title']}: {expr}")
                # else: a metric this machine cannot have (GPU, MFU on CPU, firing ALERTS)
    print(f"\n{ran} dashboard queries ran without error; {with_data} returned data")
    assert expected_empty == [], "queries whose metrics exist but returned nothing"
    assert with_data >= ran // 2
