"""A value costs only its own record, and every record is counted once — by shutdown's end.

The red team's findings 3 and 4 (issue 23), each a test that failed before its fix:

- an int over 4,300 digits made the file sink's renderer raise (its whole batch dropped,
  100 unrelated records), and the Loki sink count 50 delivered *and* 101 dropped;
- a stdlib record with ``created=1e17`` did the same to the file sink, and made Loki
  answer 400 for the whole push (after storing the valid part);
- with Loki failing, right after ``shutdown(2)`` returned 30–50 of 50 records were not
  counted at all; Loki's sender counted them 1–20 s later.

Here each runs against the real file, Loki (tests/doubles/loki.py) and OTLP
(tests/doubles/otlp.py) sinks, asserting per sink that delivered + dropped (+ spilled)
equals emitted right after ``flush()`` or ``shutdown()`` returns, and stays so.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import loglog
from loglog.testing import ListSink
from loglog.types import Record
from tests.conftest import http_server
from tests.doubles.loki import LokiServer, LokiState
from tests.doubles.otlp import OtlpReceiver


def _balance(stats: dict[str, Any], sink: str) -> tuple[int, int]:
    """(delivered + dropped + spilled, emitted) for ``sink``."""
    emitted = sum(stats["emitted"].values())
    delivered = sum(v for (s, _l), v in stats["delivered"].items() if s == sink)
    dropped = sum(v for (s, _l, _r), v in stats["dropped"].items() if s in (sink, "all"))
    spilled = sum(v for (s, _l), v in stats.get("spilled", {}).items() if s == sink)
    return delivered + dropped + spilled, emitted


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


@pytest.fixture
def stdlib() -> Iterator[logging.Logger]:
    """The stdlib bridge installed, and the root logger restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    loglog.install_stdlib(level="info")
    yield logging.getLogger("std")
    root.handlers[:], root.level = saved


def _between_plain_records(hostile: Any, tmp_path: Path, loki: LokiServer) -> dict[str, Any]:
    """``hostile()`` between 100 plain INFO records, to a file and Loki."""
    path = tmp_path / "log.jsonl"
    loglog.configure(
        console=None, file=str(path), loki_url=loki.url, loki_batch_wait=0.05, registry=None
    )
    log = loglog.get_logger("plain")
    for i in range(50):
        log.info("plain", i=i)
    hostile()
    for i in range(50, 100):
        log.info("plain", i=i)
    assert loglog.flush(timeout=10)
    stats = loglog.stats()
    return {"stats": stats, "lines": _lines(path), "loki": loki.state.messages()}


def test_an_int_over_4300_digits_costs_only_its_own_text(tmp_path: Path) -> None:
    """``n=10**5000`` (and one inside a list, and as a %-argument): written as
    ``<int: ~N digits>``, every other record delivered once, nothing dropped."""
    with LokiServer() as loki:
        log = loglog.get_logger("big")

        def hostile() -> None:
            log.info("big", n=10**5000, nested=[-(10**4400), 1])
            log.info("big %d", 10**5000)

        out = _between_plain_records(hostile, tmp_path, loki)
    assert not out["stats"]["dropped"], out["stats"]["dropped"]
    assert _balance(out["stats"], "file") == (102, 102)
    assert _balance(out["stats"], "loki") == (102, 102)
    assert len(out["lines"]) == 102 and len(out["loki"]) == 102
    big = [line for line in out["lines"] if line["logger"] == "big"]
    assert big[0]["n"] == "<int: ~5001 digits>" and big[0]["nested"][0].startswith("<int: ~4401")
    assert big[1]["msg"].startswith("big %d <unrepresentable")


