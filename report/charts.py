"""Charts with matplotlib: SVG text for the HTML, figures for the PDF.

matplotlib is the only importer here. Its Agg-free SVG backend writes glyphs as paths
(``svg.fonttype = "path"``), so the SVG needs no font or network to look the same everywhere,
and ``PdfPages`` (in :mod:`report.pdf`) is a real PDF engine from the same figures.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("svg")  # before pyplot: no display, no Tk; the PDF backend is used by name

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FuncFormatter

from .model import Chart, Episode
from .units import fmt

WIDTH, HEIGHT = 7.5, 2.6  # inches: two charts fit a PDF page; 720 px wide in the HTML
SEVERITY_COLOURS = {"critical": "#c0392b", "warning": "#e67e22"}
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


def _when(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _time_axis(axes: Axes) -> None:
    locator = mdates.AutoDateLocator(tz=UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))


def line_chart(chart: Chart) -> MplFigure:
    """One line per series, y axis in the panel's unit, time in UTC."""
    figure = MplFigure(figsize=(WIDTH, HEIGHT))
    draw_lines(figure.add_subplot(), chart)
    figure.tight_layout()
    return figure


def draw_lines(axes: Axes, chart: Chart) -> None:
    for legend, points in chart.lines:
        times = mdates.date2num([_when(t) for t, _ in points])
        axes.plot(times, [v for _, v in points], label=plain(legend), lw=1.4)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, chart.unit)))
    _time_axis(axes)
    axes.set_title(plain(chart.title), loc="left", fontsize=9, fontweight="bold")
    axes.grid(alpha=0.3)
    axes.set_ylim(bottom=min(0.0, axes.get_ylim()[0]))
    if len(chart.lines) > 1:
        axes.legend(loc="upper left", fontsize=7, frameon=False, ncol=min(3, len(chart.lines)))


def timeline(episodes: tuple[Episode, ...], start: float, end: float) -> MplFigure:
    """One row per alert name, a bar per firing, red for pages, orange for tickets."""
    names = {e.alertname for e in episodes}
    figure = MplFigure(figsize=(WIDTH, max(1.4, 0.5 + 0.3 * len(names))))
    draw_timeline(figure.add_subplot(), episodes, start, end)
    figure.tight_layout()
    return figure


def draw_timeline(axes: Axes, episodes: tuple[Episode, ...], start: float, end: float) -> None:
    names = sorted({e.alertname for e in episodes})
    for row, name in enumerate(names):
        bars = [e for e in episodes if e.alertname == name]
        axes.broken_barh(
            [(mdates.date2num(_when(e.start)), (e.end - e.start) / 86400) for e in bars],
            (row - 0.35, 0.7),
            facecolors=[SEVERITY_COLOURS.get(e.severity, "#7f8c8d") for e in bars],
        )
    axes.set_yticks(range(len(names)), [plain(n) for n in names])
    axes.set_xlim(mdates.date2num(_when(start)), mdates.date2num(_when(end)))
    _time_axis(axes)
    axes.set_title("Alerts firing (red: pages)", loc="left", fontsize=9, fontweight="bold")
    axes.grid(axis="x", alpha=0.3)


def svg(figure: MplFigure) -> str:
    """The figure as an ``<svg>`` element to inline in HTML (XML prolog and DOCTYPE removed)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]
