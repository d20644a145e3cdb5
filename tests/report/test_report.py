"""`loglog report` (the CLI) against a real Prometheus filled with known data (the golden
scenarios' healthy and empty days, tests/report/scenarios.py): every figure is its query's
value, the numbers are the known ones, the HTML opens in headless Chromium with every chart
drawn, the PDF has its pages, and an empty Prometheus gives a report that says so."""

from __future__ import annotations

import html as htmllib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy
import pytest

from alerts.names import check_expression
from alerts.recording import recorded_names
from report import builder, sections
from report.prom import Prometheus
from report.units import fmt
from tests.conftest import ROOT
from tests.report import browser, known
from tests.report.conftest import Golden

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus"),
]
RANGE = 2 * 3600
SECTION_TITLES = [
    "Throughput",
    "Service level",
    "Capacity and efficiency",
    "Incidents",
    "Job progress",
]
#: The README's screenshot, made by the browser test (committed; remake: LOGLOG_REPORT_PNG=1).
README_PNG = ROOT / "docs" / "report.png"


@dataclass
class Made:
    url: str
    end: int
    html: Path
    pdf: Path
    work: Path
    stdout: str


def _loglog_report(url: str, end: int, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stack.cli",
            "report",
            "--prometheus",
            url,
            "--range",
            "2h",
            "--end",
            str(end),
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )


def _made(url: str, end: int, work: Path) -> Made:
    result = _loglog_report(url, end, work / "out", "--pdf")
    assert result.returncode == 0, result.stderr
    (html,) = (work / "out").glob("*.html")
    (pdf,) = (work / "out").glob("*.pdf")
    return Made(url, end, html, pdf, work, result.stdout)


@pytest.fixture(scope="module")
def known_report(golden: Golden, tmp_path_factory: pytest.TempPathFactory) -> Made:
    work = tmp_path_factory.mktemp("known")
    return _made(golden.url, golden.ends["healthy"], work)


@pytest.fixture(scope="module")
def empty_report(golden: Golden, tmp_path_factory: pytest.TempPathFactory) -> Made:
    work = tmp_path_factory.mktemp("empty")
    return _made(golden.url, golden.ends["empty"], work)


def _figures(page: str) -> list[dict[str, str]]:
    cells = re.findall(
        r'<tr><th>(.*?)</th><td class="figure" data-query="(.*?)" data-value="(.*?)" '
        r'data-unit="(.*?)" data-at="(.*?)">(.*?)</td>',
        page,
    )
    return [
        dict(
            zip(
                ("label", "query", "value", "unit", "at", "text"),
                map(htmllib.unescape, c),
                strict=True,
            )
        )
        for c in cells
    ]


def _sentences(page: str) -> dict[str, str]:
    found = re.findall(
        r'<section id="([\w-]+)"[^>]*>\s*<h2>.*?</h2>\s*<p class="sentence">(.*?)</p>', page
    )
    return {key: htmllib.unescape(text) for key, text in found}


def _query(url: str, expr: str, at: str) -> list[float]:
    params = urllib.parse.urlencode({"query": expr, "time": at})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=30) as response:
        data = json.load(response)["data"]
    return [float(r["value"][1]) for r in data["result"] if not math.isnan(float(r["value"][1]))]


def test_every_figure_is_the_value_of_its_query(known_report: Made):
    """Each figure in the HTML carries its PromQL and time; asking Prometheus again gives
    the same number, and the text shown is that number formatted in the panel's unit."""
    figures = _figures(known_report.html.read_text())
    assert len(figures) >= 14
    for f in figures:
        values = _query(known_report.url, f["query"], f["at"])
        if f["value"] == "":
            assert values == [], f
            assert f["text"] == "no data"
            continue
        assert values, f
        assert math.isclose(sum(values), float(f["value"]), rel_tol=1e-12), f
        shown = fmt(float(f["value"]), f["unit"])
        assert f["text"] == shown or f["text"].startswith("exhausted ("), f


