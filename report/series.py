"""From a range query's points to what may be drawn and said: runs, gaps, ramps, outages.

Prometheus answers a range query with points only where the expression has a value, so a
stretch without points is a gap — an outage of the thing scraped, or of Prometheus. Three
rules keep charts and sentences true:

- **gaps are gaps**: consecutive points more than 1.5 steps apart end a run, and a NaN
  between runs breaks the drawn line (matplotlib draws nothing across a NaN);
- **a rate window's ramp is not data**: ``rate(x[5m])`` over a series that began (or came
  back) less than 5 minutes earlier sees only part of its window, and reads low — those
  points are dropped;
- **a rate outlives its input**: ``rate(x[5m])`` keeps a value for up to 5 minutes after
  ``x`` stops being scraped; where a *presence* signal (the instant series itself) is known,
  points outside its runs are dropped.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable

from .facts import Coverage, Outage

Points = list[tuple[float, float]]
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A selector's range ``[5m]`` / ``[90s]`` and a recorded rate's name ``…:rate5m``, ``ratio_rate1h``.
_WINDOW = re.compile(r"\[(\d+)([smhdw])\]|rate(\d+)([smhdw])\b")


def rate_window(queries: Iterable[str]) -> float:
    """Seconds of the longest rate window in ``queries`` (0: none), e.g. 300 for
    ``job:inference_delivered_items:rate5m`` or ``rate(x[5m])``. A subquery's range
    (``[7200s:60s]``) has a colon and is not a rate window."""
    longest = 0.0
    for query in queries:
        for m in _WINDOW.finditer(query):
            number, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            longest = max(longest, float(number) * _UNIT[unit])
    return longest


def runs(times: Iterable[float], step: float) -> list[tuple[float, float]]:
    """Consecutive times no more than 1.5 steps apart, as (first, last) pairs."""
    out: list[tuple[float, float]] = []
    for t in times:
        if out and t - out[-1][1] <= 1.5 * step:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def coverage(times: list[float], *, start: float, end: float, step: float) -> Coverage:
    """Where a presence signal (a point at each step where the series was scraped) had data
    in ``[start, end]``: its first time, and every stretch without it (an outage) after."""
    inside = [t for t in times if start - step / 2 <= t <= end + step / 2]
    if not inside:
        return Coverage(start=start, end=end, first=None)
    spans = runs(inside, step)
    gaps = [Outage(start=a[1], end=b[0]) for a, b in itertools.pairwise(spans)]
    if end - spans[-1][1] > 1.5 * step:
        gaps.append(Outage(start=spans[-1][1], end=end, ongoing=True))
    return Coverage(start=start, end=end, first=max(start, spans[0][0]), outages=tuple(gaps))


def drawable(
    points: Points,
    *,
    step: float,
    start: float,
    asked_from: float,
    window: float,
    presence: list[tuple[float, float]] | None = None,
) -> Points:
    """The points of one series to draw over ``[start, …]``: asked from ``asked_from``
    (``start`` less the rate window, so a series older than the range is seen to be), with
    every ramp and every point outside ``presence`` (runs of the scraped series) dropped,
    and a NaN between runs so the line breaks at each gap."""
    own = runs((t for t, _ in points), step)
    starts = [first for first, _ in own if first > asked_from + step / 2]
    if presence is not None:
        starts += [first for first, _ in presence if first > asked_from + step / 2]

    def kept(t: float) -> bool:
        if t < start - step / 2:
            return False
        if any(s <= t < s + window for s in starts):
            return False  # the rate window is still filling: a ramp, not a measurement
        if presence is not None:
            return any(a - step / 2 <= t <= b + step / 2 for a, b in presence)
        return True

    # ±Inf cannot be drawn (a rate over nothing, a division by zero): a gap, like NaN.
    chosen = [(t, v) for t, v in points if math.isfinite(v) and kept(t)]
    out: Points = []
    for t, v in chosen:
        if out and t - out[-1][0] > 1.5 * step:
            out.append(((out[-1][0] + t) / 2, math.nan))  # the break in the line
        out.append((t, v))
    return out
