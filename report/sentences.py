"""Every sentence of the report, each a pure function of typed facts (:mod:`report.facts`).

The words are chosen by state, never by formatting whatever a query returned: a budget
below zero reads "exhausted — 71× the allowed share", no headroom is claimed while the
latency objective is missed, a stage is stalled or the server sheds load, a count that is
not a finite number is "unknown", and labels say what is counted ("within the 1 s latency
objective"). Only numbers that passed :func:`report.facts.finite` (or ``share``/``amount``)
reach :func:`report.units.fmt` here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

from .facts import (
    Availability,
    Capacity,
    Episode,
    Outage,
    Said,
    ServiceLevel,
    State,
    Throughput,
    amount,
    finite,
    share,
)
from .units import count, duration, fmt


def _when(t: float, long: bool) -> str:
    """A time of day (with the date when the report spans more than a day)."""
    moment = datetime.fromtimestamp(t, UTC)
    return moment.strftime("%Y-%m-%d %H:%M" if long else "%H:%M")


def outages(gaps: tuple[Outage, ...], range_s: float, what: str) -> str:
    """``"No data for 6 min, from 10:02 to 10:08 UTC: <what>."``, or ``""``."""
    if not gaps:
        return ""
    long = range_s > 86400
    total = sum(g.seconds for g in gaps)
    last = gaps[-1]
    if len(gaps) == 1 and last.ongoing:
        return (
            f" No data since {_when(last.start, long)} UTC (the last {duration(last.seconds)} "
            f"of the range): {what}."
        )
    if len(gaps) == 1:
        return (
            f" No data for {duration(total)}, from {_when(last.start, long)} to "
            f"{_when(last.end, long)} UTC: {what}."
        )
    longest = max(gaps, key=lambda g: g.seconds)
    still = " The last one lasts to the end of the range." if last.ongoing else ""
    return (
        f" No data for {duration(total)} in {len(gaps)} outages (the longest "
        f"{duration(longest.seconds)}, from {_when(longest.start, long)} to "
        f"{_when(longest.end, long)} UTC): {what}.{still}"
    )


def throughput(f: Throughput) -> Said:
    """Items delivered over the range, where the data is missing, and load shed."""
    span = duration(f.range_s)
    cov = f.coverage
    if f.items is None and (cov is None or cov.first is None):
        return Said(
            state=State.NO_DATA,
            text=f"No items were delivered in the last {span}: the throughput series is empty "
            "(a new stack, nothing scraped yet, or no inference server).",
        )
    items = amount(f.items)
    if f.items is None:
        text = (
            f"The number of items delivered in the last {span} is not known yet: the "
            "delivered-items counter has fewer than two samples in the range."
        )
        state = State.NO_DATA
    elif items is None:
        text = (
            f"The number of items delivered in the last {span} is unknown: Prometheus answered "
            "a value that is not a finite count."
        )
        state = State.NO_DATA
    else:
        rates = []
        mean, peak = amount(f.mean_per_s), amount(f.peak_per_s)
        if mean is not None:
            rates.append(f"{fmt(mean, 'reqps')} on average")
        if peak is not None:
            rates.append(f"peak {fmt(peak, 'reqps')}")
        detail = f" ({', '.join(rates)})" if rates else ""
        text = f"Delivered {count(items)} items in the last {span}{detail}."
        state = State.HEALTHY
    if cov is not None and cov.first is not None:
        if cov.late > f.late_allowed_s:
            covered = duration(cov.end - cov.first)
            text += (
                f" Data starts {duration(cov.late)} into the {span} range: the figures "
                f"cover its last {covered}."
            )
            state = max(state, State.PARTIAL)
        if cov.outages:
            text += outages(
                cov.outages,
                f.range_s,
                "the inference server was not scraped (down or unreachable)",
            )
            state = max(state, State.PARTIAL)
    shed = []
    rejected, dropped = amount(f.rejected), amount(f.dropped_frames)
    # Half an item: increase() extrapolates, so "nothing rejected" can read 0.2.
    if rejected is not None and rejected >= 0.5:
        were = _plural(rejected, "request was", "requests were")
        shed.append(f"{count(rejected)} {were} rejected or shed")
    if dropped is not None and dropped >= 0.5:
        shed.append(f"{count(dropped)} {_plural(dropped, 'frame', 'frames')} dropped")
    if shed:
        text += f" Overloaded: {' and '.join(shed)} — load the server could not take."
        state = max(state, State.DEGRADED)
    return Said(state=state, text=text)


def service_level(f: ServiceLevel) -> Said:
    """The latency objective over the range, its error budget, and 30 days."""
    objective = f"{f.objective_s:g} s latency objective"
    target = fmt(f.target, "percentunit")
    burn = amount(f.burn)
    parts: list[str] = []
    if f.burn is None:
        state = State.NO_DATA
        parts.append("No request latencies were recorded in this range.")
    elif burn is None or share(burn * f.allowed) is None:
        state = State.NO_DATA
        parts.append(
            f"The share of requests within the {objective} is unknown: Prometheus answered "
            "a value that is not a finite share."
        )
    else:
        within = fmt(1.0 - burn * f.allowed, "percentunit")
        lead = f"{within} of requests finished within the {objective} on average over the range"
        if burn > 1.0:
            state = State.EXHAUSTED
            parts.append(
                f"Only {lead}, which misses the {target} target: the latency error budget is "
                f"exhausted — {_times(burn)} the allowed share of slow requests."
            )
        elif burn > 0.5:
            state = State.DEGRADED
            parts.append(
                f"{_capital(lead)}, which meets the {target} target with little to spare: at "
                f"this pace only {fmt(1.0 - burn, 'percentunit')} of the latency error budget "
                "would be left."
            )
        else:
            state = State.HEALTHY
            parts.append(
                f"{_capital(lead)}, which meets the {target} target; at this pace "
                f"{fmt(1.0 - burn, 'percentunit')} of the latency error budget would be left."
            )
    p95 = amount(f.p95_s)
    if p95 is not None:
        parts.append(f"p95 latency averaged {fmt(p95, 's')}.")
    good = share(f.good_30d)
    if good is None:
        parts.append("No request outcomes were recorded over 30 days.")
    else:
        said = (
            f"Over 30 days {fmt(good, 'percentunit')} of requests succeeded within the "
            f"{f.objective_s:g} s objective (errors and slow requests count against it)"
        )
        left = finite(f.budget_left_30d)
        if left is None:
            parts.append(said + ".")
        elif left <= 0:
            parts.append(
                f"{said}: the 30-day error budget is exhausted — {_times(1.0 - left)} the "
                "allowed share."
            )
            state = max(state, State.EXHAUSTED)
        else:
            left_text = fmt(min(left, 1.0), "percentunit")
            parts.append(f"{said}; {left_text} of the 30-day error budget is left.")
    return Said(state=state, text=" ".join(parts))


def capacity(f: Capacity) -> Said:
    """Efficiency, stalls, and headroom — claimed only when nothing argues against it."""
    parts: list[str] = []
    efficiency = amount(f.efficiency)
    state = State.HEALTHY
    if efficiency is None:
        state = State.NO_DATA
        parts.append("No efficiency was measured: the model's capacity is not known yet.")
    else:
        cap = amount(f.capacity_per_s)
        of = "" if cap is None else f" (capacity {fmt(cap, 'reqps')})"
        parts.append(
            f"The pipeline delivered {fmt(efficiency, 'percentunit')} of model capacity on "
            f"average{of}."
        )
    for stall in f.stalls:
        still = ", and still was at its end" if stall.at_end else ""
        parts.append(
            f"The {stall.stage} stage was stalled (hung, not slow) for "
            f"{duration(stall.seconds)} in this range{still}."
        )
    blockers = _blockers(f)
    headroom = finite(f.headroom_streams)
    if blockers or _filling(f):
        because = f"{_and(blockers)} in this range" if blockers else ""
        if _filling(f):
            assert f.restarted_ago_s is not None
            filling = (
                f"the inference server (re)started {duration(f.restarted_ago_s)} before the "
                f"end of the range, and its {duration(f.window_s)} rate window is still filling"
            )
            because = f"{because}; {filling}" if because else filling
        parts.append(f"No headroom is claimed: {because}.")
        state = max(state, State.DEGRADED)
    elif headroom is not None and headroom >= 0.05:
        room = f"{headroom:.1f}" if headroom < 1000 else count(headroom)
        parts.append(
            f"Room for {room} more {_plural(headroom, 'stream', 'streams')} like the "
            "current ones at the end of the range."
        )
    elif headroom is not None and headroom >= 0:
        parts.append("No room for another stream like the current ones at the end of the range.")
    elif headroom is not None:
        parts.append(
            "No headroom: delivery is above the calibrated model capacity, so the calibration "
            "may be stale."
        )
        state = max(state, State.DEGRADED)
    gpu = share(f.gpu_busy)
    if gpu is None:
        parts.append("No GPU reported utilization (CPU-only, or no agent with NVML).")
    else:
        parts.append(f"GPUs were busy {fmt(gpu, 'percentunit')} of the time.")
    return Said(state=state, text=" ".join(parts))


def _blockers(f: Capacity) -> list[str]:
    """What argues against a headroom claim in the range (see :func:`no_headroom`)."""
    blockers = []
    if f.stalls:
        blockers.append("a stage was stalled")
    if f.slo >= State.EXHAUSTED:
        blockers.append(f"the {f.objective_s:g} s latency objective was missed")
    if f.overloaded:
        blockers.append("the server shed load")
    return blockers


def _filling(f: Capacity) -> bool:
    """The delivered rate at the end is a ramp: the server (re)started within its window."""
    return f.restarted_ago_s is not None and f.restarted_ago_s < f.window_s


def no_headroom(f: Capacity) -> str | None:
    """Why no headroom is claimed, briefly (for the headroom figure), or None when it is."""
    blockers = _blockers(f)
    if blockers:
        return _and(blockers)
    if _filling(f):
        return f"the {duration(f.window_s)} rate is still filling after a (re)start"
    return None


def incidents(episodes: tuple[Episode, ...], *, range_s: float, end: float, step: float) -> Said:
    """How many alerts fired, how many paged, the longest, and the time anything fired."""
    if not episodes:
        return Said(state=State.HEALTHY, text=f"No alert fired in the last {duration(range_s)}.")
    pages = sum(1 for e in episodes if e.severity == "critical")
    longest = max(episodes, key=lambda e: e.seconds)
    still = sum(1 for e in episodes if e.end > end - 1.5 * step)
    text = (
        f"{len(episodes)} alert {_plural(len(episodes), 'firing', 'firings')}: "
        f"{pages} {_plural(pages, 'page', 'pages')} (critical), "
        f"{len(episodes) - pages} other; longest {duration(longest.seconds)} "
        f"({longest.alertname}); alerts were firing "
        f"{duration(union(episodes))} of the {duration(range_s)}."
        + (f" {still} still firing at the end of the range." if still else "")
    )
    return Said(state=State.DEGRADED, text=text)


def union(episodes: Iterable[Episode]) -> float:
    """Seconds during which at least one alert fired."""
    total, reach = 0.0, -math.inf
    for e in sorted(episodes, key=lambda e: e.start):
        if e.end > reach:
            total += e.end - max(e.start, reach)
            reach = e.end
    return total


def availability(f: Availability, range_s: float) -> str:
    """``"The job broker was down for 6 min, from 10:02 to 10:08 UTC."``, or ``""``."""
    if not f.known or not f.down:
        return ""
    long = range_s > 86400
    total = sum(g.seconds for g in f.down)
    if len(f.down) == 1:
        g = f.down[0]
        if g.ongoing:
            return f"{f.what} was down from {_when(g.start, long)} UTC to the end of the range."
        return (
            f"{f.what} was down for {duration(total)}, from {_when(g.start, long)} to "
            f"{_when(g.end, long)} UTC."
        )
    longest = max(f.down, key=lambda g: g.seconds)
    return (
        f"{f.what} was down {len(f.down)} times, {duration(total)} in all (the longest "
        f"{duration(longest.seconds)}, from {_when(longest.start, long)} UTC)."
    )


def overloaded(rejected: float | None, dropped: float | None) -> bool:
    """Whether the server shed load: a request rejected or shed, or a frame dropped, in the
    range."""
    return any((amount(v) or 0.0) >= 0.5 for v in (rejected, dropped))


def exhausted(left: float) -> str:
    """A budget left at or below zero, in words: ``"exhausted (71× the allowed)"``."""
    return f"exhausted ({_times(1.0 - left)} the allowed)"


def _times(factor: float) -> str:
    """``71.07`` → ``"71×"``; ``2.54`` → ``"2.5×"``; ``1.001`` → ``"just over 1×"``: more
    than allowed never rounds down to "1.0×"."""
    if factor >= 9.95:
        return f"{factor:.0f}×"
    shown = f"{factor:.1f}"
    if factor > 1 and float(shown) <= 1:
        return "just over 1×"
    return f"{shown}×"


def _plural(n: float, one: str, many: str) -> str:
    return one if n == 1 else many


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