def test_figures_and_sentences_say_what_the_known_data_holds(known_report: Made):
    """10 items/s (the counter; its recorded rate an hourly wave of ±30 %) for two hours is
    72 k items, peak 13/s; a 0.2 % slow ratio is 99.8 % within the objective and 80 % of the
    budget left; 10 of 40 items/s is 25 % efficiency and room for 6 streams."""
    page = known_report.html.read_text()
    by_label = {f["label"]: f for f in _figures(page)}
    value = lambda label: float(by_label[label]["value"])  # noqa: E731
    assert value("Items delivered in the range") == pytest.approx(
        known.items_delivered(RANGE), rel=1e-6
    )
    assert value("Mean throughput (5-min rate)") == pytest.approx(10.0)
    # the wave's crest, on the 30 s grid
    assert value("Peak throughput (5-min rate)") == pytest.approx(13.0)
    assert value("Requests within the 1 s latency objective (mean)") == pytest.approx(0.998)
    assert value("Latency error budget left") == pytest.approx(0.8)
    assert value("Mean p95 latency (worst job)") == pytest.approx(0.12)
    # 30-day attainment counts errors (0.01/s) and requests slower than 1 s (0.02/s) as bad.
    assert value("SLO attainment, 30 days") == pytest.approx(1 - 0.03 / 10.01)
    assert value("Pipeline efficiency (mean)") == pytest.approx(0.25)
    assert value("Capacity headroom (streams)") == pytest.approx(6.0)
    assert by_label["GPU utilization (mean)"]["value"] == ""
    said = _sentences(page)
    assert (
        said["throughput"] == "Delivered 72 k items in the last 2 h (10 /s on average, peak 13 /s)."
    )
    assert said["service-level"].startswith(
        "99.8 % of requests finished within the 1 s latency objective on average over the "
        "range, which meets the 99.0 % target; at this pace 80.0 % of the latency error "
        "budget would be left."
    )
    assert "Room for 6.0 more streams like the current ones" in said["capacity"]
    assert "delivered 25.0 % of model capacity" in said["capacity"]
    assert "No GPU reported" in said["capacity"]
    # The Jobs dashboard is installed (fleet/), but the known data has no job series.
    assert said["jobs"] == "No job reported progress in the last 2 h."
    assert "Data starts" not in page  # the data covers the whole range


def test_incidents_come_from_the_alerts_series_with_counts_and_durations(known_report: Made):
    """Four firings (a 14-minute page, a ticket twice for 5 minutes, one still firing),
    pending ones left out; durations exact on this 15 s-aligned data."""
    page = known_report.html.read_text()
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td><td>[^<]*</td><td>([^<]*)</td></tr>", page)
    assert [(name, severity) for name, severity, _ in rows] == [
        (f.alertname, f.severity) for f in known.FIRINGS
    ]
    assert [took for *_, took in rows] == ["14 min", "5 min", "5 min", "8 min"]
    said = _sentences(page)["incidents"]
    assert said == (
        "4 alert firings: 1 page (critical), 3 other; longest 14 min (InferenceLatencyBudgetBurn); "
        "alerts were firing 32 min of the 2 h. 1 still firing at the end of the range."
    )


def test_a_week_long_report_keeps_every_firing_and_the_item_count(known_report: Made):
    """Over 7 days the chart step is 42 minutes; figures and the alert timeline use finer
    windows, so no 5-minute firing is lost, and the item count is the counter's increase."""
    report = sections.build(
        Prometheus(known_report.url), end=known_report.end, range_seconds=7 * 86400
    )
    throughput, incidents = report.sections[0], report.sections[3]
    assert report.step == 2520
    # The counter's increase over all the data (10/s for 2 h 10 min): exact at any range.
    assert throughput.figures[0].value == pytest.approx(10.0 * known.HISTORY)
    assert [(e.alertname, e.severity) for e in incidents.episodes] == [
        (f.alertname, f.severity) for f in known.FIRINGS
    ]
    window = builder.alert_step_for(7 * 86400)
    for episode, firing in zip(incidents.episodes, known.FIRINGS, strict=True):
        assert abs(episode.seconds - 60 * firing.minutes) <= window + known.SCRAPE, episode


def test_html_opens_in_chromium_without_errors_and_draws_every_chart(known_report: Made):
    """No console message, no failed load, nothing fetched (self-contained), and inside every
    chart's box a screenshot shows coloured pixels: the data, not only axes."""
    from PIL import Image

    page = known_report.html.read_text()
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"url\((?!#)", page), "only in-document references (SVG clip paths)"
    assert not re.search(r'(src|href)="(https?:)?//', page)
    opened = browser.open_page(known_report.html, known_report.work)
    assert opened.console == [] and opened.errors == [] and opened.resources == []
    titles = [r["title"] for r in opened.rects]
    assert titles == ["Throughput", "Latency", "Capacity vs delivered", "Alerts firing"]
    png = browser.screenshot(known_report.html, known_report.work / "report.png", opened.height)
    image = Image.open(png).convert("RGB")
    for rect in opened.rects:
        box = (
            int(rect["x"]),
            int(rect["y"]),
            int(rect["x"] + rect["w"]),
            int(rect["y"] + rect["h"]),
        )
        assert rect["w"] > 300 and rect["h"] > 80, rect
        pixels = numpy.asarray(image.crop(box), dtype=int)
        coloured = int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())
        assert coloured > 200, f"chart {rect['title']!r} shows no data in the screenshot"
    if "LOGLOG_REPORT_PNG" in os.environ:
        top = image.crop((0, 0, browser.WIDTH, min(image.height, 1800))).resize((700, 1260))
        top.quantize(64).save(README_PNG, optimize=True)  # a small PNG for the README


