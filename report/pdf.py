"""The report as a PDF through matplotlib's PDF engine: a summary page, then a page per section."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure as MplFigure

from . import charts
from .charts import plain
from .model import Report, Section
from .units import duration, fmt

A4 = (8.27, 11.69)  # inches, portrait
WRAP = 95  # characters per line at 10 pt across the page


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _text_page(report: Report) -> MplFigure:
    page = MplFigure(figsize=A4)
    y = 0.95
    page.text(0.07, y, "Service report", fontsize=20, fontweight="bold", va="top")
    y -= 0.04
    period = f"{_time(report.start)} to {_time(report.end)} ({duration(report.range_seconds)})"
    page.text(0.07, y, plain(f"{period} · figures from {report.prometheus}"), fontsize=9, va="top")
    y -= 0.05
    for section in report.sections:
        page.text(0.07, y, plain(section.title), fontsize=12, fontweight="bold", va="top")
        y -= 0.025
        lines = textwrap.wrap(section.sentence, WRAP)
        page.text(0.07, y, plain("\n".join(lines)), fontsize=10, va="top", linespacing=1.4)
        y -= 0.02 * len(lines) + 0.03
    return page


def _section_page(section: Section, report: Report) -> MplFigure:
    page = MplFigure(figsize=A4)
    page.text(0.07, 0.95, plain(section.title), fontsize=16, fontweight="bold", va="top")
    lines = textwrap.wrap(section.sentence, WRAP)
    lines += [""] + [f"{f.label}: {fmt(f.value, f.unit)}" for f in section.figures]
    page.text(0.07, 0.91, plain("\n".join(lines)), fontsize=10, va="top", linespacing=1.4)
    plotted = [c for c in section.charts if c.lines]
    missing = [c.title for c in section.charts if not c.lines]
    if missing:
        note = "No data in this range for: " + ", ".join(missing) + "."
        page.text(
            0.07, 0.06, plain("\n".join(textwrap.wrap(note, WRAP))), fontsize=9, color="#8a6d3b"
        )
    rows = len(plotted) + (1 if section.episodes else 0)
    if not rows:
        return page
    top = 0.88 - 0.02 * len(lines)
    grid = page.add_gridspec(rows, 1, left=0.1, right=0.95, top=top, bottom=0.1, hspace=0.45)
    row = 0
    if section.episodes:
        charts.draw_timeline(
            page.add_subplot(grid[row]), section.episodes, report.start, report.end
        )
        row += 1
    for chart in plotted:
        charts.draw_lines(page.add_subplot(grid[row]), chart)
        row += 1
    return page


def write(report: Report, path: Path) -> int:
    """Write the PDF; returns its page count (1 + one per section)."""
    pages = [_text_page(report)] + [_section_page(s, report) for s in report.sections]
    with PdfPages(
        path, metadata={"Title": "loglog service report", "Creator": "loglog report"}
    ) as pdf:
        for page in pages:
            pdf.savefig(page)
    return len(pages)
