"""Numbers and durations in words a manager reads, for the units the dashboards use."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_RANGE = re.compile(r"^(\d+)(s|m|h|d|w)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: The longest range: 520 weeks (10 years), past any Prometheus retention; beyond some
#: point the range's start is no date at all and every date conversion overflows.
MAX_RANGE_SECONDS = 520 * 7 * 86400


def parse_range(text: str) -> int:
    """``"7d"`` → 604800 seconds; raises ``ValueError`` saying the accepted form."""
    match = _RANGE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"range {text!r} is not a positive duration like 1h, 24h, 7d or 2w "
            "(one number and one of s, m, h, d, w)"
        )
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds > MAX_RANGE_SECONDS:
        raise ValueError(f"range {text!r} is too long: at most 520w (10 years), e.g. 1h, 7d or 52w")
    return seconds


def moment(t: float) -> str:
    """A unix time to the minute, in UTC: ``"2026-11-21 10:02 UTC"`` (the report's
    period and its alerts' starts, in the HTML and the PDF alike)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    """``840`` → ``"14 min"``; ``90000`` → ``"1 d 1 h"``; below 0 is ``"0 s"``."""
    if not math.isfinite(seconds):
        return _not_finite(seconds)
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, rest = divmod(round(seconds / 3600), 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


def count(value: float) -> str:
    """``1234567`` → ``"1.23 M"``: three significant figures above a thousand."""
    if not math.isfinite(value):
        return _not_finite(value)
    size = abs(value)
    if size >= 1e15:
        return f"{value:.3g}"  # past any real count: plain scientific notation
    for limit, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    if size < 0.001:
        return "0"  # a rounding residue (increase() extrapolates), not a count
    return f"{value:.3g}" if size < 100 else f"{value:.0f}"


def fmt(value: float | None, unit: str) -> str:
    """A figure as shown in the report; ``None`` (no data) is ``"no data"``, ±Inf is ``∞``
    (Prometheus' answer for a rate over nothing, an ETA that never comes) and NaN is
    ``"not a number"`` — never ``"nan %"`` or ``"inf G"``."""
    if value is None:
        return "no data"
    if not math.isfinite(value):
        return _not_finite(value)
    if abs(value) >= 1e12 and unit not in ("short", "reqps", "bytes"):
        return f"{value:.3g}"  # no unit's notation holds this; never an overflow to "inf"
    if unit == "percentunit":
        return f"{value * 100:.1f} %"
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.2f} s" if abs(value) < 90 else duration(value)
    if unit == "reqps":
        return f"{count(value)} /s"
    if unit == "bytes":
        return f"{count(value)}B"
    if unit == "watt":
        return f"{value:.0f} W"
    if unit == "celsius":
        return f"{value:.0f} °C"
    if unit.startswith("suffix:"):
        return f"{value:.2f}{unit.removeprefix('suffix:')}"
    return count(value)


def _not_finite(value: float) -> str:
    if math.isnan(value):
        return "not a number"
    return "∞" if value > 0 else "−∞"
