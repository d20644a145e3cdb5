"""The public API: configure, loggers, levels, binding, flush, shutdown, stats."""

from __future__ import annotations

import json
import threading

import pytest

import loglog
from loglog.testing import ListSink, capture


def test_records_carry_level_logger_message_and_bound_fields():
    """bind() fields and call fields both reach the record; call fields win on a clash."""
    with capture() as records:
        log = loglog.get_logger("decoder").bind(stream="cam1", frame=0)
        log.info("frame decoded", frame=12, ms=3.2)
    (record,) = records
    assert (record.logger, record.levelname, record.message) == ("decoder", "info", "frame decoded")
    assert record.fields == {"stream": "cam1", "frame": 12, "ms": 3.2}
    assert record.thread == threading.current_thread().name


def test_every_level_method_exists_and_the_threshold_filters():
    """debug/info/warning/error/critical/exception all exist; below the level nothing is kept."""
    with capture(level="warning") as records:
        log = loglog.get_logger("lv")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        log.critical("c")
        log.log(45, "custom")
    assert [r.message for r in records] == ["w", "e", "c", "custom"]
    assert records[-1].levelname == "error"  # custom levels round down to a named one


def test_exception_records_the_traceback_rendered_off_the_callers_thread():
    """log.exception() keeps the active exception; its traceback text reaches the record."""
    with capture() as records:
        try:
            {}["missing"]
        except KeyError:
            loglog.get_logger("x").exception("lookup failed", key="missing")
    assert "KeyError: 'missing'" in records[0].exc_text
    assert records[0].level == loglog.ERROR


def test_percent_arguments_are_formatted_lazily_and_never_raise():
    """'%d of %d' style arguments work; a mismatch still produces a record, not an error."""
    with capture() as records:
        log = loglog.get_logger("fmt")
        log.info("decoded %d of %d", 10, 12)
        log.info("broken %d", "not a number")
    assert records[0].message == "decoded 10 of 12"
    assert records[1].message.startswith("broken %d")


def test_values_are_rendered_json_safe_without_trusting_user_code():
    """Objects are stringified on the worker; a failing __str__ and NaN do not break output."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with capture() as records:
        loglog.get_logger("v").info("m", obj=Broken(), nan=float("nan"), nested={"a": (1, 2)})
    fields = records[0].fields
    assert fields["obj"].startswith("<unrepresentable Broken")
    assert fields["nan"] == "nan"
    assert fields["nested"] == {"a": [1, 2]}


def test_flush_returns_true_when_everything_was_delivered():
    """flush() waits for delivery and says whether it finished in time."""
    sink = ListSink()
    loglog.configure(console=None, sinks=[sink], registry=None)
    log = loglog.get_logger("f")
    for i in range(1000):
        log.info("r", i=i)
    assert loglog.flush(timeout=5) is True
    assert [r.fields["i"] for r in sink.records] == list(range(1000))


def test_flush_returns_false_when_a_sink_cannot_keep_up_in_time():
    """A sink stuck past the timeout makes flush() return False instead of waiting on."""
    gate = threading.Event()

    class Stuck:
        def write(self, records):
            gate.wait()

    loglog.configure(console=None, sinks=[Stuck()], registry=None)
    loglog.get_logger("f").warning("w")
    assert loglog.flush(timeout=0.3) is False
    gate.set()
    assert loglog.flush(timeout=5) is True


def test_records_after_shutdown_are_ignored_and_configure_restarts():
    """After shutdown() log calls are no-ops; configure() brings logging back."""
    sink = ListSink()
    loglog.configure(console=None, sinks=[sink], registry=None)
    loglog.shutdown()
    loglog.get_logger("s").error("after shutdown")
    assert sink.records == []
    second = ListSink()
    loglog.configure(console=None, sinks=[second], registry=None)
    loglog.get_logger("s").error("again")
    loglog.flush()
    assert [r.message for r in second.records] == ["again"]


def test_loggers_made_before_configure_follow_the_new_configuration():
    """A module-level logger created at import time uses whatever configure() set later."""
    early = loglog.get_logger("early")
    with capture(level="error") as records:
        early.warning("filtered")
        early.error("kept")
    assert [r.message for r in records] == ["kept"]


def test_stats_account_for_every_record_per_sink():
    """emitted = delivered + dropped for each sink; drops carry sink, level and reason."""
    sink = ListSink()

    class Fails:
        name = "fails"

        def write(self, records):
            raise OSError("nope")

    loglog.configure(console=None, sinks=[sink, Fails()], registry=None)
    log = loglog.get_logger("acct")
    for _ in range(100):
        log.info("r")
    loglog.flush()
    stats = loglog.stats()
    assert stats["emitted"]["info"] == 100
    assert stats["delivered"][("list", "info")] == 100
    assert stats["dropped"][("fails", "info", "sink_error")] == 100
    assert stats["sink_errors"]["fails"] >= 1


def test_plain_callables_are_accepted_as_sinks():
    """A function taking a list of records is a sink."""
    seen: list[str] = []
    loglog.configure(
        console=None, sinks=[lambda rs: seen.extend(r.message for r in rs)], registry=None
    )
    loglog.get_logger("c").info("hello")
    loglog.flush()
    assert seen == ["hello"]


def test_a_non_sink_is_rejected_at_configure_time():
    """Something that is neither a sink nor callable fails configure() with a clear error."""
    with pytest.raises(loglog.ConfigError, match="write"):
        loglog.configure(console=None, sinks=[42], registry=None)


def test_unwritable_file_fails_at_configure_with_a_fix(tmp_path):
    """A log file that cannot be opened is a start-up error naming the file and the fix."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # fails for root too, unlike permission bits
    with pytest.raises(loglog.ConfigError, match="writable"):
        loglog.configure(console=None, file=str(blocker / "x.log"), registry=None)


def test_json_file_lines_parse_and_keep_reserved_keys_distinct(tmp_path):
    """The file sink writes one JSON object per line; a field named like a reserved key
    is kept under a prefixed name instead of overwriting it."""
    path = tmp_path / "out.jsonl"
    loglog.configure(console=None, file=str(path), registry=None)
    loglog.get_logger("j").info("hello", msg="user field", n=1)
    loglog.flush()
    line = json.loads(path.read_text())
    assert line["msg"] == "hello" and line["_msg"] == "user field" and line["n"] == 1
    assert line["ts"].endswith("Z") and line["level"] == "info"


def test_trace_ids_of_the_current_span_are_attached():
    """Inside an OpenTelemetry span, records carry its trace_id and span_id."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    with capture() as records, tracer.start_as_current_span("work") as span:
        loglog.get_logger("t").info("inside")
        context = span.get_span_context()
    assert records[0].trace_id == format(context.trace_id, "032x")
    assert records[0].span_id == format(context.span_id, "016x")


def test_an_explicit_trace_id_field_becomes_the_records_trace_id():
    """Outside any span, trace_id=/span_id= fields are taken as the record's trace ids
    (a worker thread logging about an item whose span it never entered)."""
    with capture() as records:
        loglog.get_logger("t").warning("item failed", trace_id="ab" * 16, span_id="cd" * 8, n=1)
    assert records[0].trace_id == "ab" * 16 and records[0].span_id == "cd" * 8
    assert records[0].fields == {"n": 1}
