"""What a report is made of: figures, charts, sections — data only, no rendering."""

from __future__ import annotations

import dataclasses

from .facts import Episode, State
from .units import fmt

__all__ = ["Chart", "Episode", "Figure", "Line", "Report", "Section"]

#: A chart line: its legend and (unix time, value) points; a NaN value breaks the line (a gap).
Line = tuple[str, list[tuple[float, float]]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Figure:
    """One number in the report and the instant query (at the report's end) that gave it."""

    label: str
    value: float | None  # None: the query returned nothing
    unit: str  # a Grafana unit: short, reqps, s, percentunit, …
    query: str
    at: float
    shown: str = ""  # the words shown instead of the number (e.g. "exhausted (71× …)")

    @property
    def text(self) -> str:
        """The figure as the report shows it."""
        return self.shown or fmt(self.value, self.unit)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Chart:
    """A time-series chart drawn from one dashboard panel over the report's range."""

    title: str
    description: str
    unit: str
    lines: tuple[Line, ...]
    queries: tuple[str, ...]
    note: str = ""  # how the lines were drawn (gaps, rate-window ramps left out)
    #: Samples came back, but every one within a rate window's ramp or an outage.
    only_ramps: bool = False

    @property
    def empty(self) -> str:
        """Why nothing is drawn, in words (for a chart without lines)."""
        if self.only_ramps:
            return (
                f"Nothing to draw for “{self.title}” yet: its series are younger than their "
                "rate window (a ramp is not a measurement)."
            )
        return f"No data for “{self.title}” in this range: none of its series has a sample."


@dataclasses.dataclass(frozen=True, kw_only=True)
class Section:
    """A heading, a sentence in plain words computed from the data, its figures and charts."""

    key: str
    title: str
    sentence: str
    figures: tuple[Figure, ...] = ()
    charts: tuple[Chart, ...] = ()
    episodes: tuple[Episode, ...] = ()
    queries: tuple[str, ...] = ()  # asked for neither a figure nor a chart (the alert timeline)
    has_data: bool = True
    state: State = State.HEALTHY


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    """Everything rendered into the HTML and the PDF."""

    prometheus: str
    start: float
    end: float
    step: float
    sections: tuple[Section, ...]

    @property
    def range_seconds(self) -> float:
        return self.end - self.start
