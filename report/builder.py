"""The report's builder: queries → typed facts (:mod:`report.facts`) → sentences.

Panel queries are never copied here: each section takes a panel from
:mod:`dashboards.panels` and either draws it over the range, evaluates it at the end (stat
panels), or reduces it over the range with a subquery (``avg_over_time((sum(<panel
query>))[7d:60s])``) — so a metric rename in a dashboard source reaches the report too, and
the declared-names check covers both. The few queries of the report's own (item counts,
presence, stalls, load shed) name metrics declared in ``inference/metrics.py``.

Every sentence comes from :mod:`report.sentences`, a pure function of the facts gathered
here; this module only asks and converts.
"""

from __future__ import annotations

import dataclasses
import math
import re

from alerts.config import Config
from dashboards.panels import Panel, panel, variable_defaults

from . import facts, sentences, series
from .facts import Coverage, Stall, State
from .model import Chart, Figure, Line, Section
from .prom import Prometheus
from .units import duration

OVERVIEW = "loglog-overview"
ONCALL = "loglog-oncall"


def step_for(range_seconds: float) -> int:
    """Seconds between chart points: about 240 points, never finer than 15 s."""
    return max(15, math.ceil(range_seconds / 240))


def fine_step_for(range_seconds: float) -> int:
    """Seconds between the points a figure is reduced over. A chart's 42-minute step for a
    week would turn a 5-minute rate into a coarse sum; 60 s sees every 5-minute window, and
    past two weeks the step grows to keep a subquery under about 20 000 points."""
    return min(step_for(range_seconds), max(60, math.ceil(range_seconds / 20_000)))


def alert_step_for(range_seconds: float) -> int:
    """Seconds per window of the alert timeline and of presence: 15 s up to 41 hours, then
    the range over 10 000 (Prometheus answers at most 11 000 points per series)."""
    return max(15, math.ceil(range_seconds / 10_000))


