"""The PDF's layout check and the layout itself on hard input: many charts, long names, long
sentences — every page holds its text (nothing cut at an edge, nothing overlapping)."""

from __future__ import annotations

import pytest

from report import layout, pdf
from report.model import Chart, Episode, Figure, Report, Section


def test_the_layout_check_sees_cut_and_overlapping_text():
    """The check can fail: text past the right edge, and two texts on top of each other."""
    page = layout.Page()
    page.figure.text(0.9, 0.5, "InferenceThroughputCollapsed")
    page.figure.text(0.1, 0.2, "one label")
    page.figure.text(0.1, 0.2, "another label")
    found = layout.problems(page.figure)
    assert any(p.startswith("clipped: 'InferenceThroughputCollapsed'") for p in found)
    assert any(p.startswith("overlap:") for p in found)


@pytest.mark.slow  # draws a dozen charts
def test_a_crowded_report_keeps_every_page_readable():
    """Eleven charts in one section (the fleet page had them on one A4 page), alert names of
    40 characters, a sentence of 200 words: at most four charts a page, nothing cut, nothing
    overlapping, the incident table on its pages."""
    start, end = 1.8e9 - 7200, 1.8e9
    points = [(start + 30 * i, float(i % 7)) for i in range(241)]
    many = tuple(
        Chart(
            title=f"Chart number {i} with a rather long title to see it kept whole",
            description="",
            unit="reqps",
            lines=tuple((f"worker-{j}.example.internal:9000", points) for j in range(9)),
            queries=(),
        )
        for i in range(11)
    )
    names = [f"FleetBacklogPastDrainDeadline{'Extended' * i}" for i in range(4)]
    episodes = tuple(
        Episode(alertname=n, severity="critical", start=start + 600 * k, end=start + 600 * k + 300)
        for k, n in enumerate(names * 6)
    )
    words = " ".join(["words"] * 200) + "."
    report = Report(
        prometheus="http://127.0.0.1:9090",
        start=start,
        end=end,
        step=30,
        sections=(
            Section(key="jobs", title="Job progress", sentence=words, charts=many,
                    figures=tuple(Figure(label=f"Figure {i}", value=1.0, unit="short", query="q", at=end)
                                  for i in range(30))),
            Section(key="incidents", title="Incidents", sentence=words, episodes=episodes),
        ),
    )  # fmt: skip
    pages = pdf.figures(report)
    assert sum(len(p.axes) for p in pages) == 11 + 1
    for number, page in enumerate(pages, 1):
        assert len(page.axes) <= pdf.CHARTS_PER_PAGE
        assert layout.problems(page) == [], number
