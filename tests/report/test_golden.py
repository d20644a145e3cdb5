"""Golden scenarios (tests/report/scenarios.py), each a real Prometheus range filled with known
data: the healthy day and the bad ones — SLO missed, an outage with a gap, overload, a
stalled stage, nothing at all, a fleet whose broker went down. For each, a table of the
sentences (and states) the report must say, asserted on the HTML and on the PDF's text;
every PDF page checked as a layout and as an image for text that is cut or overlaps; the
HTML opened in Chromium with no text overflowing; gaps drawn as gaps."""

from __future__ import annotations

import html as htmllib
import math
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy
import pytest

from report import charts, layout, pdf, sections
from report.cli import write
from report.model import Report
from report.prom import Prometheus
from tests.conftest import ROOT
from tests.report import browser, scenarios
from tests.report.conftest import Golden

pytestmark = pytest.mark.slow
#: The README's bad-day page, made by the Chromium test (remake: LOGLOG_REPORT_PNG=1).
BAD_DAY_PNG = ROOT / "docs" / "report-bad-day.png"


@dataclass
class Made:
    report: Report
    html: str
    pdf_path: Path
    pdf_text: str  # whitespace collapsed
    html_path: Path


@pytest.fixture(scope="module")
def made(golden: Golden, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Made]:
    """Every scenario's report, HTML and PDF, made once for the module."""
    out: dict[str, Made] = {}
    for name, end in golden.ends.items():
        report = sections.build(Prometheus(golden.url), end=end, range_seconds=scenarios.RANGE)
        html_path, pdf_path = write(
            report, tmp_path_factory.mktemp(name), name=f"golden-{name}", pdf=True
        )
        text = subprocess.run(
            ["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, check=True
        ).stdout
        out[name] = Made(report, html_path.read_text(), pdf_path, " ".join(text.split()), html_path)
    return out


def _hm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M")


def expected(ends: dict[str, int]) -> dict[str, dict[str, tuple[str, list[str]]]]:
    """scenario → section → (state, sentences it must contain)."""
    outage, broker = ends["outage"], ends["fleet_broker_outage"]
    down = f"from {_hm(outage - scenarios.OUTAGE_FROM)} to {_hm(outage - scenarios.OUTAGE_TO)} UTC"
    broker_down = (
        f"from {_hm(broker - scenarios.BROKER_FROM)} to {_hm(broker - scenarios.BROKER_TO)} UTC"
    )
    healthy_sl = (
        "99.8 % of requests finished within the 1 s latency objective on average over the "
        "range, which meets the 99.0 % target; at this pace 80.0 % of the latency error "
        "budget would be left."
    )
    room = "Room for 6.0 more streams like the current ones at the end of the range."
    return {
        "healthy": {
            "throughput": ("healthy", ["Delivered 72 k items in the last 2 h (10 /s on average, peak 13 /s)."]),
            "service-level": ("healthy", [healthy_sl]),
            "capacity": ("healthy", ["The pipeline delivered 25.0 % of model capacity on average (capacity 40 /s).", room]),
            "incidents": ("degraded", ["4 alert firings: 1 page (critical), 3 other;"]),
        },
        "slo_missed": {
            "service-level": ("exhausted", [
                "Only 28.9 % of requests finished within the 1 s latency objective on average over "
                "the range, which misses the 99.0 % target: the latency error budget is exhausted "
                "— 71× the allowed share of slow requests.",
                "of requests succeeded within the 1 s objective (errors and slow requests count "
                "against it): the 30-day error budget is exhausted —",
            ]),
            "capacity": ("degraded", ["No headroom is claimed: the 1 s latency objective was missed in this range."]),
            "incidents": ("degraded", ["(InferenceLatencyBudgetBurn)"]),
        },
        "outage": {
            "throughput": ("partial", [f"No data for 6 min, {down}: the inference server was not scraped (down or unreachable)."]),
            "incidents": ("degraded", ["longest 6 min (InferenceDown)"]),
        },
        "restarted": {
            "capacity": ("degraded", ["No headroom is claimed: the inference server (re)started 2 min before the end of the range, and its 5 min rate window is still filling."]),
        },
        "overload": {
            "throughput": ("degraded", ["Overloaded: 36 k requests were rejected or shed and 7.2 k frames dropped — load the server could not take."]),
            "service-level": ("degraded", ["which meets the 99.0 % target with little to spare: at this pace only 20.0 % of the latency error budget would be left."]),
            "capacity": ("degraded", ["No headroom is claimed: the server shed load in this range."]),
        },
        "stalled": {
            "capacity": ("degraded", [
                "The preprocess stage was stalled (hung, not slow) for 12 min in this range, and still was at its end.",
                "No headroom is claimed: a stage was stalled in this range.",
            ]),
            "incidents": ("degraded", ["(InferenceStalled)"]),
        },
        "empty": {
            "throughput": ("no_data", ["No items were delivered in the last 2 h: the throughput series is empty"]),
            "service-level": ("no_data", ["No request latencies were recorded in this range. No request outcomes were recorded over 30 days."]),
            "capacity": ("no_data", ["No efficiency was measured: the model's capacity is not known yet."]),
            "incidents": ("healthy", ["No alert fired in the last 2 h."]),
            "jobs": ("no_data", ["No job reported progress in the last 2 h."]),
        },
        "fleet_broker_outage": {
            "jobs": ("degraded", [f"The job broker was down for 6 min, {broker_down}.", "ETA to drain: 1 h 30 min"]),
            "incidents": ("degraded", ["(FleetBrokerDown)"]),
            "capacity": ("healthy", [room]),
        },
    }  # fmt: skip


#: Never said, on any day: the issue's false sentences and numbers that are not numbers.
FORBIDDEN = [
    re.compile(r"−\d[\d.]* %"),  # a negative share ("−7007.1 % of the … budget is left")
    re.compile(r"\b(nan|inf)\b", re.I),
    re.compile(r"of requests succeeded;"),  # the 30-day share without what it counts
]
#: Said only where it is true.
NOT_ON = {
    "Room for": ["slo_missed", "restarted", "overload", "stalled", "empty"],
    "No data for": ["healthy", "slo_missed", "overload", "stalled", "fleet_broker_outage"],
    "Overloaded": [
        "healthy",
        "slo_missed",
        "outage",
        "restarted",
        "stalled",
        "fleet_broker_outage",
    ],
    "broker was down": [
        "healthy",
        "slo_missed",
        "outage",
        "restarted",
        "overload",
        "stalled",
        "empty",
    ],
}


def _sections(page: str) -> dict[str, tuple[str, str]]:
    found = re.findall(
        r'<section id="([\w-]+)"[^>]*data-state="(\w+)">\s*<h2>.*?</h2>\s*'
        r'<p class="sentence">(.*?)</p>',
        page,
    )
    return {key: (state, htmllib.unescape(text)) for key, state, text in found}


@pytest.mark.parametrize("scenario", list(scenarios.SCENARIOS))
def test_each_scenario_says_its_expected_sentences_in_html_and_pdf(
    made: dict[str, Made], golden: Golden, scenario: str
):
    """The table above, on the HTML (each section's sentence and state) and on the PDF's
    text (summary and section pages); nothing forbidden, nothing said where it is false."""
    m = made[scenario]
    said = _sections(m.html)
    assert set(said) == {"throughput", "service-level", "capacity", "incidents", "jobs"}
    for key, (state, phrases) in expected(golden.ends)[scenario].items():
        assert said[key][0] == state, (key, said[key])
        for phrase in phrases:
            assert phrase in said[key][1], (key, phrase, said[key][1])
            assert phrase in m.pdf_text, (key, phrase)
    everything = " ".join(text for _, text in said.values())
    for pattern in FORBIDDEN:
        assert not pattern.search(everything), (pattern, everything)
        assert not pattern.search(m.pdf_text), pattern
    for phrase, days in NOT_ON.items():
        if scenario in days:
            assert phrase not in everything and phrase not in m.pdf_text, phrase


def test_an_exhausted_budget_figure_says_so(made: dict[str, Made]):
    """The figures table shows "exhausted (71× the allowed)", not "−7007.1 %"."""
    service = made["slo_missed"].report.sections[1]
    shown = {f.label: f.text for f in service.figures}
    assert shown["Latency error budget left"] == "exhausted (71× the allowed)"
    assert shown["Error budget left, 30 days"].startswith("exhausted (")
    assert "Latency error budget left: exhausted (71× the allowed)" in made["slo_missed"].pdf_text


def test_overload_counts_requests_shed_as_well_as_rejected(made: dict[str, Made]):
    """Shed requests (503, inference_requests_shed_total) count with the rejected ones: the
    figure is 2/s rejected + 3/s shed over the two hours, not the rejected 14.4 k alone."""
    throughput = made["overload"].report.sections[0]
    (figure,) = [f for f in throughput.figures if f.label.startswith("Requests rejected")]
    assert figure.label == "Requests rejected or shed in the range"
    assert figure.value is not None and abs(figure.value - 5.0 * scenarios.RANGE) < 200
    assert "inference_requests_shed_total" in figure.query


#: scenario → how the capacity section's headroom figure reads (a number only where claimed).
HEADROOM = {
    "healthy": "6",
    "fleet_broker_outage": "6",
    "outage": "6",
    "slo_missed": "— (not claimed: the 1 s latency objective was missed)",
    "overload": "— (not claimed: the server shed load)",
    "stalled": "— (not claimed: a stage was stalled)",
    "restarted": "— (not claimed: the 5 min rate is still filling after a (re)start)",
}


@pytest.mark.parametrize("scenario", list(HEADROOM))
def test_the_headroom_figure_is_a_number_only_where_headroom_is_claimed(
    made: dict[str, Made], scenario: str
):
    """Where the sentence says "No headroom is claimed", the figure says so too (and why),
    in the HTML and the PDF, and no number is kept for it."""
    capacity = made[scenario].report.sections[2]
    (figure,) = [f for f in capacity.figures if f.label == "Capacity headroom (streams)"]
    assert figure.text == HEADROOM[scenario]
    assert f"Capacity headroom (streams): {figure.text}" in made[scenario].pdf_text
    if figure.text.startswith("—"):
        assert figure.value is None
        assert 'data-value=""' in made[scenario].html.split("Capacity headroom (streams)")[1][:2000]


def test_an_outage_is_a_gap_and_the_ramp_after_it_is_not_drawn(
    made: dict[str, Made], golden: Golden
):
    """The throughput chart has no point from the outage's start to 5 minutes after the
    restart (the rate outlived the server, then refilled its window), and breaks its line
    there; the broker's queue chart breaks across the broker's outage."""
    end = golden.ends["outage"]
    down_from, down_to = end - scenarios.OUTAGE_FROM, end - scenarios.OUTAGE_TO
    (chart,) = made["outage"].report.sections[0].charts
    ((_, points),) = chart.lines
    drawn = [t for t, v in points if not math.isnan(v)]
    assert not [t for t in drawn if down_from + 30 < t < down_to + 300]
    assert any(math.isnan(v) and down_from < t < down_to + 300 for t, v in points)
    assert drawn[0] <= end - scenarios.RANGE + 30 and drawn[-1] >= end - 30
    fleet = golden.ends["fleet_broker_outage"]
    queue = next(c for c in made["fleet_broker_outage"].report.sections[4].charts
                 if c.title == "Broker queue")  # fmt: skip
    ((_, points),) = queue.lines
    gap = (fleet - scenarios.BROKER_FROM + 30, fleet - scenarios.BROKER_TO)
    assert not [t for t, v in points if not math.isnan(v) and gap[0] < t < gap[1]]
    assert any(math.isnan(v) for _, v in points)


@pytest.mark.parametrize("scenario", list(scenarios.SCENARIOS))
def test_every_pdf_page_holds_its_text(made: dict[str, Made], scenario: str):
    """Each page as laid out: no text box leaves the page, no two overlap, at most four
    charts; the incident table is in the PDF with every alert's full name."""
    report = made[scenario].report
    pages = pdf.figures(report)
    for number, page in enumerate(pages, 1):
        assert layout.problems(page) == [], (scenario, number)
        assert len(page.axes) <= pdf.CHARTS_PER_PAGE, (scenario, number)
    for episode in report.sections[3].episodes:
        assert episode.alertname in made[scenario].pdf_text


@pytest.mark.parametrize("scenario", ["slo_missed", "outage", "fleet_broker_outage"])
def test_pdf_page_images_have_nothing_cut_at_the_edges(
    made: dict[str, Made], scenario: str, tmp_path: Path
):
    """pdftoppm's image of every page: a margin with no ink on all four sides (text cut by
    the page edge would touch it), and pdftotext's word boxes all inside the page."""
    from PIL import Image

    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(made[scenario].pdf_path), str(tmp_path / "p")],
        check=True,
        capture_output=True,
    )
    images = sorted(tmp_path.glob("p-*.png"))
    assert len(images) >= 6
    for image in images:
        pixels = numpy.asarray(Image.open(image).convert("L"), dtype=int)
        edge = 8  # px at 40 dpi: 0.2 in of the 0.6 in margin
        border = numpy.concatenate(
            [pixels[:edge].ravel(), pixels[-edge:].ravel(),
             pixels[:, :edge].ravel(), pixels[:, -edge:].ravel()]
        )  # fmt: skip
        assert border.min() > 200, f"ink at the edge of {image.name}"
    boxes = subprocess.run(
        ["pdftotext", "-bbox", str(made[scenario].pdf_path), "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for page in re.findall(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', boxes, re.S):
        width, height = float(page[0]), float(page[1])
        for x0, y0, x1, y1, word in re.findall(
            r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" yMax="([\d.-]+)">(.*?)</word>',
            page[2],
        ):
            assert float(x0) >= 0 and float(x1) <= width, word
            assert float(y0) >= 0 and float(y1) <= height, word


@pytest.mark.parametrize("scenario", ["slo_missed", "outage", "fleet_broker_outage"])
def test_html_of_a_bad_day_opens_with_nothing_overflowing(
    made: dict[str, Made], scenario: str, tmp_path: Path
):
    """Chromium: no error, nothing fetched, no text wider than the window or cut by its box
    (JS bounding boxes), no sideways scroll; each chart's own text (matplotlib extents)
    inside its figure. The missed-SLO day's top is the README's bad-day picture."""
    m = made[scenario]
    opened = browser.open_page(m.html_path, tmp_path)
    assert opened.console == [] and opened.errors == [] and opened.resources == []
    assert opened.overflow == []
    assert opened.scroll_width <= opened.width
    report = m.report
    for section in report.sections:
        for chart in section.charts:
            if chart.lines:
                assert layout.problems(charts.line_chart(chart, report.start, report.end)) == []
        if section.episodes:
            figure = charts.timeline(section.episodes, report.start, report.end)
            assert layout.problems(figure) == []
    if scenario == "slo_missed" and "LOGLOG_REPORT_PNG" in os.environ:
        from PIL import Image

        png = browser.screenshot(m.html_path, tmp_path / "page.png", opened.height)
        image = Image.open(png).convert("RGB")
        top = image.crop((0, 0, browser.WIDTH, min(image.height, 1500))).resize((700, 1050))
        top.quantize(64).save(BAD_DAY_PNG, optimize=True)
