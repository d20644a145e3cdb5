"""`loglog report`'s Prometheus client is bounded (issue 23, item 7): against a hostile
loopback server it ends within its total timeout however slowly the answer trickles, reads
no more than its byte cap, accepts no more than its series cap, turns any answer that is
not Prometheus' shape into one clear error, and never writes ±Inf/NaN as a number."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from report.cli import make
from report.errors import AnswerTooLarge, PrometheusError, ReportError
from report.prom import MAX_BYTES, MAX_SERIES, Prometheus
from tests.conftest import http_server

#: A handler's plan: (status, headers, chunks, seconds between chunks).
Plan = tuple[int, dict[str, str], Iterator[bytes], float]


def _server(plan: Callable[[str], Plan], stop: threading.Event):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, chunks, pause = plan(self.path)
            try:
                if headers.get("x-trickle-head"):
                    # The status line itself, one byte at a time.
                    for byte in b"HTTP/1.1 200 OK\r\n":
                        if stop.wait(pause):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    self.end_headers()
                else:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                for chunk in chunks:
                    if pause and stop.wait(pause):
                        return
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what a bounded client does

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def hostile() -> Iterator[Callable[[Callable[[str], Plan]], str]]:
    """Serve a plan on a loopback port; the server stops trickling when the test ends."""
    stop = threading.Event()
    servers = []

    def start(plan: Callable[[str], Plan]) -> str:
        context = http_server(_server(plan, stop))
        servers.append(context)
        return context.__enter__()

    yield start
    stop.set()
    for context in servers:
        context.__exit__(None, None, None)


def _bounded(call: Callable[[], object], guard: float) -> tuple[float, BaseException | None]:
    """Run ``call`` on a thread; (seconds it took, what it raised). A hang guard, not a timing
    assertion: the call must end by ``guard`` seconds."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(guard)
    assert outcome, f"still running after {guard} s: the client is not bounded"
    return time.monotonic() - started, outcome[0]


