"""Charts with matplotlib: SVG text for the HTML, axes on PDF pages.

matplotlib is the only importer here (and in :mod:`report.layout`). Its SVG backend writes
glyphs as paths (``svg.fonttype = "path"``), so the SVG needs no font or network to look the
same everywhere, and ``PdfPages`` (in :mod:`report.pdf`) is a real PDF engine from the same
drawing code. A NaN in a line is a gap: matplotlib draws nothing across it.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import matplotlib

matplotlib.use("svg")  # before pyplot: no display, no Tk; the PDF backend is used by name

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from .model import Chart, Episode
from .units import fmt

WIDTH, HEIGHT = 7.5, 2.6  # inches: 720 px wide in the HTML
SEVERITY_COLOURS = {"critical": "#c0392b", "warning": "#e67e22"}
#: Legend entries shown; more lines are counted in one last entry ("+ 7 more").
LEGEND_MAX = 6
#: A label longer than this is wrapped (alert names at CamelCase, legends at spaces).
LABEL_CHARS = 24
matplotlib.rcParams.update(
    {
        "svg.fonttype": "path",
        "pdf.fonttype": 42,  # TrueType: the PDF's text can be searched and copied whole
        "svg.hashsalt": "loglog",  # stable ids: the same data gives the same SVG
        "font.size": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def plain(text: str) -> str:
    """Label text shown as written: a ``$`` in a label value would start matplotlib's
    mathtext, and an unbalanced one raises instead of drawing."""
    return text.replace("$", r"\$")


def wrap_name(name: str, width: int = LABEL_CHARS) -> str:
    """A long name on several lines, broken at CamelCase, ``_``/``-``/space or, failing
    those, every ``width`` characters — whole, never cut: ``InferenceThroughputCollapsed``
    → ``Inference\\nThroughputCollapsed``."""
    if len(name) <= width:
        return name
    pieces = re.findall(r"[A-Z]?[^A-Z_\- ]*[_\- ]?", name)
    lines = [""]
    for piece in (p for p in pieces if p):
        while len(piece) > width:  # one unbreakable run: hard breaks
            if lines[-1]:
                lines.append("")
            lines[-1], piece = piece[:width], piece[width:]
            lines.append("")
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(line for line in lines if line)


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _time_axis(axes: Axes, start: float | None = None, end: float | None = None) -> None:
    locator = mdates.AutoDateLocator(tz=UTC, maxticks=8)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    if start is not None and end is not None:
        axes.set_xlim(mdates.date2num(_when(start)), mdates.date2num(_when(end)))


def line_chart(chart: Chart, start: float | None = None, end: float | None = None) -> MplFigure:
    """One line per series, y axis in the panel's unit, time in UTC over the range."""
    figure = MplFigure(figsize=(WIDTH, HEIGHT))
    draw_lines(figure.add_subplot(), chart, start, end)
    figure.tight_layout()
    return figure


def draw_lines(
    axes: Axes, chart: Chart, start: float | None = None, end: float | None = None
) -> None:
    """Each line with its gaps (NaN) left empty; at most :data:`LEGEND_MAX` legend entries."""
    handles: list[Line2D] = []
    for legend, points in chart.lines:
        times = mdates.date2num([_when(t) for t, _ in points])
        (line,) = axes.plot(
            times, [v for _, v in points], label=plain(wrap_name(legend, 40)), lw=1.4
        )
        handles.append(line)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, chart.unit)))
    _time_axis(axes, start, end)
    axes.set_title(plain(chart.title), loc="left", fontsize=9, fontweight="bold")
    axes.grid(alpha=0.3)
    axes.set_ylim(bottom=min(0.0, axes.get_ylim()[0]))
    if len(handles) > 1:
        shown = handles[: LEGEND_MAX - 1] if len(handles) > LEGEND_MAX else handles
        labels = [str(h.get_label()) for h in shown]
        if len(shown) < len(handles):
            shown = [*shown, Line2D([], [], lw=0)]
            labels.append(f"+ {len(handles) - len(shown) + 1} more")
        axes.legend(shown, labels, loc="upper left", fontsize=7, frameon=False, ncol=3)


def timeline(episodes: tuple[Episode, ...], start: float, end: float) -> MplFigure:
    """One row per alert name, a bar per firing, red for pages, orange for tickets."""
    names = {e.alertname for e in episodes}
    figure = MplFigure(figsize=(WIDTH, timeline_height(len(names))))
    draw_timeline(figure.add_subplot(), episodes, start, end)
    figure.tight_layout()
    return figure


def timeline_height(rows: int) -> float:
    """Inches for a timeline of ``rows`` alert names (wrapped names need two lines)."""
    return max(1.6, 0.7 + 0.38 * rows)


def draw_timeline(axes: Axes, episodes: tuple[Episode, ...], start: float, end: float) -> None:
    names = sorted({e.alertname for e in episodes})
    for row, name in enumerate(names):
        bars = [e for e in episodes if e.alertname == name]
        axes.broken_barh(
            [(mdates.date2num(_when(e.start)), (e.end - e.start) / 86400) for e in bars],
            (row - 0.35, 0.7),
            facecolors=[SEVERITY_COLOURS.get(e.severity, "#7f8c8d") for e in bars],
        )
    axes.set_yticks(range(len(names)), [plain(wrap_name(n)) for n in names], fontsize=7)
    axes.set_ylim(len(names) - 0.5, -0.5)  # the first name on top
    _time_axis(axes, start, end)
    axes.set_title("Alerts firing (red: pages)", loc="left", fontsize=9, fontweight="bold")
    axes.grid(axis="x", alpha=0.3)


def svg(figure: MplFigure) -> str:
    """The figure as an ``<svg>`` element to inline in HTML (XML prolog and DOCTYPE removed)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]
