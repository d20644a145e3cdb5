"""Alert definitions: each one carries its promtool cases and its runbook.

An :class:`Alert` is the rule (expression, ``for``, severity, component, annotation
templates), the runbook text (what it means, how to confirm, how to fix) and
:class:`Case` s — input series with what must fire at an evaluation time, including at
least one healthy case where nothing may fire. ``alerts.generate`` turns these into the
committed rule file, promtool test file and runbooks.

Annotation templates may use ``{{ $labels.x }}`` and ``{{ $value | humanize }}``,
``{{ $value | humanizePercentage }}`` or ``{{ $value | printf "%.Ng" }}`` — the subset the
generator can render to write the expected annotations of the promtool tests.
"""

from __future__ import annotations

import dataclasses

from .config import BURN_WINDOWS, Config

INF = 'job="inference", instance="inf:8000"'
AGT = 'job="agent", instance="node:9400"'
GPU0 = 'gpu="0", uuid="GPU-0"'


@dataclasses.dataclass(frozen=True)
class Case:
    """One promtool case: series (selector → values notation), evaluation time, and the
    labels of each alert expected to fire then (none: the alert must stay silent)."""

    name: str
    series: dict[str, str]
    at: str
    fires: tuple[dict[str, str], ...] = ()
    value: float = 0.0  # $value when it fires (renders the description)
    interval: str = "1m"


@dataclasses.dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str  # critical pages, warning tickets
    component: str  # inference, gpu, agent, logging (used by inhibition)
    summary: str
    description: str
    meaning: str
    confirm: str
    fix: str
    cases: tuple[Case, ...]
    for_: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    def all_labels(self) -> dict[str, str]:
        return {"severity": self.severity, "component": self.component, **self.labels}


def burn_rate_alerts(
    cfg: Config,
    *,
    slo: str,
    ratio: str,
    what: str,
    cases: dict[str, tuple[Case, ...]],
    counts: str = "",
) -> list[Alert]:
    """Multiwindow, multi-burn-rate alerts (SRE workbook) for one SLO: a page for fast
    burns (1h & 5m at 14.4×, 6h & 30m at 6×) and a ticket for slow ones (1d & 2h at 3×,
    3d & 6h at 1×). ``counts`` says which requests the SLO counts (runbook text)."""
    budget = cfg.budget
    alerts = []
    for severity, suffix, for_ in (
        ("critical", "", cfg.timing.page_for),
        ("warning", "Slow", cfg.timing.ticket_for),
    ):
        windows = [w for w in BURN_WINDOWS if w[3] == severity]
        expr = " or ".join(
            f"({ratio}{long} > ({factor} * {budget}) and {ratio}{short} > ({factor} * {budget}))"
            for long, short, factor, _ in windows
        )
        name = f"Inference{slo.capitalize()}BudgetBurn{suffix}"
        # 14.4× and 6× spend a 30-day budget in about 2 and 5 days; 3× and 1× in 10 and 30.
        pace = "within days" if severity == "critical" else "before the 30 days are over"
        alerts.append(
            Alert(
                name=name,
                expr=expr,
                for_=for_,
                severity=severity,
                component="inference",
                labels={"slo": slo},
                summary=(
                    f"Requests to {{{{ $labels.job }}}} {what} at a rate that spends the 30-day "
                    f"error budget {pace}"
                ),
                description=(
                    f"{{{{ $value | humanizePercentage }}}} of requests {what} over the long burn "
                    f"window; the budget allows {budget:.2%} (a {cfg.slo_target:.0%} objective)."
                ),
                meaning=(
                    f"The share of requests that {what} is high enough that, at this pace, the "
                    f"{cfg.slo_target:.0%} SLO's error budget runs out "
                    + ("within days." if severity == "critical" else "before the month ends.")
                    + (f" {counts}" if counts else "")
                ),
                confirm=(
                    "Open the on-call dashboard: the burn-rate panel shows every window. "
                    f"Query `{ratio}5m` and `{ratio}1h` in Prometheus; check recent deploys, "
                    "drills (`GET /v1/drills`) and the pipeline profiler for a bottleneck."
                ),
                fix=(
                    "Find the cause with `loglog profile`: a saturated stage raises latency, an "
                    "engine error raises errors. Roll back a bad deploy, add capacity or workers, "
                    "or shed load; stop any drill left running."
                ),
                cases=cases[severity],
            )
        )
    return alerts