def _trickle(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


_EMPTY = b'{"status":"success","data":{"resultType":"vector","result":[]}}'


@pytest.mark.parametrize("where", ["body", "status line"])
def test_a_trickling_server_fails_within_the_total_timeout(hostile, where: str):
    """One byte every 0.2 s never trips a per-read timeout; the total deadline (1 s) ends
    the query within it, whether the status line or the body trickles (a per-read
    timeout waited here until the server gave up)."""
    headers = {"x-trickle-head": "1"} if where == "status line" else {}
    url = hostile(lambda path: (200, headers, _trickle(_EMPTY * 50), 0.2))
    took, raised = _bounded(lambda: Prometheus(url, timeout=1.0).instant("up", 0), guard=30)
    assert isinstance(raised, PrometheusError), raised
    assert "no whole answer within 1 s (timed out)" in str(raised)
    assert took < 1.0 + 2.0  # the deadline plus scheduling slack on a shared machine


def _vector(series: int, value: str = "1", kind: str = "vector") -> bytes:
    point = [1.7e9, value]
    items = [
        {
            "metric": {"job": f"j{i}"},
            **({"value": point} if kind == "vector" else {"values": [point]}),
        }
        for i in range(series)
    ]
    return json.dumps({"status": "success", "data": {"resultType": kind, "result": items}}).encode()


def test_an_answer_over_the_byte_cap_is_refused_naming_the_cap(hostile):
    """A 2 MiB answer with a 1 MiB cap: refused from its Content-Length, one line that names
    the cap and the flag that raises it."""
    body = _vector(40_000)
    assert len(body) > 2 * 2**20
    url = hostile(lambda path: (200, {"content-length": str(len(body))}, iter([body]), 0))
    with pytest.raises(AnswerTooLarge) as caught:
        Prometheus(url, max_bytes=2**20).instant("up", 0)
    assert "over the cap of 1 MiB per answer: pass --max-answer-mb" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_endless_answer_is_cut_at_the_cap_with_little_memory(hostile):
    """No Content-Length and no end (a 200 MiB stream): the default client stops reading at
    its 16 MiB cap, and its peak memory stays near that (it read the whole stream and
    parsed it before: about 3× the stream)."""
    chunk = b'{"metric":{},"value":[1,"1"]},' * 2000
    head = b'{"status":"success","data":{"resultType":"vector","result":['
    stream = (head if i == 0 else chunk for i in range(200 * 2**20 // len(chunk)))
    url = hostile(lambda path: (200, {}, stream, 0))
    tracemalloc.start()
    try:
        _took, raised = _bounded(lambda: Prometheus(url).instant("up", 0), guard=60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(raised, AnswerTooLarge), raised
    assert f"cap of {MAX_BYTES // 2**20} MiB" in str(raised)
    assert peak < 3 * MAX_BYTES, f"peak {peak / 2**20:.0f} MiB"


def test_too_many_series_are_refused_naming_the_cap(hostile):
    """20,000 series for one query (the red team's 2 GB report): refused at the default cap
    of 1,000 series, naming the cap and --max-series; the CLI says it in one line."""
    bodies = {"vector": _vector(20_000), "matrix": _vector(20_000, kind="matrix")}
    assert all(len(body) < MAX_BYTES for body in bodies.values())  # not the byte cap
    url = hostile(lambda path: _answer(bodies["matrix" if "range" in path else "vector"])(path))
    with pytest.raises(AnswerTooLarge, match=f"over the cap of {MAX_SERIES} series per query"):
        Prometheus(url).instant("up", 0)
    with pytest.raises(AnswerTooLarge, match="pass --max-series N"):
        Prometheus(url).range("up", 0, 60, 15)


def _answer(body: bytes) -> Callable[[str], Plan]:
    return lambda path: (200, {"content-length": str(len(body))}, iter([body]), 0)


_V = b'{"status":"success","data":{"resultType":"vector","result":'
_M = b'{"status":"success","data":{"resultType":"matrix","result":'
#: name → (the endpoint that answers it: query or query_range; the answer). The other
#: endpoint answers an empty, valid result, so the report gets as far as this answer.
_NOT_PROMETHEUS = {
    "nested past the parser": ("query", b"[" * 200_000),
    "huge integer value": ("query", _V + b'[{"metric":{},"value":[1,' + b"9" * 400 + b"]}]}}"),
    "huge integer time": ("query_range", _M + b'[{"metric":{},"values":[[' + b"9" * 400 + b',"1"]]}]}}'),
    "time past the calendar": ("query_range", _M + b'[{"metric":{"job":"a"},"values":[[1e20,"1"],[1e20,"2"]]}]}}'),
    "number label value": ("query_range", _M + b'[{"metric":{"job":5},"values":[[1699999000,"1"]]}]}}'),
    "value as a number": ("query", _V + b'[{"metric":{},"value":[1,1e999]}]}}'),
    "result as an object": ("query", _V + b'{"a":{"value":[1,"1"]}}}}'),
    "error as an object": ("query", b'{"status":"error","error":{"nested":[[[1]]]}}'),
    "status as a list": ("query", b'{"status":["success"],"data":{}}'),
    "data as a list": ("query", b'{"status":"success","data":[1,2]}'),
}  # fmt: skip


@pytest.mark.parametrize("case", _NOT_PROMETHEUS.values(), ids=_NOT_PROMETHEUS.keys())
def test_an_answer_not_shaped_like_prometheus_is_one_clear_error(
    hostile, case: tuple[str, bytes], tmp_path: Path
):
    """Deep nesting, integers past a float, times past the calendar, numbers where Prometheus
    writes strings: a ReportError naming the server for the whole report (no RecursionError,
    OverflowError or TypeError traceback), and nothing written."""
    endpoint, body = case
    empty = {"query": _EMPTY, "query_range": _M + b"[]}}"}

    def plan(path: str) -> Plan:
        asked = "query_range" if path.startswith("/api/v1/query_range") else "query"
        return _answer(body if asked == endpoint else empty[asked])(path)

    url = hostile(plan)
    with pytest.raises(ReportError) as caught:
        make(url, range_text="1h", out=tmp_path / "out", pdf=True, end=1.7e9)
    message = str(caught.value)
    assert url in message or "Prometheus rejected" in message, message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a whole report with its PDF, three times
@pytest.mark.parametrize("value", ["+Inf", "-Inf", "NaN"])
def test_infinite_and_nan_values_are_never_written_as_numbers(hostile, value: str, tmp_path: Path):
    """Every query answered ±Inf (or NaN) for two series: the report is made, and no number
    slot of its HTML or sentences says inf or nan ("Delivered nan items" before)."""

    def plan(path: str) -> Plan:
        if path.startswith("/api/v1/query_range"):
            series = [{"metric": {"job": j}, "values": [[1.7e9 - 60, value], [1.7e9, value]]}
                      for j in ("a", "b")]  # fmt: skip
            body = {"status": "success", "data": {"resultType": "matrix", "result": series}}
        else:
            series = [{"metric": {"job": j}, "value": [1.7e9, value]} for j in ("a", "b")]
            body = {"status": "success", "data": {"resultType": "vector", "result": series}}
        raw = json.dumps(body).encode()
        return 200, {"content-length": str(len(raw))}, iter([raw]), 0

    url = hostile(plan)
    html_path, _pdf = make(url, range_text="1h", out=tmp_path, pdf=True, end=1.7e9)
    page = html_path.read_text()
    visible = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)
    visible = re.sub(r'data-[a-z]+="[^"]*"', "", visible)
    assert not re.search(r"\b(nan|inf)\b", visible, re.I), re.findall(
        r"[^<>]{0,60}\b(?:nan|inf)\b[^<>]{0,20}", visible, re.I
    )
