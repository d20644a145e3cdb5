"""The job progress section: the panels of every installed jobs dashboard (the fleet's).

Stat panels become figures and time series become charts; one panel Prometheus refuses (or
whose variable has no plain value, or whose answer is over a cap) costs that panel, named
in the sentence, not the whole report. A "Broker up" panel is read for outages: a broker
that was down is said, with when and for how long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dashboards.panels import dashboard_uids, panels

from . import sentences
from .errors import AnswerTooLarge, QueryError
from .facts import Availability, Outage, State
from .model import Chart, Figure, Section
from .series import runs
from .units import duration

if TYPE_CHECKING:
    from .builder import Builder

#: Dashboards whose UID contains this are job dashboards (added by the fleet package).
JOBS_MARKER = "job"
#: The panel whose lines are 1 while the job broker answers, 0 while it does not.
BROKER_PANEL = "Broker up"


def jobs(b: Builder) -> Section:
    boards = [uid for uid in dashboard_uids(b.cfg) if JOBS_MARKER in uid]
    if not boards:
        return Section(
            key="jobs",
            title="Job progress",
            sentence="No job metrics: this installation has no jobs dashboard, so there is "
            "no job progress to report.",
            state=State.NO_DATA,
            has_data=False,
        )
    figures: list[Figure] = []
    charts: list[Chart] = []
    refused: list[str] = []
    for uid in boards:
        for p in panels(uid, b.cfg):
            if not p.targets or p.targets[0].datasource != "prometheus":
                continue
            try:
                if p.kind in ("stat", "gauge"):
                    figures.append(b.stat(p))
                elif p.kind == "timeseries":
                    charts.append(b.chart(p))
            except (QueryError, AnswerTooLarge, KeyError):
                refused.append(p.title)
    with_data = [f for f in figures if f.value is not None]
    broker = broker_availability([c for c in charts if c.title == BROKER_PANEL], b)
    state = State.HEALTHY
    if with_data:
        sentence = "; ".join(f"{f.label}: {f.text}" for f in with_data) + "."
    elif any(c.lines for c in charts):
        sentence = "Jobs reported progress in this range; see the charts."
    else:
        sentence = f"No job reported progress in the last {duration(b.range)}."
        state = State.NO_DATA
    down = sentences.availability(broker, b.range)
    if down:
        sentence += " " + down
        state = max(state, State.DEGRADED)
    if refused:
        sentence += f" Could not be asked: {', '.join(refused)}."
    return Section(
        key="jobs",
        title="Job progress",
        sentence=sentence,
        state=state,
        figures=tuple(figures),
        charts=tuple(charts),
        has_data=bool(with_data) or any(c.lines for c in charts),
    )


def broker_availability(charts: list[Chart], b: Builder) -> Availability:
    """Stretches in which any line of the broker panel read 0 (down)."""
    down_at = sorted(
        {t for c in charts for _, points in c.lines for t, v in points if v < 0.5}
    )  # a NaN (a gap in the line) compares false: unknown is not down
    known = any(points for c in charts for _, points in c.lines)
    step = b.step
    down = tuple(
        Outage(
            start=first,
            end=min(last + step, b.end),
            ongoing=last >= b.end - 1.5 * step,
        )
        for first, last in runs(down_at, step)
    )
    return Availability(what="The job broker", down=down, known=known)