def test_an_out_of_range_record_time_costs_only_its_own_time(
    tmp_path: Path, stdlib: logging.Logger
) -> None:
    """A stdlib record with ``created=1e17`` (year 3 billion), and one with NaN: each is
    delivered with the time loglog received it and its own in ``invalid_ts``; no sink
    drops anything, Loki gets no 400."""
    with LokiServer() as loki:

        def hostile() -> None:
            for created in (1e17, float("nan"), -5.0):
                record = stdlib.makeRecord("std", logging.INFO, "f", 1, "odd time", (), None)
                record.created = created
                stdlib.handle(record)

        before = time.time_ns()
        out = _between_plain_records(hostile, tmp_path, loki)
    assert not out["stats"]["dropped"], out["stats"]["dropped"]
    assert _balance(out["stats"], "file") == (103, 103)
    assert _balance(out["stats"], "loki") == (103, 103)
    assert len(loki.state.entries) == 103
    odd = [line for line in out["lines"] if line["logger"] == "std"]
    assert [line["invalid_ts"] for line in odd] == [
        "100000000000000004764729344",
        "nan",
        "-5000000000",
    ]
    stamps = [e.ts for e in loki.state.entries if e.json()["logger"] == "std"]
    assert all(stamp >= before for stamp in stamps), "sent with the time it was received"


def test_nan_and_infinities_are_text_in_every_sink(tmp_path: Path) -> None:
    """NaN and ±inf (as values, and inside a list) become "nan"/"inf": valid JSON lines."""
    with LokiServer() as loki:
        log = loglog.get_logger("floats")

        def hostile() -> None:
            log.info("floats", a=float("nan"), b=float("-inf"), c=[float("inf")])

        out = _between_plain_records(hostile, tmp_path, loki)
    assert not out["stats"]["dropped"]
    line = next(line for line in out["lines"] if line["logger"] == "floats")
    assert (line["a"], line["b"], line["c"]) == ("nan", "-inf", ["inf"])


@pytest.mark.slow  # waits out a shutdown deadline (or an exporter's start)
def test_otlp_values_it_cannot_encode_cost_only_their_record() -> None:
    """The OTLP exporter encodes a batch as a whole: an int outside int64 and a
    ``trace_id`` field that is no hex id failed the batch (every record ``sink_error``)."""
    with OtlpReceiver() as receiver:
        loglog.configure(console=None, otlp_endpoint=receiver.endpoint, registry=None)
        log = loglog.get_logger("otlp")
        log.info("before")
        log.info("huge", n=2**70, m=-(2**63))
        log.info("bad ids", trace_id="not hex", span_id="zz")
        log.info("after")
        assert loglog.flush(timeout=10)
        stats = loglog.stats()
        records = receiver.records
    assert not stats["dropped"], stats["dropped"]
    assert [r.body.string_value for _, r in records] == ["before", "huge", "bad ids", "after"]
    huge = {a.key: a.value for a in records[1][1].attributes}
    assert huge["n"].string_value == str(2**70) and huge["m"].int_value == -(2**63)
    assert records[2][1].trace_id == b""


@pytest.mark.slow  # waits out a shutdown deadline (or an exporter's start)
def test_loki_failing_at_shutdown_is_counted_before_shutdown_returns() -> None:
    """Loki answers 500 to everything: right after ``shutdown(1)`` returns, every record
    is counted (dropped: ``shutdown``), and a second later the counts are the same."""
    state = LokiState(script=[(500, None)] * 10_000)
    with LokiServer(state=state) as loki:
        loglog.configure(
            console=None, loki_url=loki.url, loki_batch_wait=0.05, loki_backoff_min=0.5,
            loki_backoff_max=1.0, registry=None,
        )  # fmt: skip
        log = loglog.get_logger("t")
        for i in range(50):
            log.info("plain", i=i)
        assert loki.wait_for(lambda s: len(s.requests) >= 1)  # the sender is retrying
        loglog.shutdown(timeout=1)
        right_after = loglog.stats()
        time.sleep(1.5)  # the sender's retry ends meanwhile
        later = loglog.stats()
    counted, emitted = _balance(right_after, "loki")  # with loglog's own "retrying" warning
    assert counted == emitted, right_after["dropped"]
    assert right_after["dropped"][("loki", "info", "shutdown")] == 50
    assert later["dropped"] == right_after["dropped"]
    assert later["delivered"] == right_after["delivered"] == {}


