"""A small builder for Grafana 11 dashboards as plain dicts.

No Angular ``graph`` panels, stable UIDs, datasources through template variables
(``${datasource}``, ``${loki}``) so the JSON works in any Grafana, panel ids and refIds
assigned here (the Grafana model leaves them to us), and every panel has a unit and a
description — the builder refuses a panel without them.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 39  # Grafana 11.0
PROMETHEUS = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "${loki}"}
PANEL_TYPES = frozenset(
    {"timeseries", "stat", "gauge", "bargauge", "heatmap", "table", "logs", "row"}
)


def prom(
    expr: str, legend: str = "", *, instant: bool = False, exemplar: bool = False, fmt: str = ""
) -> dict[str, Any]:
    """A Prometheus query target."""
    target: dict[str, Any] = {
        "datasource": PROMETHEUS,
        "expr": expr,
        "legendFormat": legend or "__auto",
    }
    if instant:
        target["instant"], target["range"] = True, False
    if exemplar:
        target["exemplar"] = True
    if fmt:
        target["format"] = fmt
    return target


def loki(expr: str, legend: str = "") -> dict[str, Any]:
    """A Loki (LogQL) query target."""
    return {"datasource": LOKI, "expr": expr, "legendFormat": legend, "queryType": "range"}


def panel(
    kind: str,
    title: str,
    description: str,
    unit: str,
    targets: list[dict[str, Any]],
    *,
    options: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    datasource: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One panel; ``defaults`` go to fieldConfig.defaults (min, max, thresholds, …)."""
    if kind not in PANEL_TYPES or kind == "row":
        raise ValueError(
            f"panel type {kind!r} is not allowed (no Angular graph): {sorted(PANEL_TYPES)}"
        )
    if not description or not unit:
        raise ValueError(f"panel {title!r} needs a description and a unit")
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource or (targets[0]["datasource"] if targets else PROMETHEUS),
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, **(defaults or {})}, "overrides": []},
        "options": options or {},
    }


def timeseries(
    title: str, description: str, unit: str, targets: list[dict[str, Any]], **defaults: Any
) -> dict[str, Any]:
    return panel(
        "timeseries",
        title,
        description,
        unit,
        targets,
        defaults=defaults,
        options={
            "legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi"},
        },
    )


def stat(
    title: str, description: str, unit: str, targets: list[dict[str, Any]], **defaults: Any
) -> dict[str, Any]:
    return panel(
        "stat",
        title,
        description,
        unit,
        targets,
        defaults=defaults,
        options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
    )


def gauge(
    title: str, description: str, unit: str, targets: list[dict[str, Any]], **defaults: Any
) -> dict[str, Any]:
    return panel(
        "gauge",
        title,
        description,
        unit,
        targets,
        defaults={"min": 0, "max": 1, **defaults},
        options={"reduceOptions": {"calcs": ["lastNotNull"]}},
    )


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    """Threshold steps, e.g. ``thresholds((None, "red"), (0.8, "green"))``."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


class Dashboard:
    """Panels laid out left to right on Grafana's 24-column grid."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        tags: list[str],
        variables: list[dict[str, Any]],
    ) -> None:
        if len(uid) > 40:
            raise ValueError(f"Grafana UIDs are at most 40 characters: {uid!r}")
        self.uid, self.title, self.description = uid, title, description
        self.tags, self.variables = tags, variables
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_height = 0

    def row(self, title: str) -> Dashboard:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": self._y, "w": 24, "h": 1},
            }
        )
        self._y += 1
        return self

    def add(self, item: dict[str, Any], w: int = 12, h: int = 8) -> Dashboard:
        if self._x + w > 24:
            self._newline()
        item = dict(item, gridPos={"x": self._x, "y": self._y, "w": w, "h": h})
        self.panels.append(item)
        self._x += w
        self._row_height = max(self._row_height, h)
        return self

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_height
        self._x = self._row_height = 0

    def json(self) -> dict[str, Any]:
        panels = []
        for number, item in enumerate(self.panels, start=1):
            item = dict(item, id=number)
            if "targets" in item:
                item["targets"] = [
                    dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(item["targets"])
                ]
            panels.append(item)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "time": {"from": "now-1h", "to": "now"},
            "refresh": "30s",
            "timezone": "browser",
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "links": [
                {"type": "dashboards", "tags": ["loglog"], "asDropdown": True, "title": "loglog"}
            ],
            "panels": panels,
        }


def datasource_variable(name: str, kind: str, default_uid: str) -> dict[str, Any]:
    """A datasource picker; defaults to the UID compose provisions."""
    return {
        "type": "datasource",
        "name": name,
        "label": kind.capitalize(),
        "query": kind,
        "current": {"text": default_uid, "value": default_uid},
        "hide": 0,
    }


def query_variable(
    name: str, query: str, *, label: str = "", include_all: bool = True, multi: bool = True
) -> dict[str, Any]:
    """A variable filled from label values (``label_values(metric, label)``)."""
    return {
        "type": "query",
        "name": name,
        "label": label or name,
        "datasource": PROMETHEUS,
        "query": {"query": query, "refId": "variable"},
        "definition": query,
        "refresh": 2,
        "includeAll": include_all,
        "multi": multi,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"} if include_all else {},
        "sort": 1,
        "hide": 0,
    }


def text_variable(name: str, label: str, default: str) -> dict[str, Any]:
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": default,
        "current": {"text": default, "value": default},
        "hide": 0,
    }