class Builder:
    """The report's range, steps and Prometheus, and the helpers every section uses."""

    def __init__(self, prom: Prometheus, *, end: float, range_seconds: int, cfg: Config) -> None:
        self.prom, self.cfg = prom, cfg
        self.end, self.range = end, range_seconds
        self.start = end - range_seconds
        self.step = step_for(range_seconds)
        self.fine = fine_step_for(range_seconds)
        self.alert_step = alert_step_for(range_seconds)
        # Grafana's built-in variables, as Grafana would set them for this range and step.
        self.builtins = {
            "__range": f"{range_seconds}s",
            "__interval": f"{self.step}s",
            "__rate_interval": f"{max(60, 4 * self.step)}s",
        }
        self._presence: list[tuple[float, float]] | None = None
        self._coverage: Coverage | None = None
        self._stalls: tuple[Stall, ...] | None = None
        self.overloaded = False  # set by throughput(): capacity claims no headroom then

    # -- helpers ---------------------------------------------------------------------------

    def values(self, uid: str) -> dict[str, str]:
        return {**variable_defaults(uid, self.cfg), **self.builtins}

    def expr(self, p: Panel, index: int = 0) -> str:
        return p.targets[index].promql(self.values(p.dashboard))

    def over(self, expr: str, reducer: str, aggregate: str) -> str:
        """``expr`` aggregated across series, then reduced over the report's range."""
        return f"{reducer}_over_time(({aggregate}({expr}))[{self.range}s:{self.fine}s])"

    def figure(self, label: str, query: str, unit: str) -> Figure:
        return Figure(
            label=label,
            value=self.prom.scalar(query, self.end),
            unit=unit,
            query=query,
            at=self.end,
        )

    def stat(self, p: Panel) -> Figure:
        """A stat or gauge panel as Grafana shows it at the report's end."""
        return self.figure(p.title, self.expr(p), p.unit)

    def chart(self, p: Panel, presence: list[tuple[float, float]] | None = None) -> Chart:
        """The panel over the range; each query asked from one rate window (its own) earlier
        so a series older than the range is not taken for a new one; ramps and gaps as
        :mod:`report.series` says, and points outside ``presence`` (runs of the scraped
        series) dropped."""
        targets = [t for t in p.targets if t.datasource == "prometheus"]
        queries = [self.expr(p, p.targets.index(t)) for t in targets]
        lines: list[Line] = []
        ramps: set[float] = set()
        hidden = False  # samples came back, but all of them in a ramp or outside presence
        for query, target in zip(queries, targets, strict=True):
            window = series.rate_window([query])
            asked_from = self.start - window
            for labels, points in self.prom.range(query, asked_from, self.end, self.step):
                drawn = series.drawable(
                    points,
                    step=self.step,
                    start=self.start,
                    asked_from=asked_from,
                    window=window,
                    presence=presence,
                )
                if window:
                    ramps.add(window)
                if any(not math.isnan(v) for _, v in drawn):
                    lines.append((_legend(target.legend, labels), drawn))
                elif any(t >= self.start for t, _ in points):
                    hidden = True
        note = "A break in a line is a stretch without data."
        for window in sorted(ramps):
            note += (
                f" The first {duration(window)} after a series starts or comes back are left "
                f"out: its {duration(window)} rate window is still filling (a ramp, not a "
                "measurement)."
            )
        return Chart(
            title=p.title,
            description=p.description,
            unit=p.unit,
            lines=tuple(lines),
            queries=tuple(queries),
            note=note,
            only_ramps=hidden and not lines,
        )

    def selector(self) -> str:
        """The overview's job selector (``job=~".*"`` by default), for the report's own queries."""
        return f'job=~"{self.values(OVERVIEW)["job"]}"'

    def presence_query(self) -> str:
        return f'count(inference_stage_items_total{{{self.selector()}, stage="encode"}})'

    def stalls_query(self) -> str:
        return f"max by (stage) (inference_stage_stalled{{{self.selector()}}})"

    def presence(self) -> list[tuple[float, float]]:
        """Runs of time in which the inference servers' delivered-items counter was scraped
        (the instant series, which a failed scrape marks stale at once), asked from five
        minutes before the range: the one signal of an outage a rate cannot blur."""
        if self._presence is None:
            query = self.presence_query()
            asked_from = self.start - 300
            times = [
                t
                for _, points in self.prom.range(query, asked_from, self.end, self.alert_step)
                for t, _ in points
            ]
            self._presence = series.runs(sorted(times), self.alert_step)
            self._coverage = series.coverage(
                sorted(times), start=self.start, end=self.end, step=self.alert_step
            )
        return self._presence

    def coverage(self) -> Coverage:
        self.presence()
        assert self._coverage is not None
        return self._coverage

    def stalls(self) -> tuple[Stall, ...]:
        """Stages whose ``inference_stage_stalled`` was 1 in the range: for how long, and
        whether still at the end."""
        if self._stalls is None:
            query = self.stalls_query()
            found = []
            step = self.alert_step
            for labels, points in self.prom.range(query, self.start, self.end, step):
                stalled = [t for t, v in points if v >= 1]
                if stalled:
                    found.append(
                        Stall(
                            stage=labels.get("stage", "?"),
                            seconds=len(stalled) * step,
                            at_end=stalled[-1] >= self.end - 1.5 * step,
                        )
                    )
            self._stalls = tuple(sorted(found, key=lambda s: -s.seconds))
        return self._stalls

    def shed(self) -> tuple[Figure, Figure]:
        """Requests refused and frames dropped in the range (the server shedding load).

        Requests refused are both kinds: rejected (4xx, ``inference_requests_total{status=
        "rejected"}``) and shed with a 503 (``inference_requests_shed_total``, every reason);
        a shed request is never counted in the first. ``or`` keeps either when the other has
        no series (their label sets differ, so none is dropped), and the sum is empty only
        when neither has one."""
        sel, r = self.selector(), f"[{self.range}s]"
        rejected = self.figure(
            "Requests rejected or shed in the range",
            f'sum(increase(inference_requests_total{{{sel}, status="rejected"}}{r})'
            f" or increase(inference_requests_shed_total{{{sel}}}{r}))",
            "short",
        )
        dropped = self.figure(
            "Frames dropped in the range",
            f"sum(increase(inference_frames_dropped_total{{{sel}}}[{self.range}s]))",
            "short",
        )
        return rejected, dropped

    # -- sections --------------------------------------------------------------------------

    def throughput(self) -> tuple[Section, facts.Said]:
        p = panel(OVERVIEW, "Throughput", self.cfg)
        e = self.expr(p)
        sel = self.selector()
        # The counter's increase, as the 24 h and 7 d panels count: the three counts agree
        # (a sum of 5-minute rates would miss the first five minutes of a new series).
        items = self.figure(
            "Items delivered in the range",
            f'sum(increase(inference_stage_items_total{{{sel}, stage="encode"}}[{self.range}s]))',
            "short",
        )
        mean = self.figure("Mean throughput (5-min rate)", self.over(e, "avg", "sum"), p.unit)
        peak = self.figure("Peak throughput (5-min rate)", self.over(e, "max", "sum"), p.unit)
        day = self.stat(panel(OVERVIEW, "Items processed, last 24 h", self.cfg))
        week = self.stat(panel(OVERVIEW, "Items processed, last 7 days", self.cfg))
        rejected, dropped = self.shed()
        chart = self.chart(p, self.presence())
        said = sentences.throughput(
            facts.Throughput(
                range_s=self.range,
                items=items.value,
                mean_per_s=mean.value,
                peak_per_s=peak.value,
                coverage=self.coverage(),
                late_allowed_s=2 * self.alert_step + 300,
                rejected=rejected.value,
                dropped_frames=dropped.value,
            )
        )
        self.overloaded = sentences.overloaded(rejected.value, dropped.value)
        section = Section(
            key="throughput",
            title="Throughput",
            sentence=said.text,
            state=said.state,
            figures=(items, mean, peak, day, week, rejected, dropped),
            charts=(chart,),
            queries=(self.presence_query(),),
            has_data=said.state is not State.NO_DATA,
        )
        return section, said

    def service_level(self) -> tuple[Section, facts.Said]:
        cfg = self.cfg
        latency = panel(OVERVIEW, "Latency", cfg)
        p95 = self.figure(
            "Mean p95 latency (worst job)", self.over(self.expr(latency, 1), "avg", "max"), "s"
        )
        burn = panel(
            ONCALL, f"Error budget burn rate (latency > {cfg.latency_slo_seconds:g}s)", cfg
        )
        mean_burn = self.over(self.expr(burn, 0), "avg", "max")
        objective = f"{cfg.latency_slo_seconds:g} s"
        within = self.figure(
            f"Requests within the {objective} latency objective (mean)",
            f"1 - {mean_burn} * {cfg.budget}",
            "percentunit",
        )
        budget = self.figure("Latency error budget left", f"1 - {mean_burn}", "percentunit")
        attainment = self.stat(panel(OVERVIEW, "SLO attainment, 30 days", cfg))
        budget30 = self.stat(panel(OVERVIEW, "Error budget left, 30 days", cfg))
        chart = self.chart(latency, self.presence())
        burn_value = None if budget.value is None else 1.0 - budget.value
        said = sentences.service_level(
            facts.ServiceLevel(
                objective_s=cfg.latency_slo_seconds,
                target=cfg.slo_target,
                burn=burn_value,
                p95_s=p95.value,
                good_30d=attainment.value,
                budget_left_30d=budget30.value,
            )
        )
        section = Section(
            key="service-level",
            title="Service level",
            sentence=said.text,
            state=said.state,
            figures=(within, _budget(budget), p95, attainment, _budget(budget30)),
            charts=(chart,),
            has_data=said.state is not State.NO_DATA or attainment.value is not None,
        )
        return section, said

    def capacity(self, slo: State) -> Section:
        cfg = self.cfg
        vs = panel(OVERVIEW, "Capacity vs delivered", cfg)
        eff_panel = panel(OVERVIEW, "Pipeline efficiency", cfg)
        gpu_panel = panel(OVERVIEW, "GPU fleet utilization", cfg)
        efficiency = self.figure(
            "Pipeline efficiency (mean)",
            self.over(self.expr(eff_panel), "avg", "avg"),
            eff_panel.unit,
        )
        capacity = self.figure(
            "Model capacity (mean)", self.over(self.expr(vs, 0), "avg", "sum"), vs.unit
        )
        headroom_panel = panel(OVERVIEW, "Capacity headroom (streams)", cfg)
        headroom = self.stat(headroom_panel)
        gpu = self.figure(
            "GPU utilization (mean)", self.over(self.expr(gpu_panel), "avg", "avg"), gpu_panel.unit
        )
        chart = self.chart(vs, self.presence())
        runs = self.presence()
        fact = facts.Capacity(
            efficiency=efficiency.value,
            capacity_per_s=capacity.value,
            headroom_streams=headroom.value,
            gpu_busy=gpu.value,
            slo=slo,
            objective_s=cfg.latency_slo_seconds,
            stalls=self.stalls(),
            overloaded=self.overloaded,
            # The last run of the scraped counter began at the server's last (re)start
            # (presence is asked from 5 minutes before the range, so an older one is seen).
            restarted_ago_s=self.end - runs[-1][0] if runs else None,
            window_s=series.rate_window([self.expr(headroom_panel)]),
        )
        said = sentences.capacity(fact)
        if (reason := sentences.no_headroom(fact)) is not None:
            # The stat reads the same rate the claim distrusts: no number, the reason instead.
            headroom = dataclasses.replace(headroom, value=None, shown=f"— (not claimed: {reason})")
        return Section(
            key="capacity",
            title="Capacity and efficiency",
            sentence=said.text,
            state=said.state,
            figures=(efficiency, capacity, headroom, gpu),
            charts=(chart,),
            queries=(self.stalls_query(),),
            has_data=efficiency.value is not None,
        )


def _budget(f: Figure) -> Figure:
    """A budget figure below zero is shown as exhausted (N× the allowed), not as −7007 %."""
    value = facts.finite(f.value)
    if value is None or value > 0:
        return f
    return Figure(
        label=f.label,
        value=f.value,
        unit=f.unit,
        query=f.query,
        at=f.at,
        shown=sentences.exhausted(value),
    )


_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def _legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: ``{{job}}`` from the labels; ``__auto`` or empty: the labels."""
    if template and template != "__auto":
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), template)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"
