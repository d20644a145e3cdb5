"""The report as a PDF through matplotlib's PDF engine: a summary, then each section.

Pages are filled top to bottom by :mod:`report.layout`: a block that does not fit starts a
new page ("… (continued)"), a page holds at most :data:`CHARTS_PER_PAGE` charts, and the
incidents section has the alert timeline *and* the table of every firing (full names,
wrapped when long, never cut).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure as MplFigure

from . import charts
from .layout import A4, MARGIN, Page, fit
from .model import Report, Section
from .units import duration, moment

CHARTS_PER_PAGE = 4
CHART_HEIGHT = 2.25  # inches per chart: four fit under a section's heading
TITLE, BODY, SMALL = 16.0, 10.0, 9.0
#: The incident table's columns: (heading, share of the text width).
COLUMNS = (("Alert", 0.5), ("Severity", 0.14), ("Started", 0.24), ("Fired for", 0.12))


class _Writer:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.pages: list[Page] = []
        self.page = self._new()
        self.charts_here = 0

    def _new(self) -> Page:
        page = Page()
        self.pages.append(page)
        self.charts_here = 0
        return page

    def _need(self, inches: float, title: str | None) -> None:
        """Start a new page (headed "<title> (continued)") unless ``inches`` fit here."""
        if self.page.room() >= inches:
            return
        self.page = self._new()
        if title:
            self.page.text(
                self.page.wrap(f"{title} (continued)", SMALL, bold=True), SMALL, bold=True
            )
            self.page.gap(0.1)

    def _continue(self, title: str | None) -> None:
        """A new page, headed "<title> (continued)" when it continues a section."""
        self.page = self._new()
        if title:
            heading = self.page.wrap(f"{title} (continued)", SMALL, bold=True)
            self.page.text(heading, SMALL, bold=True)
            self.page.gap(0.1)

    def summary(self) -> None:
        r, page = self.report, self.page
        page.text(["Service report"], 20, bold=True)
        page.gap(0.08)
        period = f"{moment(r.start)} to {moment(r.end)} ({duration(r.range_seconds)})"
        page.text(page.wrap(f"{period} · figures from {r.prometheus}", SMALL), SMALL)
        page.gap(0.25)
        for section in r.sections:
            heading = self.page.wrap(section.title, 12, bold=True)
            body = self.page.wrap(section.sentence, BODY)
            self._need(self.page.height(len(heading), 12) + self.page.height(len(body), BODY), None)
            self.page.text(heading, 12, bold=True)
            self.page.text(body, BODY)
            self.page.gap(0.15)

    def section(self, s: Section) -> None:
        self.page = self._new()
        page = self.page
        page.text(page.wrap(s.title, TITLE, bold=True), TITLE, bold=True)
        page.gap(0.1)
        page.text(page.wrap(s.sentence, BODY), BODY)
        page.gap(0.1)
        for f in s.figures:
            line = self.page.wrap(f"{f.label}: {f.text}", BODY)
            self._need(self.page.height(len(line), BODY), s.title)
            self.page.text(line, BODY)
        self.page.gap(0.15)
        if s.episodes:
            rows = len({e.alertname for e in s.episodes})
            height = charts.timeline_height(rows)
            self._chart_slot(height, s.title)
            axes, slot = self.page.axes(height)
            charts.draw_timeline(axes, s.episodes, self.report.start, self.report.end)
            fit(axes, slot, self.page.renderer)
            self.page.gap(0.15)
            self._incident_table(s)
        for chart in (c for c in s.charts if c.lines):
            self._chart_slot(CHART_HEIGHT, s.title)
            axes, slot = self.page.axes(CHART_HEIGHT - 0.15)
            charts.draw_lines(axes, chart, self.report.start, self.report.end)
            fit(axes, slot, self.page.renderer)
            self.page.gap(0.15)
        missing = [c.title for c in s.charts if not c.lines and not c.only_ramps]
        young = [c.title for c in s.charts if c.only_ramps]
        words = []
        if missing:
            words.append("No data in this range for: " + ", ".join(missing) + ".")
        if young:
            words.append(
                "Nothing to draw yet (younger than their rate window) for: "
                + ", ".join(young)
                + "."
            )
        if words:
            note = self.page.wrap(" ".join(words), SMALL)
            self._need(self.page.height(len(note), SMALL), s.title)
            self.page.text(note, SMALL, colour="#8a6d3b")

    def _chart_slot(self, height: float, title: str) -> None:
        if self.charts_here >= CHARTS_PER_PAGE:
            self.page = self._new()
            self.page.text(
                self.page.wrap(f"{title} (continued)", SMALL, bold=True), SMALL, bold=True
            )
            self.page.gap(0.1)
        self._need(height, title)
        self.charts_here += 1

    def _incident_table(self, s: Section) -> None:
        width = self.page.width
        header = [name for name, _ in COLUMNS]
        rows = [[e.alertname, e.severity, moment(e.start), duration(e.seconds)] for e in s.episodes]
        for index, cells in enumerate([header, *rows]):
            wrapped = [
                self._cell(cell, share * width, bold=index == 0)
                for cell, (_, share) in zip(cells, COLUMNS, strict=True)
            ]
            height = self.page.height(max(len(w) for w in wrapped), SMALL) + 0.04
            self._need(height, s.title)
            x = MARGIN
            for lines, (_, share) in zip(wrapped, COLUMNS, strict=True):
                self.page.figure.text(
                    x / A4[0],
                    1 - self.page.y / A4[1],
                    charts.plain("\n".join(lines)),
                    fontsize=SMALL,
                    fontweight="bold" if index == 0 else "normal",
                    va="top",
                    linespacing=1.45,
                )
                x += share * width
            self.page.gap(height)
        self.page.gap(0.15)

    def _cell(self, text: str, inches: float, *, bold: bool) -> list[str]:
        """A table cell's lines: the page's measured wrap with a narrower width."""
        page = self.page
        saved, page.width = page.width, inches - 0.1
        try:
            return page.wrap(text, SMALL, bold=bold)
        finally:
            page.width = saved


def figures(report: Report) -> list[MplFigure]:
    """Every page of the PDF, in order (the tests check each one's layout)."""
    writer = _Writer(report)
    writer.summary()
    for section in report.sections:
        writer.section(section)
    return [page.figure for page in writer.pages]


def write(report: Report, path: Path) -> int:
    """Write the PDF; returns its page count."""
    pages = figures(report)
    with PdfPages(
        path, metadata={"Title": "loglog service report", "Creator": "loglog report"}
    ) as pdf:
        for page in pages:
            pdf.savefig(page)
    return len(pages)