def test_chromium_check_sees_a_console_error(known_report: Made, tmp_path: Path):
    """The browser check can fail: a page that logs an error is caught."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        known_report.html.read_text().replace(
            "</body>", '<script>console.error("boom")</script></body>'
        )
    )
    assert any("boom" in message for message in browser.open_page(broken, tmp_path).console)


def test_pdf_has_a_summary_page_and_one_page_per_section(known_report: Made):
    """pdfinfo counts six pages; pdftotext finds the summary first, then each section."""
    info = subprocess.run(
        ["pdfinfo", str(known_report.pdf)], capture_output=True, text=True, check=True
    )
    assert re.search(r"^Pages:\s+6$", info.stdout, re.M), info.stdout
    pages = []
    for number in range(1, 7):
        text = subprocess.run(
            ["pdftotext", "-f", str(number), "-l", str(number), str(known_report.pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pages.append(" ".join(text.split()))
    assert "Service report" in pages[0] and "Delivered 72 k items" in pages[0]
    for title, text in zip(SECTION_TITLES, pages[1:], strict=True):
        assert text.startswith(title), (title, text[:200])
    assert "Items delivered in the range: 72 k" in pages[1]
    assert "InferenceLatencyBudgetBurn" in pages[4]


def test_every_report_query_names_only_declared_metrics(known_report: Made):
    """The report's own subqueries pass the same declared-names check as the dashboards."""
    report = sections.build(Prometheus(known_report.url), end=known_report.end, range_seconds=RANGE)
    asked = sections.queries(report)
    assert len(asked) >= 20
    recorded = recorded_names()
    for expr in asked:
        assert check_expression(expr, recorded) == [], expr


def test_an_empty_prometheus_gives_a_report_that_says_so(empty_report: Made):
    """A new stack: every section says there is no data, no chart is drawn empty, and the
    PDF is still made."""
    page = empty_report.html.read_text()
    said = _sentences(page)
    assert said["throughput"].startswith("No items were delivered in the last 2 h")
    assert said["service-level"].startswith("No request latencies were recorded")
    assert said["capacity"].startswith("No efficiency was measured")
    assert said["incidents"] == "No alert fired in the last 2 h."
    assert "<svg" not in page
    # Three chart panels of the first sections, and each chart of the Jobs dashboard.
    assert len(re.findall(r'<p class="no-data"', page)) >= 3
    assert said["jobs"] == "No job reported progress in the last 2 h."
    assert all(f["text"] == "no data" for f in _figures(page) if f["value"] == "")
    assert "Traceback" not in page + empty_report.stdout
    info = subprocess.run(
        ["pdfinfo", str(empty_report.pdf)], capture_output=True, text=True, check=True
    )
    assert re.search(r"^Pages:\s+6$", info.stdout, re.M)


def test_data_that_starts_late_is_said(known_report: Made):
    """Three hours asked, two hours and ten minutes held: the report says where data starts."""
    report = sections.build(
        Prometheus(known_report.url), end=known_report.end, range_seconds=3 * 3600
    )
    throughput = report.sections[0]
    assert throughput.sentence.endswith(
        "Data starts 50 min into the 3 h range: the figures cover its last 2 h 10 min."
    )


def test_a_jobs_dashboard_becomes_the_job_section(
    known_report: Made, monkeypatch: pytest.MonkeyPatch
):
    """When a jobs board is installed (the fleet package adds one), its stat panels become
    figures and its time series charts; a panel Prometheus refuses is named, not fatal."""
    from dashboards import builder, generate

    def jobs_board(cfg):
        d = builder.Dashboard("loglog-jobs", "Jobs", "Job progress.", ["loglog"], [])
        d.add(builder.stat("Items done", "Items finished by jobs.", "short",
                           [builder.prom('sum(inference_stage_items_total{stage="encode"})', instant=True)]))  # fmt: skip
        d.add(builder.timeseries("Job throughput", "Items per second.", "reqps",
                                 [builder.prom("job:inference_delivered_items:rate5m", "{{job}}")]))  # fmt: skip
        d.add(
            builder.stat(
                "Broken",
                "A query Prometheus refuses.",
                "short",
                [builder.prom("sum(", instant=True)],
            )
        )
        return d.json()

    monkeypatch.setitem(generate.BUILDERS, "loglog-jobs", jobs_board)
    report = sections.build(Prometheus(known_report.url), end=known_report.end, range_seconds=RANGE)
    jobs = report.sections[-1]
    done = _query(
        known_report.url, 'sum(inference_stage_items_total{stage="encode"})', str(known_report.end)
    )
    assert jobs.has_data and [f.label for f in jobs.figures] == ["Items done"]
    assert jobs.figures[0].value == pytest.approx(done[0])
    assert jobs.sentence == f"Items done: {fmt(done[0], 'short')}. Could not be asked: Broken."
    assert [c.title for c in jobs.charts] == ["Job throughput"] and jobs.charts[0].lines
