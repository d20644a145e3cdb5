"""No user code on loglog's threads: hostile subclasses against the real sinks.

A red team (issue 23) found user code running on ``loglog-worker`` and on sink threads: a
field name that is a ``str`` subclass (its ``__eq__``/``__hash__`` in the worker's dict
merge, ``__hash__``/``__radd__`` in the JSON renderer), bound fields that are a ``dict``
subclass (its ``keys()``), a logger name's ``__format__`` in the text console. One that
blocked stopped delivery for good; one that raised dropped a whole batch.

Here every dunder of those types that loglog's threads could touch is made to block (on an
Event the test sets at the end) or raise — but only when called on a ``loglog-*`` thread:
on the caller's thread CPython itself runs some of them (building the ``**fields`` dict),
which is the caller's business. Values of other types may be rendered by the bounded
render helper (``loglog-render-*``) and nowhere else. Every example runs with the real
file (JSON), console (text), Loki (tests/doubles/loki.py) and OTLP (tests/doubles/otlp.py)
sinks, on the path this process runs (C, or Python under ``LOGLOG_PURE_PYTHON=1``; the
last test runs this module that way too), and asserts: the calls return, every other
record reaches every sink, and per sink delivered + dropped = emitted whenever nothing is
in flight — after ``flush()`` and right after ``shutdown()`` — and never more before.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loglog
from loglog.core import SPEEDUPS
from tests.doubles.loki import LokiServer
from tests.doubles.otlp import OtlpReceiver

RELEASE = threading.Event()  # set after each example: frees whatever blocked
#: (role, dunder, thread) for every hostile dunder that ran on one of loglog's threads.
SEEN: list[tuple[str, str, str]] = []
SINKS = ("file", "console", "loki", "otlp")
BEHAVIOURS = ("block", "raise", "garbage")


def _builtin(base: type, dunder: str) -> Callable[..., Any]:
    """``base``'s own method, or one that says NotImplemented (``str`` has no __radd__)."""
    return getattr(base, dunder, None) or (lambda self, *args: NotImplemented)


def _hostile(role: str, dunder: str, behaviour: str, normal: Callable[..., Any]) -> Any:
    """A method that misbehaves on loglog's threads only, and behaves like ``normal``
    (the builtin's own method) on any other thread."""

    def method(self: Any, *args: Any) -> Any:
        thread = threading.current_thread().name
        if thread.startswith("loglog-"):
            SEEN.append((role, dunder, thread))
            if behaviour == "block":
                RELEASE.wait(60)
            elif behaviour == "raise":
                raise RuntimeError(f"{dunder} ran on {thread}")
            elif dunder in ("__hash__", "__len__"):
                return 0
            elif dunder in ("__eq__", "__contains__"):
                return True
            elif dunder == "__iter__":
                return iter(["trace_id", "msg"])
            elif dunder in ("keys", "items", "values"):
                return []
        return normal(self, *args)

    method.__name__ = dunder
    return method


NAME_DUNDERS = (
    "__hash__", "__eq__", "__ne__", "__format__", "__radd__", "__add__", "__str__",
    "__repr__", "__len__", "__iter__", "__getitem__", "__contains__", "__lt__", "__mod__",
    "encode", "startswith", "upper", "__rmod__",
)  # fmt: skip
MAPPING_DUNDERS = (
    "keys", "items", "values", "__iter__", "__getitem__", "__len__", "__contains__",
    "get", "copy", "__or__", "__ror__", "__eq__", "__repr__",
)  # fmt: skip
VALUE_DUNDERS = (
    "__str__", "__repr__", "__format__", "__hash__", "__eq__", "__radd__", "__add__",
    "__bool__", "__len__", "__iter__", "__index__", "__int__", "__float__", "__lt__",
)  # fmt: skip


