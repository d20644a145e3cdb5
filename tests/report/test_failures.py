"""`loglog report` when things go wrong: Prometheus down or not Prometheus, an output
directory it cannot write, a bad range, a panel renamed, an undeclared metric."""

from __future__ import annotations

import http.server
import math
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.names import check_expression
from alerts.recording import recorded_names
from dashboards.panels import PanelNotFound, Target, panel
from report.cli import make, write
from report.errors import OutputError, PrometheusError, QueryError, ReportError
from report.model import Report
from report.prom import Prometheus
from report.units import duration, fmt, parse_range
from stack.cli import build_parser, main
from tests.conftest import free_port, http_server


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"<html>not prometheus</html>"
    status = 200
    hold: threading.Event | None = None  # set: answer only once the test lets go

    def do_GET(self) -> None:
        if self.hold is not None:
            self.hold.wait(30)
        self.send_response(self.status)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbage_server() -> Iterator[str]:
    with http_server(_Handler) as url:
        yield url


def test_prometheus_down_exits_1_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Nothing listens: one line saying to start it or pass --prometheus, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["report", "--prometheus", url, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"loglog report: cannot query Prometheus at {url}")
    assert "--prometheus URL" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no half report


def test_a_server_that_is_not_prometheus_is_named_as_such(garbage_server: str):
    """A web page where Prometheus should be: the message says the URL is not Prometheus."""
    with pytest.raises(PrometheusError, match="did not answer like Prometheus' HTTP API"):
        Prometheus(garbage_server).instant("up", 0)


def test_a_slow_prometheus_times_out_with_a_message(
    garbage_server: str, monkeypatch: pytest.MonkeyPatch
):
    """A Prometheus that never answers costs the client timeout, not a hang."""
    release = threading.Event()
    monkeypatch.setattr(_Handler, "hold", release)
    try:
        with pytest.raises(PrometheusError, match=r"cannot query Prometheus .*timed out"):
            Prometheus(garbage_server, timeout=0.5).instant("up", 0)
    finally:
        release.set()


def test_credentials_in_the_url_never_reach_messages(tmp_path: Path):
    """user:password in --prometheus stays out of the error text (loglog.redact)."""
    url = f"http://admin:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusError) as caught:
        Prometheus(url).instant("up", 0)
    assert "s3cret" not in str(caught.value)


def test_a_refused_query_names_the_query(garbage_server: str, monkeypatch: pytest.MonkeyPatch):
    """Prometheus' own error for a bad query comes back with the query that caused it."""
    monkeypatch.setattr(_Handler, "status", 400)
    monkeypatch.setattr(_Handler, "body", b'{"status":"error","error":"parse error at char 3"}')
    with pytest.raises(QueryError, match=r"rejected 'su\(': parse error"):
        Prometheus(garbage_server).instant("su(", 0)


def test_an_unwritable_output_directory_is_an_output_error(tmp_path: Path):
    """A file where the directory should be (root ignores permissions, not file types)."""
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a directory")
    report = Report(prometheus="http://127.0.0.1:9090", start=0, end=3600, step=15, sections=())
    with pytest.raises(OutputError, match=r"cannot write the report into .*--out DIR"):
        write(report, blocker / "reports", name="r", pdf=True)


def test_a_failed_pdf_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Disk full half-way through the PDF: an OutputError, and no .partial left behind."""
    from report import pdf

    def full(report: Report, path: Path) -> int:
        path.write_bytes(b"%PDF-1.4 half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pdf, "write", full)
    report = Report(prometheus="http://127.0.0.1:9090", start=0, end=3600, step=15, sections=())
    with pytest.raises(OutputError, match="No space left on device"):
        write(report, tmp_path, name="r", pdf=True)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".html"]


@pytest.mark.parametrize("text", ["", "7", "0h", "1.5h", "7days", "-1d", "h"])
def test_a_bad_range_says_the_accepted_form(text: str):
    """Anything but one positive number and one unit is refused with the accepted form."""
    with pytest.raises(ValueError, match="like 1h, 24h, 7d"):
        parse_range(text)


def test_a_bad_range_fails_before_asking_prometheus(tmp_path: Path):
    """A bad --range is a ReportError even with no Prometheus listening (checked first)."""
    with pytest.raises(ReportError, match="like 1h, 24h, 7d"):
        make(f"http://127.0.0.1:{free_port()}", range_text="week", out=tmp_path, pdf=False)


def test_ranges_and_units_in_words():
    """Ranges in seconds; durations, counts, ratios and latencies as a manager reads them."""
    assert [parse_range(t) for t in ("90s", "1h", "24h", "7d", "2w")] == [
        90, 3600, 86400, 604800, 1209600
    ]  # fmt: skip
    assert [duration(s) for s in (30, 840, 7200, 9000, 90000)] == [
        "30 s", "14 min", "2 h", "2 h 30 min", "1 d 1 h"
    ]  # fmt: skip
    assert fmt(None, "short") == "no data"
    assert fmt(1_234_567, "short") == "1.23 M"
    assert fmt(0.987, "percentunit") == "98.7 %"
    assert fmt(0.12, "s") == "120 ms"


def test_a_renamed_panel_is_a_clear_error_not_an_empty_section():
    """A report asking for a panel the dashboards no longer have fails naming the ones they have."""
    with pytest.raises(PanelNotFound, match="has no panel 'Thruput'; it has 'Items processed"):
        panel("loglog-overview", "Thruput")


def test_a_dashboard_variable_without_a_value_is_refused():
    """A template variable with no value is an error naming it, never a silent `.*`."""
    with pytest.raises(KeyError, match=r"\$job"):
        Target(expr='up{job=~"$job"}', legend="", datasource="prometheus").promql({})


def test_the_declared_names_check_sees_through_report_subqueries():
    """The report wraps panel queries in subqueries; a wrong name inside is still caught,
    and a right one still passes — the check that fails when a report query is undeclared."""
    recorded = recorded_names()
    bad = 'avg_over_time((sum(inference_delivered_itemz{job=~".*"}))[7200s:30s]) * 30'
    good = 'avg_over_time((sum(job:inference_delivered_items:rate5m{job=~".*"}))[7199s:30s]) * 30'
    assert check_expression(bad, recorded) == ["inference_delivered_itemz"]
    assert check_expression(good, recorded) == []


def test_no_flags_means_the_embedded_stack():
    """`loglog report` alone reads `loglog up`'s Prometheus and writes to its state dir."""
    from stack.up import Options, default_state_dir

    args = build_parser().parse_args(["report"])
    assert args.prometheus == f"http://127.0.0.1:{Options(state_dir=Path('.')).prometheus_port}"
    assert args.out == default_state_dir() / "reports"
    assert args.range == "1h" and args.pdf is False
    assert os.fspath(args.out).endswith(os.path.join("loglog", "up", "reports"))