class _Stalling(http.server.BaseHTTPRequestHandler):
    """Reads a push, then answers 204 only once ``RELEASE`` is set: a push in flight."""

    RELEASE = threading.Event()
    ANSWERED = threading.Event()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.RELEASE.wait(10)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.ANSWERED.set()


@pytest.mark.slow  # waits out a shutdown deadline (or an exporter's start)
def test_a_push_that_succeeds_after_shutdown_changes_no_count() -> None:
    """A push still in flight at shutdown's deadline is counted then (``shutdown``); when
    Loki answers 204 afterwards, nothing is counted a second time."""
    _Stalling.RELEASE.clear()
    _Stalling.ANSWERED.clear()
    with http_server(_Stalling) as url:
        loglog.configure(console=None, loki_url=url, loki_batch_wait=0.05, registry=None)
        log = loglog.get_logger("t")
        for i in range(20):
            log.info("plain", i=i)
        loglog.shutdown(timeout=0.5)
        right_after = loglog.stats()
        _Stalling.RELEASE.set()
        assert _Stalling.ANSWERED.wait(10)
        time.sleep(0.2)  # the sender handles the 204
        later = loglog.stats()
    assert _balance(right_after, "loki") == (20, 20), right_after
    assert _balance(later, "loki") == (20, 20), later
    assert later["delivered"] == {}, "delivered after it was counted as dropped"


@pytest.mark.slow  # waits out a shutdown deadline (or an exporter's start)
def test_batches_waiting_on_disk_at_shutdown_are_counted_as_spilled(tmp_path: Path) -> None:
    """With a spill directory and Loki down, what waits on disk for the next process is
    neither delivered nor dropped: ``spilled``, so that the three add up to emitted."""
    with LokiServer() as loki:
        loki.close()  # nothing listens: connection refused, retried from the spill
        loglog.configure(
            console=None, loki_url=loki.url, spill_dir=str(tmp_path / "spill"),
            loki_batch_wait=0.05, registry=None,
        )  # fmt: skip
        log = loglog.get_logger("t")
        for i in range(30):
            log.warning("kept", i=i)
        loglog.shutdown(timeout=1)
        stats = loglog.stats()
    assert _balance(stats, "loki") == (30, 30), stats
    assert stats["spilled"] == {("loki", "warning"): 30}


def test_a_sink_hung_at_shutdown_is_counted_once_even_if_it_returns_later() -> None:
    """A sink stuck in ``write`` past the deadline: its batch and inbox are counted as
    dropped (``shutdown``) when shutdown returns; when the write returns afterwards, its
    records are not counted again as delivered."""
    entered, release = threading.Event(), threading.Event()
    records: list[Any] = []

    class Hung(ListSink):
        name = "hung"

        def write(self, batch: Any) -> None:
            entered.set()
            release.wait(10)
            super().write(batch)

    loglog.configure(console=None, sinks=[Hung(records)], registry=None)
    log = loglog.get_logger("t")
    log.info("first")
    assert entered.wait(5)
    for i in range(10):
        log.info("queued", i=i)
    loglog.shutdown(timeout=0.3)
    right_after = loglog.stats()
    release.set()
    deadline = time.monotonic() + 5
    while len(records) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    later = loglog.stats()
    assert _balance(right_after, "hung") == (11, 11), right_after
    assert _balance(later, "hung") == (11, 11), later
    assert right_after["dropped"] == {("hung", "info", "shutdown"): 11}


def test_an_entry_too_far_ahead_for_loki_is_sent_with_this_hosts_time(
    tmp_path: Path, stdlib: logging.Logger
) -> None:
    """A record 20 minutes in the future (a skewed clock upstream) is a valid time, but
    Loki refuses entries more than 10 minutes ahead — with a 400 for the whole push, after
    storing the rest. It is sent with this host's time, its own in ``original_ts``."""
    with LokiServer() as loki:

        def hostile() -> None:
            record = stdlib.makeRecord("std", logging.INFO, "f", 1, "from the future", (), None)
            record.created = time.time() + 20 * 60
            stdlib.handle(record)

        out = _between_plain_records(hostile, tmp_path, loki)
        entries = list(loki.state.entries)
    assert not out["stats"]["dropped"], out["stats"]["dropped"]
    assert len(entries) == 101
    future = next(e for e in entries if e.json()["msg"] == "from the future")
    assert future.ts < time.time_ns() + 60 * 10**9
    assert future.json()["original_ts"] > time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 900)
    )


