"""Read access to the dashboards' panels, for consumers other than Grafana (``loglog report``).

The dashboards are the one place where a query, its title, unit and description are written;
this module hands them out as small frozen objects so nothing copies a query. A panel is found
by dashboard UID and title; template variables are expanded for a plain Prometheus query.

>>> from dashboards.panels import panel
>>> throughput = panel("loglog-overview", "Throughput")
>>> throughput.targets[0].promql({"job": ".*"})
'job:inference_delivered_items:rate5m{job=~".*"}'
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from alerts.config import Config

_VARIABLE = re.compile(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?")


class PanelNotFound(LookupError):
    """A consumer asked for a panel the dashboards do not define (renamed or removed)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """One query of a panel, as written in the dashboard source."""

    expr: str
    legend: str
    datasource: str  # "prometheus" or "loki"

    def promql(self, values: dict[str, str]) -> str:
        """The expression with ``$name``/``${name}`` replaced by ``values[name]``.

        A variable without a value raises ``KeyError`` naming it: a silent ``.*`` could
        turn a ratio's denominator into the wrong series.
        """

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise KeyError(f"no value for dashboard variable ${name} in {self.expr!r}")
            return values[name]

        return _VARIABLE.sub(replace, self.expr)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Panel:
    """A panel's query targets and the words around them."""

    dashboard: str
    kind: str
    title: str
    description: str
    unit: str
    targets: tuple[Target, ...]


def panels(uid: str, cfg: Config | None = None) -> list[Panel]:
    """Every panel of dashboard ``uid`` (rows left out), in layout order."""
    from .generate import dashboards  # generate imports every board; keep import-time light

    boards = dashboards(cfg)
    if uid not in boards:
        raise PanelNotFound(f"no dashboard {uid!r}; the dashboards are {sorted(boards)}")
    return [_panel(uid, p) for p in boards[uid]["panels"] if p["type"] != "row"]


def panel(uid: str, title: str, cfg: Config | None = None) -> Panel:
    """The panel titled ``title`` on dashboard ``uid``; ``PanelNotFound`` says which exist."""
    found = [p for p in panels(uid, cfg) if p.title == title]
    if not found:
        titles = ", ".join(repr(p.title) for p in panels(uid, cfg))
        raise PanelNotFound(f"dashboard {uid!r} has no panel {title!r}; it has {titles}")
    return found[0]


def dashboard_uids(cfg: Config | None = None) -> list[str]:
    """The UIDs of every generated dashboard (boards added by other packages included)."""
    from .generate import dashboards

    return list(dashboards(cfg))


def variable_defaults(uid: str, cfg: Config | None = None) -> dict[str, str]:
    """Each template variable's default for a query outside Grafana: ``.*`` for a query
    variable (Grafana's "All"), a text box's default text, the selected value of a custom,
    constant or interval variable; nothing for datasource pickers (queries do not name them)."""
    from .generate import dashboards

    values: dict[str, str] = {}
    for variable in dashboards(cfg)[uid]["templating"]["list"]:
        kind, name = variable["type"], variable["name"]
        if kind == "query":
            values[name] = ".*"
        elif kind == "textbox":
            values[name] = str(variable["query"])
        elif kind in ("custom", "constant", "interval"):
            current = variable.get("current", {}).get("value")
            values[name] = str(current if current not in (None, "") else variable.get("query", ""))
    return values


def _panel(uid: str, raw: dict[str, Any]) -> Panel:
    return Panel(
        dashboard=uid,
        kind=raw["type"],
        title=raw["title"],
        description=raw["description"],
        unit=raw["fieldConfig"]["defaults"]["unit"],
        targets=tuple(
            Target(
                expr=t["expr"],
                legend=t.get("legendFormat", ""),
                datasource=t["datasource"]["type"],
            )
            for t in raw.get("targets", [])
        ),
    )
