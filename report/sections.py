"""The report's sections, each computed from the dashboards' panels and a sentence in plain words.

Queries are never written here: each section takes a panel from :mod:`dashboards.panels` and
either draws it over the range, evaluates it at the end (stat panels), or reduces it over the
range with a subquery (``avg_over_time((sum(<panel query>))[7d:60s])``) — so a metric rename
in a dashboard source reaches the report too, and the declared-names check covers both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from alerts.config import Config
from dashboards.panels import Panel, dashboard_uids, panel, panels, variable_defaults
from loglog.redact import redact_url

from .errors import QueryError
from .model import Chart, Episode, Figure, Line, Report, Section
from .prom import Prometheus
from .units import count, duration, fmt

OVERVIEW = "loglog-overview"
ONCALL = "loglog-oncall"
#: Dashboards whose UID contains this are job dashboards (added by the fleet package).
JOBS_MARKER = "job"


def step_for(range_seconds: float) -> int:
    """Seconds between chart points: about 240 points, never finer than 15 s."""
    return max(15, math.ceil(range_seconds / 240))


def fine_step_for(range_seconds: float) -> int:
    """Seconds between the points a figure is reduced over. A chart's 42-minute step for a
    week would turn a 5-minute rate into a coarse sum; 60 s sees every 5-minute window, and
    past two weeks the step grows to keep a subquery under about 20 000 points."""
    return min(step_for(range_seconds), max(60, math.ceil(range_seconds / 20_000)))


def alert_step_for(range_seconds: float) -> int:
    """Seconds per window of the alert timeline: 15 s up to 41 hours, then the range over
    10 000 (Prometheus answers at most 11 000 points per series)."""
    return max(15, math.ceil(range_seconds / 10_000))


def build(prom: Prometheus, *, end: float, range_seconds: int, cfg: Config | None = None) -> Report:
    """Ask Prometheus for every section of the report over ``[end - range, end]``."""
    builder = _Builder(prom, end=end, range_seconds=range_seconds, cfg=cfg or Config())
    return builder.report()


class _Builder:
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

    def report(self) -> Report:
        sections = (
            self.throughput(),
            self.service_level(),
            self.capacity(),
            self.incidents(),
            self.jobs(),
        )
        return Report(
            prometheus=redact_url(self.prom.url),
            start=self.start,
            end=self.end,
            step=self.step,
            sections=sections,
        )

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

    def chart(self, p: Panel) -> Chart:
        lines: list[Line] = []
        queries = []
        for index, target in enumerate(p.targets):
            if target.datasource != "prometheus":
                continue
            query = self.expr(p, index)
            queries.append(query)
            for labels, points in self.prom.range(query, self.start, self.end, self.step):
                lines.append((_legend(target.legend, labels), points))
        return Chart(
            title=p.title,
            description=p.description,
            unit=p.unit,
            lines=tuple(lines),
            queries=tuple(queries),
        )

    def partial(self, charts: Iterable[Chart]) -> str:
        """A clause saying the data covers only part of the range, or ``""``."""
        firsts = [points[0][0] for c in charts for _, points in c.lines if points]
        if not firsts:
            return ""
        late = min(firsts) - self.start
        if late <= 2 * self.step:
            return ""
        return f" Data starts {duration(late)} into the {duration(self.range)} range."

    # -- sections --------------------------------------------------------------------------

    def throughput(self) -> Section:
        p = panel(OVERVIEW, "Throughput", self.cfg)
        e = self.expr(p)
        items = self.figure(
            "Items delivered in the range",
            # One second short of the range: a subquery includes both of its ends, and
            # range/step points of step seconds each are the range, not one step more.
            f"sum_over_time((sum({e}))[{self.range - 1}s:{self.fine}s]) * {self.fine}",
            "short",
        )
        mean = self.figure("Mean throughput", self.over(e, "avg", "sum"), p.unit)
        peak = self.figure("Peak throughput", self.over(e, "max", "sum"), p.unit)
        day = self.stat(panel(OVERVIEW, "Items processed, last 24 h", self.cfg))
        week = self.stat(panel(OVERVIEW, "Items processed, last 7 days", self.cfg))
        chart = self.chart(p)
        if items.value is None:
            sentence = (
                f"No items were delivered in the last {duration(self.range)}: the throughput "
                "series is empty (a new stack, nothing scraped yet, or no inference server)."
            )
        else:
            sentence = (
                f"Delivered {count(items.value)} items in the last {duration(self.range)} "
                f"({fmt(mean.value, p.unit)} on average, peak {fmt(peak.value, p.unit)})."
                + self.partial([chart])
            )
        return Section(
            key="throughput",
            title="Throughput",
            sentence=sentence,
            figures=(items, mean, peak, day, week),
            charts=(chart,),
            has_data=items.value is not None,
        )

    def service_level(self) -> Section:
        cfg = self.cfg
        latency = panel(OVERVIEW, "Latency", cfg)
        p95 = self.figure(
            "Mean p95 latency (worst job)", self.over(self.expr(latency, 1), "avg", "max"), "s"
        )
        burn = panel(
            ONCALL, f"Error budget burn rate (latency > {cfg.latency_slo_seconds:g}s)", cfg
        )
        mean_burn = self.over(self.expr(burn, 0), "avg", "max")
        within = self.figure(
            f"Requests within {cfg.latency_slo_seconds:g} s",
            f"1 - {mean_burn} * {cfg.budget}",
            "percentunit",
        )
        budget = self.figure("Latency error budget left", f"1 - {mean_burn}", "percentunit")
        attainment = self.stat(panel(OVERVIEW, "SLO attainment, 30 days", cfg))
        budget30 = self.stat(panel(OVERVIEW, "Error budget left, 30 days", cfg))
        chart = self.chart(latency)
        parts = []
        if within.value is None:
            parts.append(f"No request latencies were recorded in the last {duration(self.range)}.")
        else:
            verdict = "meets" if within.value >= cfg.slo_target else "misses"
            parts.append(
                f"{fmt(within.value, 'percentunit')} of requests finished within the "
                f"{cfg.latency_slo_seconds:g} s latency objective, which {verdict} the "
                f"{fmt(cfg.slo_target, 'percentunit')} target; "
                f"{fmt(budget.value, 'percentunit')} of the latency "
                "error budget is left at this pace."
            )
        if p95.value is not None:
            parts.append(f"p95 latency averaged {fmt(p95.value, 's')}.")
        if attainment.value is not None:
            parts.append(
                f"Over 30 days {fmt(attainment.value, 'percentunit')} of requests succeeded; "
                f"{fmt(budget30.value, 'percentunit')} of the error budget is left."
            )
        else:
            parts.append("No request outcomes were recorded over 30 days.")
        return Section(
            key="service-level",
            title="Service level",
            sentence=" ".join(parts) + self.partial([chart]),
            figures=(within, budget, p95, attainment, budget30),
            charts=(chart,),
            has_data=within.value is not None or attainment.value is not None,
        )

    def capacity(self) -> Section:
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
        headroom = self.stat(panel(OVERVIEW, "Capacity headroom (streams)", cfg))
        gpu = self.figure(
            "GPU utilization (mean)", self.over(self.expr(gpu_panel), "avg", "avg"), gpu_panel.unit
        )
        chart = self.chart(vs)
        parts = []
        if efficiency.value is None:
            parts.append("No efficiency was measured: the model's capacity is not known yet.")
        else:
            parts.append(
                f"The pipeline delivered {fmt(efficiency.value, 'percentunit')} of model capacity "
                f"on average (capacity {fmt(capacity.value, vs.unit)})."
            )
        if headroom.value is not None and headroom.value >= 0:
            parts.append(f"Room for {headroom.value:.1f} more streams like the current ones.")
        elif headroom.value is not None:
            parts.append(
                f"No headroom: delivery is above the calibrated model capacity "
                f"({headroom.value:.1f} streams), so the calibration may be stale."
            )
        if gpu.value is None:
            parts.append("No GPU reported utilization (CPU-only, or no agent with NVML).")
        else:
            parts.append(f"GPUs were busy {fmt(gpu.value, 'percentunit')} of the time.")
        return Section(
            key="capacity",
            title="Capacity and efficiency",
            sentence=" ".join(parts) + self.partial([chart]),
            figures=(efficiency, capacity, headroom, gpu),
            charts=(chart,),
            has_data=efficiency.value is not None,
        )

    def incidents(self) -> Section:
        p = panel(ONCALL, "Firing alerts", self.cfg)
        # Each point looks back over its whole window, so a firing shorter than the step is
        # still seen (a plain range query only sees the samples at its step points). The
        # window is a millisecond short of the step: Prometheus 2 includes both ends of a
        # range, and the windows must tile, not overlap by a sample.
        step = self.alert_step
        query = f"max_over_time({self.expr(p)}[{step * 1000 - 1}ms])"
        episodes: list[Episode] = []
        for labels, points in self.prom.range(query, self.start, self.end, step):
            episodes += _episodes(labels, [t for t, _ in points], step, self.start, self.end)
        episodes.sort(key=lambda e: (e.start, e.alertname))
        if not episodes:
            sentence = f"No alert fired in the last {duration(self.range)}."
        else:
            pages = sum(1 for e in episodes if e.severity == "critical")
            longest = max(episodes, key=lambda e: e.seconds)
            still = sum(1 for e in episodes if e.end > self.end - 1.5 * step)
            sentence = (
                f"{len(episodes)} alert {_plural(len(episodes), 'firing', 'firings')}: "
                f"{pages} {_plural(pages, 'page', 'pages')} (critical), "
                f"{len(episodes) - pages} other; longest {duration(longest.seconds)} "
                f"({longest.alertname}); alerts were firing "
                f"{duration(_union(episodes))} of the {duration(self.range)}."
                + (f" {still} still firing at the end of the range." if still else "")
            )
        return Section(
            key="incidents",
            title="Incidents",
            sentence=sentence,
            episodes=tuple(episodes),
            queries=(query,),
            has_data=bool(episodes),
        )

    def jobs(self) -> Section:
        boards = [uid for uid in dashboard_uids(self.cfg) if JOBS_MARKER in uid]
        if not boards:
            return Section(
                key="jobs",
                title="Job progress",
                sentence="No job metrics: this installation has no jobs dashboard, so there is "
                "no job progress to report.",
                has_data=False,
            )
        figures: list[Figure] = []
        charts: list[Chart] = []
        refused: list[str] = []
        for uid in boards:
            for p in panels(uid, self.cfg):
                if not p.targets or p.targets[0].datasource != "prometheus":
                    continue
                # Another package's board: one panel Prometheus refuses (or whose variable
                # has no plain value) costs that panel, not the whole report.
                try:
                    if p.kind in ("stat", "gauge"):
                        figures.append(self.stat(p))
                    elif p.kind == "timeseries":
                        charts.append(self.chart(p))
                except (QueryError, KeyError):
                    refused.append(p.title)
        with_data = [f for f in figures if f.value is not None]
        if with_data:
            sentence = "; ".join(f"{f.label}: {fmt(f.value, f.unit)}" for f in with_data) + "."
        elif any(c.lines for c in charts):
            sentence = "Jobs reported progress in this range; see the charts."
        else:
            sentence = f"No job reported progress in the last {duration(self.range)}."
        if refused:
            sentence += f" Could not be asked: {', '.join(refused)}."
        return Section(
            key="jobs",
            title="Job progress",
            sentence=sentence,
            figures=tuple(figures),
            charts=tuple(charts),
            has_data=bool(with_data) or any(c.lines for c in charts),
        )


def queries(report: Report) -> list[str]:
    """Every PromQL expression the report asked (for the declared-names check)."""
    out = []
    for section in report.sections:
        out += [f.query for f in section.figures]
        out += [q for c in section.charts for q in c.queries]
        out += section.queries
    return out


def _episodes(
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


def _union(episodes: list[Episode]) -> float:
    """Seconds during which at least one alert fired."""
    total, reach = 0.0, -math.inf
    for e in sorted(episodes, key=lambda e: e.start):
        if e.end > reach:
            total += e.end - max(e.start, reach)
            reach = e.end
    return total


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def _legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: ``{{job}}`` from the labels; ``__auto`` or empty: the labels."""
    if template and template != "__auto":
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), template)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"