def test_a_sink_thread_that_dies_is_restarted_and_its_batch_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner's loop failing outside ``write`` (here: its latency histogram, once)
    restarts the thread (counted) and counts the batch it held as ``sink_error`` — it
    used to be forgotten, neither delivered nor dropped."""
    from loglog.counters import WriterHistogram

    real = WriterHistogram.observe
    failed: list[bool] = []

    def observe_once_failing(self: WriterHistogram, value: float) -> None:
        if not failed:
            failed.append(True)
            raise RuntimeError("a bug outside write")
        real(self, value)

    monkeypatch.setattr(WriterHistogram, "observe", observe_once_failing)
    records: list[Any] = []
    loglog.configure(console=None, sinks=[ListSink(records)], registry=None)
    log = loglog.get_logger("t")
    log.info("first")
    assert loglog.flush(timeout=5)
    log.info("second")
    assert loglog.flush(timeout=5)
    stats = loglog.stats()
    assert stats["sink_restarts"] == {"list": 1}
    counted, emitted = _balance(stats, "list")  # with loglog's own "restarted" warning
    assert counted == emitted, stats
    assert stats["dropped"][("list", "info", "sink_error")] == 1


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_the_ledger_counts_each_held_record_once_whatever_the_order(data: Any) -> None:
    """Records held, placed in batches or dropped one by one; batches spilled, settled
    (again and again: a sender and shutdown racing), partly expired; ``close()`` at any
    point. Whatever the order: never more counted than held, and after ``close()``
    exactly as many — delivered, dropped or spilled."""
    from loglog.batches import Batch
    from loglog.ledger import Ledger

    ledger = Ledger()
    names = ["debug", "info", "warning"]
    held = 0
    loose: list[str] = []  # held, in no batch yet
    batches: list[Batch] = []
    closed = False
    for _ in range(data.draw(st.integers(1, 30))):
        op = data.draw(
            st.sampled_from(["hold", "batch", "drop", "spill", "settle", "expire", "close"])
        )
        if op == "hold":
            levels = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=5))
            numbers = {"debug": 10, "info": 20, "warning": 30}
            ledger.hold([Record(0, 0, numbers[name], "", "", {}) for name in levels])
            if not closed:
                held += len(levels)
                loose += levels
        elif op == "batch" and loose:
            placed = data.draw(st.integers(1, len(loose)))
            take, loose = loose[:placed], loose[placed:]
            counts: dict[str, int] = {}
            for name in take:
                counts[name] = counts.get(name, 0) + 1
            batches.append(Batch(b"", counts, 0, 0, 0))
        elif op == "drop" and loose:
            ledger.drop(loose.pop(), "too_old")
        elif op == "spill" and batches:
            ledger.spilled(data.draw(st.sampled_from(batches)))
        elif op == "settle" and batches:
            reason = data.draw(st.sampled_from([None, "http_400", "shutdown"]))
            ledger.settle(data.draw(st.sampled_from(batches)), reason)
        elif op == "expire" and batches:
            batch = data.draw(st.sampled_from(batches))
            level = data.draw(st.sampled_from(sorted(batch.levels)))
            if batch.levels[level] > 0 and not batch.settled:
                ledger.settle_entries(batch, {level: 1}, "too_old")
                batch.levels[level] -= 1
        elif op == "close":
            ledger.close()
            closed = True
        counted = sum(n for key, n in ledger.tally.snapshot().items() if key[0] != "replayed")
        assert counted <= held, "a record counted twice"
    ledger.close()
    counted = sum(n for key, n in ledger.tally.snapshot().items() if key[0] != "replayed")
    assert counted == held