def test_hostile_label_values_are_text_not_markup(tmp_path: Path):
    """Label values come from whatever Prometheus scraped: HTML in them stays text, and a
    lone `$` (matplotlib's math mode) is drawn, not raised, in the HTML and the PDF."""
    from report.model import Chart, Episode, Section

    hostile = '<script>alert(1)</script> p95 $x^$ "quoted"'
    section = Section(
        key="incidents",
        title="Incidents",
        sentence=f"1 alert firing: {hostile}",
        episodes=(Episode(alertname=hostile, severity="critical", start=100.0, end=700.0),),
        charts=(
            Chart(
                title=f"Throughput {hostile}",
                description=hostile,
                unit="reqps",
                lines=((hostile, [(100.0, 1.0), (400.0, 2.0), (700.0, 1.5)]),),
                queries=(),
            ),
        ),
    )
    report = Report(
        prometheus="http://127.0.0.1:9090", start=0, end=3600, step=15, sections=(section,)
    )
    html_path, pdf_path = write(report, tmp_path, name="hostile", pdf=True)
    page = html_path.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert pdf_path.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"success","data":{"resultType":"vector","result":"oops"}}',
        b'{"status":"success","data":{"resultType":"vector","result":[{"value":"x"}]}}',
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}',
        b'{"status":"success","data":{"resultType":"scalar","result":null}}',
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[["x"]]}]}}',
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}}]}}',
    ],
)
def test_well_formed_json_of_the_wrong_shape_is_a_prometheus_error(
    garbage_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: bytes
):
    """A proxy or an impostor answering JSON that is not a Prometheus result: the report
    names the server, not a KeyError/TypeError traceback, and writes nothing."""
    monkeypatch.setattr(_Handler, "body", body)
    with pytest.raises(PrometheusError, match="did not answer like Prometheus' HTTP API"):
        make(garbage_server, range_text="1h", out=tmp_path, pdf=False, end=1.7e9)
    assert list(tmp_path.iterdir()) == []


_EMPTY = b'{"status":"success","data":{"resultType":"vector","result":[]}}'


@pytest.mark.parametrize(
    ("range_text", "end", "says"),
    [
        ("99999999999999999w", 1.7e9, "at most"),
        ("2h", 3600.0, "before 1970"),
        ("1h", math.nan, "--end"),
        ("1h", math.inf, "--end"),
        ("1h", 1e20, "--end"),
        ("1h", -1e20, "--end"),
    ],
)
def test_a_range_or_end_out_of_time_is_refused_before_asking_prometheus(
    garbage_server: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    range_text: str,
    end: float,
    says: str,
):
    """A huge --range or a non-finite/out-of-calendar --end: a ReportError that says what
    is accepted (it was an OverflowError/ValueError traceback after every query ran)."""
    monkeypatch.setattr(_Handler, "body", _EMPTY)
    asked: list[str] = []
    monkeypatch.setattr(_Handler, "log_message", lambda self, *a: asked.append(self.path))
    with pytest.raises(ReportError, match=re.escape(says)):
        make(garbage_server, range_text=range_text, out=tmp_path, pdf=True, end=end)
    assert list(tmp_path.iterdir()) == []
    assert asked == []  # refused before the first query


def test_a_huge_range_through_the_cli_exits_1_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["report", "--prometheus", url, "--range", "9" * 30 + "w", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("loglog report: range") and "Traceback" not in err
