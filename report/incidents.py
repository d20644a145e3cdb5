"""The incidents section: every alert firing over the range, from Prometheus' ALERTS series."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dashboards.panels import panel

from . import sentences
from .model import Episode, Section

if TYPE_CHECKING:
    from .builder import Builder

ONCALL = "loglog-oncall"


def incidents(b: Builder) -> Section:
    p = panel(ONCALL, "Firing alerts", b.cfg)
    # Each point looks back over its whole window, so a firing shorter than the step is
    # still seen (a plain range query only sees the samples at its step points). The
    # window is a millisecond short of the step: Prometheus 2 includes both ends of a
    # range, and the windows must tile, not overlap by a sample.
    step = b.alert_step
    query = f"max_over_time({b.expr(p)}[{step * 1000 - 1}ms])"
    found: list[Episode] = []
    for labels, points in b.prom.range(query, b.start, b.end, step):
        found += episodes(labels, [t for t, _ in points], step, b.start, b.end)
    found.sort(key=lambda e: (e.start, e.alertname))
    said = sentences.incidents(tuple(found), range_s=b.range, end=b.end, step=step)
    return Section(
        key="incidents",
        title="Incidents",
        sentence=said.text,
        state=said.state,
        episodes=tuple(found),
        queries=(query,),
        has_data=bool(found),
    )


def episodes(
    labels: dict[str, str], times: list[float], step: float, start: float, end: float
) -> list[Episode]:
    """Runs of consecutive window points (a gap over 1.5 steps ends a run) as firings. A point
    at t means "firing somewhere in (t - step, t]", so a run starts one step before its first
    point and ends at its last: durations are right to within a step."""
    out: list[Episode] = []
    run_start = previous = None
    for t in [*times, math.inf]:
        if previous is not None and t - previous > 1.5 * step:
            assert run_start is not None
            out.append(
                Episode(
                    alertname=labels.get("alertname", "?"),
                    severity=labels.get("severity", "none"),
                    start=max(run_start - step, start),
                    end=min(previous, end),
                )
            )
            run_start = None
        if run_start is None:
            run_start = t
        previous = t
    return out
