"""Turn the catalog into Prometheus rule files, promtool tests, runbooks.

Expected annotations in promtool tests are rendered here the way Prometheus renders them
(Go's ``humanize``, ``humanizePercentage``, ``printf``): promtool then checks the rule's
real rendering against ours, so a template mistake fails the tests.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .catalog import Alert
from .config import Config
from .fleet_alerts import fleet_alerts
from .inference_alerts import inference_alerts
from .platform_alerts import platform_alerts
from .recording import recording_rules
from .supervisor_alerts import supervisor_alerts

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_PRINTF = re.compile(r'^\$value \| printf "(%[^"]+)"$')


def all_alerts(cfg: Config) -> list[Alert]:
    return inference_alerts(cfg) + platform_alerts(cfg) + fleet_alerts(cfg) + supervisor_alerts(cfg)


def humanize(value: float) -> str:
    """Prometheus' ``humanize``: SI prefixes, 4 significant digits."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return "%.4g" % value  # noqa: UP031 - mirrors Go's fmt
    prefix = ""
    if abs(value) >= 1:
        for candidate in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix, value = candidate, value / 1000
    else:
        for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
            if abs(value) >= 1:
                break
            prefix, value = candidate, value * 1000
    return "%.4g%s" % (value, prefix)  # noqa: UP031


def render(template: str, labels: dict[str, str], value: float) -> str:
    """Render the template subset the catalog allows (see alerts.catalog)."""

    def one(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        if inner.startswith("$labels."):
            return labels.get(inner.removeprefix("$labels."), "")
        if inner == "$value | humanize":
            return humanize(value)
        if inner == "$value | humanizePercentage":
            return "%.4g%%" % (value * 100)
        printf = _PRINTF.match(inner)
        if printf:
            return printf.group(1) % value
        raise ValueError(f"template {{{{{inner}}}}} is outside the supported subset")

    return _TEMPLATE.sub(one, template)


def annotation_templates(alert: Alert, cfg: Config) -> dict[str, str]:
    return {
        "summary": alert.summary,
        "description": alert.description,
        "runbook_url": f"{cfg.runbook_base}/{alert.name}.md",
    }


def rule_file(cfg: Config) -> dict[str, Any]:
    """The Prometheus rule file: a recording group and an alerting group."""
    alert_rules = []
    for alert in all_alerts(cfg):
        rule: dict[str, Any] = {"alert": alert.name, "expr": alert.expr}
        if alert.for_:
            rule["for"] = alert.for_
        rule["labels"] = alert.all_labels()
        rule["annotations"] = annotation_templates(alert, cfg)
        alert_rules.append(rule)
    return {
        "groups": [
            {"name": "loglog.recording", "rules": recording_rules(cfg)},
            {"name": "loglog.alerts", "rules": alert_rules},
        ]
    }


def test_file(cfg: Config, rule_path: str) -> dict[str, Any]:
    """promtool's unit-test file: every case of every alert."""
    tests = []
    for alert in all_alerts(cfg):
        for case in alert.cases:
            expected = []
            for labels in case.fires:
                # Rule labels may be templates too ("{{ $labels.component }}" keeps a label).
                full = {k: render(v, labels, case.value) for k, v in
                        {**labels, **alert.all_labels()}.items()}  # fmt: skip
                rendered = {
                    k: render(v, full, case.value)
                    for k, v in annotation_templates(alert, cfg).items()
                }
                expected.append({"exp_labels": full, "exp_annotations": rendered})
            tests.append(
                {
                    "name": f"{alert.name}: {case.name}",
                    "interval": case.interval,
                    "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                    "alert_rule_test": [
                        {"eval_time": case.at, "alertname": alert.name, "exp_alerts": expected}
                    ],
                }
            )
    return {"rule_files": [rule_path], "evaluation_interval": "1m", "tests": tests}


def runbook(alert: Alert, cfg: Config) -> str:
    """The Markdown runbook of one alert."""
    return (
        f"# {alert.name}\n\n"
        f"**Severity:** {alert.severity} ({'pages' if alert.severity == 'critical' else 'tickets'})"
        f" · **Component:** {alert.component}\n\n"
        f"```promql\n{alert.expr}\n```\n"
        + (f"\nFires after the condition holds for {alert.for_}.\n" if alert.for_ else "")
        + f"\n## What it means\n\n{alert.meaning}\n"
        f"\n## How to confirm\n\n{alert.confirm}\n"
        f"\n## How to fix\n\n{alert.fix}\n"
    )