def _name_class(behaviour: str, collide: str) -> type:
    """A ``str`` subclass overriding every dunder a name could meet; its hash collides
    with ``collide`` (a bound key, or a name the worker looks up such as ``trace_id``)."""
    methods = {d: _hostile("name", d, behaviour, _builtin(str, d)) for d in NAME_DUNDERS}
    plain_hash = methods["__hash__"]
    methods["__hash__"] = lambda self: (plain_hash(self), hash(collide))[1]
    return type("HostileName", (str,), methods)


def _mapping_class(behaviour: str) -> type:
    methods = {d: _hostile("mapping", d, behaviour, _builtin(dict, d)) for d in MAPPING_DUNDERS}
    methods["__hash__"] = None
    return type("HostileMapping", (dict,), methods)


def _value(behaviour: str, base: type) -> Any:
    """A value of a type of its own (a subclass of ``base``): the render helper may run
    its code, under its time budget; the worker and the sinks never may."""
    methods = {d: _hostile("value", d, behaviour, _builtin(base, d)) for d in VALUE_DUNDERS}
    if base is object:
        methods["__len__"] = _hostile("value", "__len__", behaviour, lambda self: 1)
        methods["__iter__"] = _hostile("value", "__iter__", behaviour, lambda self: iter(()))
        return type("HostileValue", (object,), methods)()
    kind = type("HostileValue", (base,), methods)
    return kind({str: "v", int: 7, float: 1.5, list: [1], dict: {"k": 1}}[base])


BEHAVIOUR = st.sampled_from(BEHAVIOURS)
COLLIDE = st.sampled_from(["trace_id", "span_id", "msg", "level", "k", "bound_key"])
NAMES = st.one_of(
    st.sampled_from(["k", "trace_id", "msg", "level", "stream"]),
    st.builds(lambda b, c, t: _name_class(b, c)(t), BEHAVIOUR, COLLIDE, st.sampled_from(["k", "x", "trace_id"])),
)  # fmt: skip


class Special:
    """Stands for a value hypothesis cannot print (an int over 4,300 digits); the test
    puts the value in when it makes the call (:func:`_real`)."""

    VALUES: ClassVar[dict[str, Any]] = {
        "10**5000": 10**5000,
        "-(10**4400)": -(10**4400),
        "nan": float("nan"),
        "inf": float("inf"),
        "'x' * 70_000": "x" * 70_000,
    }

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _real(value: Any) -> Any:
    """``value`` with every :class:`Special` replaced by what it stands for."""
    if type(value) is Special:
        return Special.VALUES[value.name]
    if type(value) is list:
        return [_real(item) for item in value]
    if type(value) is dict:
        return {key: _real(item) for key, item in value.items()}
    if isinstance(value, dict) and type(value) is not dict:  # a hostile mapping
        return type(value)({key: _real(item) for key, item in dict.items(value)})
    return value


SCALARS = st.one_of(
    st.integers(),
    st.sampled_from(sorted(Special.VALUES)).map(Special),
    st.text(max_size=10),
    st.builds(_value, BEHAVIOUR, st.sampled_from([object, str, int, float, list, dict])),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=3), SCALARS, max_size=2),
)
MAPPINGS = st.one_of(
    st.none(),
    st.dictionaries(NAMES, VALUES, max_size=3),
    st.builds(
        lambda b, items: _mapping_class(b)(items), BEHAVIOUR, st.dictionaries(NAMES, VALUES, max_size=3)
    ),
)  # fmt: skip
CALLS = st.fixed_dictionaries(
    {
        "via": st.sampled_from(["method", "bind", "log", "exception", "stdlib"]),
        "level": st.sampled_from(["debug", "info", "warning", "error"]),
        "name": NAMES,
        "bound": MAPPINGS,
        "fields": st.dictionaries(NAMES, VALUES, max_size=4),
        "message": st.one_of(st.just("hostile %s"), VALUES),
        "args": st.lists(VALUES, max_size=2),
    }
)
#: What ``extra=`` may not name (the stdlib raises KeyError for these itself).
_LOG_RECORD_NAMES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@pytest.fixture(scope="module")
def doubles() -> Iterator[tuple[LokiServer, OtlpReceiver]]:
    with LokiServer() as loki, OtlpReceiver() as otlp:
        yield loki, otlp


