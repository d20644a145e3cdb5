"""The typed figures a report's sentences are made from, each with an explicit state.

A sentence is never assembled by formatting whatever number a query returned: the section
builders (:mod:`report.sections`) turn query results into the facts below, and
:mod:`report.sentences` chooses the words from the facts' *states* — no data, partial,
healthy, degraded, exhausted — so a negative budget, an infinite count or a missing series
each has words of its own instead of "−7007.1 %" or "nan items".

Numbers here are plain floats that may be NaN or ±Inf (Prometheus can answer either);
:func:`finite` is the one gate a number passes before a sentence may print it.
"""

from __future__ import annotations

import dataclasses
import enum
import math


class State(enum.IntEnum):
    """How a section stands, in order of concern (a section takes the worst of its parts)."""

    NO_DATA = 0
    HEALTHY = 1
    PARTIAL = 2  # data covers only part of the range, or has gaps
    DEGRADED = 3  # working, but short of its objective's comfort, overloaded, or stalled
    EXHAUSTED = 4  # an objective missed: its error budget is spent


def finite(value: float | None) -> float | None:
    """``value`` when it is a finite number, else ``None`` (absent, NaN, ±Inf)."""
    if value is None or not math.isfinite(value):
        return None
    return value


def share(value: float | None) -> float | None:
    """A share of a whole: finite and within [0, 1] (a float's rounding allowed), else None."""
    v = finite(value)
    if v is None or not -1e-9 <= v <= 1 + 1e-9:
        return None
    return min(1.0, max(0.0, v))


def amount(value: float | None) -> float | None:
    """A count, rate or duration: finite and not negative (a rounding allowed), else None."""
    v = finite(value)
    if v is None or v < -1e-9:
        return None
    return max(0.0, v)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Said:
    """A section's sentence and the state it was chosen for."""

    state: State
    text: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Episode:
    """One alert firing, from its first to its last firing sample (plus one step)."""

    alertname: str
    severity: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outage:
    """A stretch of the range with no data (``end`` is the range's end when it lasts)."""

    start: float
    end: float
    ongoing: bool = False

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclasses.dataclass(frozen=True, kw_only=True)
class Coverage:
    """Where in ``[start, end]`` a signal had data."""

    start: float
    end: float
    first: float | None  # the first time with data (None: none at all)
    outages: tuple[Outage, ...] = ()

    @property
    def late(self) -> float:
        """Seconds between the range's start and the first data (0 when none is missing)."""
        return 0.0 if self.first is None else max(0.0, self.first - self.start)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Throughput:
    range_s: float
    items: float | None  # delivered in the range (counter increase)
    mean_per_s: float | None
    peak_per_s: float | None
    coverage: Coverage | None  # None: not known (no presence signal)
    late_allowed_s: float = 0.0  # a late start shorter than this is not "partial"
    rejected: float | None = None  # requests rejected (4xx) or shed (503) in the range
    dropped_frames: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceLevel:
    objective_s: float  # the latency objective (1 s)
    target: float  # the SLO target share (0.99)
    burn: float | None  # mean latency burn rate over the range (1: exactly the budget)
    p95_s: float | None
    good_30d: float | None  # share of requests that succeeded within the objective, 30 days
    budget_left_30d: float | None  # 1 − bad ÷ allowed, 30 days (below 0: exhausted)

    @property
    def allowed(self) -> float:
        """The share of requests allowed to miss the objective (the error budget)."""
        return 1.0 - self.target


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stall:
    """A stage that was stalled (hung) during the range."""

    stage: str
    seconds: float
    at_end: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class Capacity:
    efficiency: float | None  # delivered ÷ model capacity, mean over the range
    capacity_per_s: float | None
    headroom_streams: float | None  # at the range's end (the dashboard's stat)
    gpu_busy: float | None
    slo: State  # the service level's state: no headroom is claimed while it is exhausted
    objective_s: float
    stalls: tuple[Stall, ...] = ()
    overloaded: bool = False
    #: Seconds from the inference server's last (re)start to the range's end (None: not
    #: known); under ``window_s`` the headroom stat reads a rate still filling its window.
    restarted_ago_s: float | None = None
    window_s: float = 300.0  # the delivered rate's window (job:…:rate5m)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Availability:
    """A component that is up (1) or down (0), e.g. the job broker."""

    what: str  # "The job broker"
    down: tuple[Outage, ...]
    known: bool  # any sample at all