def _call(log: Any, call: dict[str, Any]) -> None:
    """One hostile log call, through the API ``call["via"]`` names."""
    level, fields, message = call["level"], _real(call["fields"]), _real(call["message"])
    args = _real(call["args"])
    via = call["via"]
    if via == "bind":
        getattr(log.bind(**fields), level)(message)
    elif via == "log":
        log.log(logging.getLevelName(level.upper()), message, **fields)
    elif via == "exception":
        try:
            raise ValueError(message)
        except ValueError:
            log.exception(message, **fields)
    elif via == "stdlib":
        extra = {k: v for k, v in fields.items() if str.__str__(k) not in _LOG_RECORD_NAMES}
        stdlib = logging.getLogger(call["name"])
        stdlib.log(logging.getLevelName(level.upper()), message, *args, extra=extra)
    else:
        getattr(log, level)(message, *args, **fields)


def _per_sink(stats: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(delivered + dropped, emitted) for every sink."""
    emitted = sum(stats["emitted"].values())
    everywhere = sum(v for (sink, _l, _r), v in stats["dropped"].items() if sink == "all")
    out = {}
    for name in SINKS:
        delivered = sum(v for (sink, _l), v in stats["delivered"].items() if sink == name)
        dropped = sum(v for (sink, _l, _r), v in stats["dropped"].items() if sink == name)
        spilled = sum(v for (sink, _l), v in stats.get("spilled", {}).items() if sink == name)
        out[name] = (delivered + dropped + spilled + everywhere, emitted)
    return out


def _delivered_messages(path: Path, console: str, loki: LokiServer, otlp: OtlpReceiver) -> dict:
    return {
        # split("\n"), not splitlines(): a value may hold U+0085 or U+2028, which JSON
        # keeps as they are and splitlines() would also split on.
        "file": [json.loads(line)["msg"] for line in path.read_text().split("\n") if line],
        "console": console.split("\n"),
        "loki": loki.state.messages(),
        "otlp": [record.body.string_value for _resource, record in otlp.records],
    }


EXAMPLE = iter(range(10**9))


@settings(
    max_examples=int(os.environ.get("LOGLOG_HOSTILE_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(calls=st.lists(CALLS, min_size=1, max_size=3))
@pytest.mark.slow
def test_hostile_subclasses_run_no_code_on_loglog_threads_and_cost_no_other_record(
    calls: list[dict[str, Any]],
    doubles: tuple[LokiServer, OtlpReceiver],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    loki, otlp = doubles
    tag = f"e{next(EXAMPLE)}"
    path = tmp_path / f"{tag}.jsonl"
    RELEASE.clear()
    SEEN.clear()
    capfd.readouterr()
    loglog.configure(
        level="debug",
        console="text",
        file=str(path),
        loki_url=loki.url,
        loki_batch_wait=0.05,
        otlp_endpoint=otlp.endpoint,
        render_timeout=0.05,
        registry=None,
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    # INFO: urllib3's DEBUG lines about each OTLP export would be records emitted while
    # flush() waits, which no count taken right after it can include yet.
    loglog.install_stdlib(level="info")
    try:
        plain = loglog.get_logger("plain")
        worst = 0.0
        for index, call in enumerate(calls):
            log = loglog.get_logger(call["name"])
            if call["bound"] is not None:
                log = loglog.Logger(call["name"], _real(call["bound"]))
            plain.info(f"{tag}-before-{index}")
            started = time.monotonic()
            _call(log, call)
            worst = max(worst, time.monotonic() - started)
            plain.warning(f"{tag}-after-{index}")
            for sink, (counted, emitted) in _per_sink(loglog.stats()).items():
                assert counted <= emitted, f"{sink} counted a record twice"
        assert worst < 5, "a log call waited on something (generous hang guard)"
        assert loglog.flush(timeout=30), "a sink or the worker is stuck in user code"
        for sink, (counted, emitted) in _per_sink(loglog.stats()).items():
            assert counted == emitted, f"{sink}: {counted} counted of {emitted} after flush"
        assert loglog.shutdown(timeout=10)
        after = loglog.stats()
    finally:
        RELEASE.set()
        root.handlers[:], root.level = saved
        loglog.shutdown(timeout=5)
        manager = logging.Logger.manager  # forget stdlib loggers with hostile names
        for key in [k for k in manager.loggerDict if type(k) is not str]:
            del manager.loggerDict[key]
    for sink, (counted, emitted) in _per_sink(after).items():
        assert counted == emitted, f"{sink}: {counted} counted of {emitted} after shutdown"
    got = _delivered_messages(path, capfd.readouterr().err, loki, otlp)
    wanted = [f"{tag}-{when}-{i}" for i in range(len(calls)) for when in ("before", "after")]
    for sink in SINKS:
        lines = got[sink]
        missing = [m for m in wanted if not any(m in line for line in lines)]
        assert not missing, f"{sink} lost {missing}"
    dropped = {key: n for key, n in after["dropped"].items() if key[2] != "recursion"}
    assert not dropped, f"nothing needs dropping here: {dropped}"
    on_threads = {(role, dunder, thread.rstrip("-0123456789")) for role, dunder, thread in SEEN}
    assert {t for t in on_threads if t[0] != "value" or t[2] != "loglog-render"} == set(), (
        "user code ran on loglog's worker or sink threads"
    )


# -- the red team's reproductions (issue 23, findings 1 and 2), each failing before the fix --


def _on_loglog_threads(action: Callable[[], Any]) -> Callable[[], Any]:
    """``action`` when called on one of loglog's threads (recorded in SEEN), else nothing."""

    def run() -> Any:
        thread = threading.current_thread().name
        if thread.startswith("loglog-"):
            SEEN.append(("reproduction", "", thread))
            return action()
        return None

    return run


def _blocks() -> None:
    RELEASE.wait(60)


def _raises() -> None:
    raise RuntimeError("user code on a loglog thread")


def _hundred_records_around(hostile: Callable[[], None], path: Path) -> dict[str, Any]:
    """A hostile call between 100 plain ones, to a real file sink; flush must succeed."""
    RELEASE.clear()
    SEEN.clear()
    loglog.configure(console=None, file=str(path), registry=None)
    try:
        log = loglog.get_logger("plain")
        for i in range(50):
            log.info("plain", i=i)
        hostile()
        for i in range(50, 100):
            log.warning("plain", i=i)
        flushed = loglog.flush(timeout=5)
        stats = loglog.stats()
    finally:
        RELEASE.set()
        loglog.shutdown(timeout=5)
    lines = [json.loads(line) for line in path.read_text().split("\n") if line]
    return {"flushed": flushed, "stats": stats, "lines": lines}


def test_a_field_name_whose_eq_blocks_on_loglog_threads_stops_nothing(tmp_path: Path) -> None:
    """A ``str`` subclass hashing like ``trace_id`` (and like a bound key), whose
    ``__eq__`` blocks on loglog's threads: the worker used to stop for good (0 of 101
    delivered, 0 dropped)."""
    eq = _on_loglog_threads(_blocks)

    class Name(str):
        def __hash__(self) -> int:
            return hash("trace_id")

        def __eq__(self, other: object) -> bool:
            eq()
            return str.__eq__(self, other)

    def hostile() -> None:
        loglog.get_logger("hostile").bind(trace_id="t").info("m", **{Name("trace_id"): 1})

    out = _hundred_records_around(hostile, tmp_path / "log.jsonl")
    assert out["flushed"], "the worker is stuck in __eq__"
    assert len(out["lines"]) == 101 and not out["stats"]["dropped"]
    assert SEEN == []


def test_bound_fields_of_a_dict_subclass_run_no_code_on_loglog_threads(tmp_path: Path) -> None:
    """Bound fields that are a ``dict`` subclass with its own ``keys()``/``__iter__``/
    ``__getitem__``: read on the caller's thread when bound, never on the worker."""
    touched = _on_loglog_threads(_blocks)

    class Fields(dict):  # type: ignore[type-arg]
        def keys(self) -> Any:
            touched()
            return dict.keys(self)

        def __iter__(self) -> Any:
            touched()
            return dict.__iter__(self)

        def __getitem__(self, key: Any) -> Any:
            touched()
            return dict.__getitem__(self, key)

    def hostile() -> None:
        loglog.Logger("hostile", Fields(stream="cam1")).info("m")
        loglog.get_logger("hostile", **Fields(stream="cam2")).info("m")

    out = _hundred_records_around(hostile, tmp_path / "log.jsonl")
    assert out["flushed"], "the worker is stuck in keys()"
    hostile_lines = [line for line in out["lines"] if line["logger"] == "hostile"]
    assert [line["stream"] for line in hostile_lines] == ["cam1", "cam2"]
    assert SEEN == []


def test_a_raising_field_name_hash_on_a_sink_thread_costs_no_record(tmp_path: Path) -> None:
    """The JSON renderer hashed field names (its key cache) and prefixed reserved ones
    with ``"_" + key`` (a subclass's ``__radd__``): one name that raised there dropped
    its whole batch, 100 unrelated records with it (``sink_error``)."""
    raises = _on_loglog_threads(_raises)

    class Name(str):
        def __hash__(self) -> int:
            raises()
            return str.__hash__(self)

        def __radd__(self, other: str) -> str:
            raises()
            return other + str(self)

        __eq__ = str.__eq__

    def hostile() -> None:
        loglog.get_logger("hostile").info("m", **{Name("msg"): 1, Name("n"): 2})

    out = _hundred_records_around(hostile, tmp_path / "log.jsonl")
    assert out["flushed"] and not out["stats"]["dropped"], out["stats"]["dropped"]
    hostile_lines = [line for line in out["lines"] if line["logger"] == "hostile"]
    assert hostile_lines[0]["_msg"] == 1 and hostile_lines[0]["n"] == 2
    assert len(out["lines"]) == 101 and SEEN == []


def test_a_name_whose_format_blocks_cannot_hang_the_text_console(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The text console formats field names in an f-string: a ``str`` subclass's
    ``__format__`` ran on the sink thread, and one that blocked hung the console. (A
    logger name of that kind was written ``<Name>``; now it keeps its text.)"""
    RELEASE.clear()
    SEEN.clear()
    blocks = _on_loglog_threads(_blocks)

    class Name(str):
        def __format__(self, spec: str) -> str:
            blocks()
            return str.__format__(self, spec)

    loglog.configure(console="text", registry=None)
    try:
        loglog.get_logger(Name("decoder")).info("frame decoded", **{Name("stream"): "cam1"})
        loglog.get_logger("after").warning("next")
        flushed = loglog.flush(timeout=5)
    finally:
        RELEASE.set()
        loglog.shutdown(timeout=5)
    err = capfd.readouterr().err
    assert flushed, "the console sink is stuck in __format__"
    assert "decoder  frame decoded  stream=cam1" in err and "after  next" in err
    assert SEEN == []


def test_a_logger_keeps_an_exact_name_and_a_private_copy_of_its_fields() -> None:
    """Set in ``Logger()``, ``bind()`` or by assignment, a name becomes an exact ``str``
    and bound fields a plain dict that only the logger holds (``_bound`` is a copy)."""

    class Name(str):
        pass

    log = loglog.Logger(Name("n"), {Name("k"): 1})
    assert type(log.name) is str and log.name == "n"
    assert [type(key) for key in log._bound or {}] == [str]
    copy = log._bound
    assert copy is not None
    copy["injected"] = 2
    assert log._bound == {"k": 1}, "the copy handed out is not the logger's own dict"
    log._bound = [("a", 1)]  # type: ignore[assignment]  # any mapping, read once
    assert log._bound == {"a": 1}
    log.name = 7  # type: ignore[assignment]
    assert log.name == "7"
    assert loglog.Logger("x", {}).bind()._bound is None
    assert loglog.Logger("x", 5)._bound == {"fields": "<int>"}  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.skipif(not SPEEDUPS, reason="this process already runs the Python path")
def test_the_python_path_passes_these_properties_too() -> None:
    """The same properties, and test_accounting.py's, with ``LOGLOG_PURE_PYTHON=1`` (the
    Python level methods and emit closure), in a fresh interpreter."""
    root = Path(__file__).resolve().parents[2]
    accounting = str(Path(__file__).with_name("test_accounting.py"))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, accounting],
        env={**os.environ, "LOGLOG_PURE_PYTHON": "1", "LOGLOG_HOSTILE_EXAMPLES": "20"},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    assert " passed" in out.stdout and "skipped" in out.stdout  # this test skips there


def test_a_span_of_a_foreign_tracer_is_asked_for_its_ids_on_the_render_helper_only() -> None:
    """A span of a class that is not OpenTelemetry's (a vendor's tracer) is user code:
    the worker used to call its ``get_span_context()``; one that blocked stopped it. Now
    such a record goes to the render helper, which asks within its budget."""
    from opentelemetry import context, trace

    SEEN.clear()
    RELEASE.clear()
    asked = _on_loglog_threads(lambda: None)

    class VendorSpan(trace.NonRecordingSpan):
        def get_span_context(self) -> trace.SpanContext:
            asked()
            return super().get_span_context()

    span = VendorSpan(trace.SpanContext(0xABC, 0xDEF, is_remote=False))
    records: list[Any] = []
    from loglog.testing import ListSink

    loglog.configure(console=None, sinks=[ListSink(records)], registry=None)
    token = context.attach(trace.set_span_in_context(span))
    try:
        loglog.get_logger("traced").info("inside a vendor's span")
    finally:
        context.detach(token)
    assert loglog.flush(timeout=5)
    loglog.shutdown(timeout=5)
    assert (records[0].trace_id, records[0].span_id) == ("0" * 29 + "abc", "0" * 13 + "def")
    assert {thread.rstrip("-0123456789") for _, _, thread in SEEN} == {"loglog-render"}


def test_a_thread_whose_name_is_a_property_of_its_own_runs_no_code_on_the_worker(
    tmp_path: Path,
) -> None:
    """Records carry their thread's name: the worker read ``Thread.name``, which a
    subclass of ``Thread`` may make a property of its own (one that blocked stopped the
    worker). It reads the name the thread was given, from its ``__dict__``."""
    SEEN.clear()
    RELEASE.clear()
    blocks = _on_loglog_threads(_blocks)

    class Named(threading.Thread):
        @property  # type: ignore[override]
        def name(self) -> str:
            blocks()
            return str(self.__dict__["_name"])

        @name.setter
        def name(self, value: str) -> None:
            self.__dict__["_name"] = value

    path = tmp_path / "log.jsonl"
    loglog.configure(console=None, file=str(path), registry=None)
    logged, done = threading.Event(), threading.Event()

    def run() -> None:  # alive until flush() returns: the worker looks its name up
        loglog.get_logger("t").info("from a named thread")
        logged.set()
        done.wait(10)

    thread = Named(target=run, name="cam-7")
    thread.start()
    try:
        assert logged.wait(5)
        flushed = loglog.flush(timeout=5)
    finally:
        done.set()
        RELEASE.set()
        thread.join(10)
        loglog.shutdown(timeout=5)
    assert flushed, "the worker is stuck in Thread.name"
    assert SEEN == []
    assert json.loads(path.read_text())["msg"] == "from a named thread"
