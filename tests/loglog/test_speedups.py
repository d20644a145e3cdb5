"""The C hot path (loglog/_speedups.c) against the Python one it replaces.

The C level methods and the C DEBUG/INFO emit must queue exactly what the Python code
queues — the same tuples, in the same order, the same counts and wake-ups — whatever the
arguments. The differential property test drives both with the same calls (hypothesis)
and compares everything but the clock. The other tests cover what only C can get wrong:
exceptions (swallowed and counted, except a BaseException such as KeyboardInterrupt),
re-entrancy from finalizers and reconfiguration while other threads log, and that the
extension is really built and used (CI would otherwise measure the Python path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loglog import core as core_mod
from loglog.core import FIELDS, MSG, SEQ, TIME, CallerStats, Fmt, PyCore, as_fields, make_emit
from loglog.counters import AtomicCounter
from loglog.logger import Logger, PyLevels
from loglog.types import WARNING
from tests.conftest import run_code

speedups = core_mod._speedups
needs_c = pytest.mark.skipif(speedups is None, reason="the C extension is not in use here")
PURE = os.environ.get("LOGLOG_PURE_PYTHON", "").strip() not in ("", "0")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(PURE, reason="LOGLOG_PURE_PYTHON is set: the Python path is wanted")
def test_the_c_hot_path_is_built_and_used() -> None:
    """`make test` builds the extension; if it stopped building, say so here (the
    benchmark and its figures in docs/benchmarks.md are for the C path)."""
    import loglog

    assert speedups is not None, "loglog/_speedups.c did not build: see `pip install -e .`"
    assert loglog.SPEEDUPS
    assert type(core_mod.CORE) is speedups.Core
    assert type(Logger.__dict__.get("info", Logger.info)).__name__ == "method_descriptor"


def test_loglog_pure_python_selects_the_python_path() -> None:
    code = "import loglog, loglog.core as c; print(loglog.SPEEDUPS, type(c.CORE).__name__)"
    env = {**os.environ, "LOGLOG_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["False", "PyCore"], out.stderr


class _PyLogger(PyLevels):
    """The Python level methods, on any core (what runs without the extension)."""

    __slots__ = ()
    warn = PyLevels.warning

    def __init__(self, name: str, bound: dict[str, Any] | None, core: Any) -> None:
        self.name, self._bound, self._core = name, bound or None, core


class _Harness:
    """One queue pair, counters and wake pipe, driven through one of the two paths."""

    def __init__(self, use_c: bool, capacity: int, context_get: Callable[[], Any]) -> None:
        self.low: deque[Any] = deque()
        self.high: deque[Any] = deque()
        self.stats = CallerStats()
        self.idle = [False]
        self.read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.write_fd = write_fd
        emit = make_emit(
            low=self.low,
            high=self.high,
            low_capacity=capacity,
            high_capacity=max(capacity // 4, 2),
            seq=AtomicCounter(),
            stats=self.stats,
            context_get=context_get,
            wake_fd=write_fd,
            spool=None,
            idle=self.idle,
        )
        if use_c:
            assert speedups is not None
            self.core: Any = speedups.Core()
            self.core.emit = emit
        else:
            self.core = PyCore()
            self.core.emit = getattr(emit, "high", emit)  # the closure, without C
        self.core.threshold = 0
        self.use_c = use_c

    def logger(self, name: str, bound: dict[str, Any] | None) -> Any:
        return Logger(name, bound, self.core) if self.use_c else _PyLogger(name, bound, self.core)

    def wakes(self) -> int:
        total = 0
        while True:
            try:
                total += len(os.read(self.read_fd, 4096))
            except BlockingIOError:
                return total

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)

    def queued(self) -> list[tuple[Any, ...]]:
        """Both queues in sequence order, the clock left out and Fmt made comparable."""
        out = []
        for raw in sorted([*self.low, *self.high], key=lambda r: r[SEQ]):
            row = list(raw)
            row[TIME] = None
            row[FIELDS] = as_fields(row[FIELDS])  # the C path queues a flat tuple
            if type(row[MSG]) is Fmt:
                row[MSG] = ("Fmt", row[MSG].msg, row[MSG].args)
            out.append(tuple(row))
        return out


_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
_names = st.sampled_from(["msg", "self", "level", "a", "b", "name", "ünï", "x" * 40])
_call = st.tuples(
    st.sampled_from(["trace", "debug", "info", "warning", "error", "critical", "warn", "emit"]),
    st.one_of(st.text(max_size=12), st.integers(), st.none()),  # msg
    st.lists(_values, max_size=3),  # %-arguments
    st.dictionaries(_names, _values, max_size=4),  # fields
    st.sampled_from([True, False, 0, 1, "", "yes", None]),  # idle flag (bools, and not)
    st.sampled_from([0, 5, 10, 20, 25, 29, 30, 50]),  # the threshold
    st.sampled_from([0, 1, 1_700_000_000_000_000_000]),  # time_ns (emit only)
)


def _raising_context() -> Any:
    raise ValueError("no context today")


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(_call, max_size=40),
    capacity=st.integers(min_value=1, max_value=12),
    bound=st.one_of(st.none(), st.dictionaries(_names, _values, max_size=2)),
    raising_context=st.booleans(),
    omit_msg=st.booleans(),
)
@pytest.mark.slow  # over 2 s: the full suite runs it
def test_c_and_python_paths_queue_the_same_records(
    calls: list[Any],
    capacity: int,
    bound: dict[str, Any] | None,
    raising_context: bool,
    omit_msg: bool,
) -> None:
    context = _raising_context if raising_context else (lambda: None)
    results = []
    for use_c in (False, True):
        harness = _Harness(use_c, capacity, context)
        try:
            log = harness.logger("app", bound)
            for method, msg, args, fields, idle, threshold, stamp in calls:
                harness.idle[0] = idle
                harness.core.threshold = threshold
                if method == "emit":  # what the stdlib bridge does: a timestamp of its own
                    harness.core.emit(20, "bridge", msg, dict(fields), None, None, stamp)
                elif omit_msg and not args:
                    assert getattr(log, method)(**fields) is None
                else:
                    assert getattr(log, method)(msg, *args, **fields) is None
            results.append(
                (
                    harness.queued(),
                    harness.stats.emitted.values(),
                    harness.stats.queue_full.values(),
                    harness.stats.internal_errors.value,
                    harness.wakes(),
                )
            )
        finally:
            harness.close()
    python, c = results
    assert c == python


@needs_c
def test_explicit_timestamps_and_now_match_the_python_clock() -> None:
    import time

    harness = _Harness(True, 10, lambda: None)
    try:
        before = time.time_ns()
        harness.core.emit(20, "bridge", "given", {}, None, None, 123)
        harness.core.emit(20, "bridge", "now", {}, None, None, 0)
        Logger("app", None, harness.core).info("now too")
        after = time.time_ns()
        stamps = [raw[TIME] for raw in harness.low]
        assert stamps[0] == 123
        assert all(before <= stamp <= after for stamp in stamps[1:]), (before, stamps, after)
    finally:
        harness.close()


@needs_c
def test_a_failing_step_is_counted_never_raised_but_keyboard_interrupt_propagates() -> None:
    assert speedups is not None
    harness = _Harness(True, 10, lambda: None)
    log = Logger("app", None, harness.core)

    class Broken:
        def __init__(self, *args: Any) -> None:
            raise ValueError("cannot wrap")

    class Interrupting:
        def __init__(self, *args: Any) -> None:
            raise KeyboardInterrupt

    try:
        speedups.set_fmt(Broken)
        assert log.info("a %s", 1) is None  # the Fmt step fails: swallowed
        assert log.warning("b %s", 2) is None
        speedups.set_fmt(Interrupting)
        with pytest.raises(KeyboardInterrupt):
            log.info("c %s", 3)
    finally:
        speedups.set_fmt(Fmt)
    assert not harness.low and not harness.high
    log.info("after", n=1)
    assert [raw[MSG] for raw in harness.low] == ["after"]
    harness.close()


@needs_c
def test_a_raising_context_getter_costs_one_counted_record() -> None:
    harness = _Harness(True, 10, _raising_context)
    log = Logger("app", None, harness.core)
    log.info("lost")
    log.debug("lost too")
    assert not harness.low
    assert harness.stats.internal_errors.value == 2
    assert harness.stats.emitted.values()["info"] == 1
    harness.close()


@needs_c
def test_a_logger_on_any_core_object_uses_its_threshold_and_emit() -> None:
    seen: list[tuple[Any, ...]] = []

    class Plain:
        threshold = 20

        def emit(self, *args: Any) -> None:
            seen.append(args)

    log = Logger("app", {"k": 1}, Plain())  # type: ignore[arg-type]
    log.debug("filtered")
    log.info("kept %d", 1, n=2)
    assert len(seen) == 1
    level, name, msg, fields, bound = seen[0]
    assert (level, name, str(msg), fields, bound) == (20, "app", "kept 1", {"n": 2}, {"k": 1})
    assert Logger("app", None, object()).info("no threshold here") is None  # type: ignore[arg-type]


@needs_c
def test_emitter_refuses_wrong_counters() -> None:
    assert speedups is not None
    count = AtomicCounter().counter
    good = (count,) * 101
    with pytest.raises(ValueError, match="one counter per level"):
        speedups.Emitter(print, deque(), 4, count, good[:5], good, count, print, 1, [False])
    with pytest.raises(TypeError, match="callable"):
        speedups.Emitter(None, deque(), 4, count, good, good, count, print, 1, [False])
    with pytest.raises(TypeError, match=r"itertools\.count"):
        speedups.Emitter(print, deque(), 4, 7, good, good, count, print, 1, [False])
    read_fd, write_fd = os.pipe()  # blocking: a log call holding the GIL could wait on it
    try:
        with pytest.raises(ValueError, match="non-blocking"):
            speedups.Emitter(print, deque(), 4, count, good, good, count, print, write_fd, [1])
    finally:
        os.close(read_fd)
        os.close(write_fd)


def _run(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_code(code, timeout)


@pytest.mark.slow
def test_finalizers_that_log_in_the_middle_of_log_calls_lose_nothing() -> None:
    """gc threshold 1: a collection (running __del__ methods that log) can start inside
    every allocation the C path makes. Every record is still delivered or counted."""
    out = _run(
        """
        import gc, loglog
        from loglog.testing import capture

        class Cyclic:
            def __init__(self):
                self.me = self
            def __del__(self):
                loglog.get_logger("finalizer").info("collected", n=1)

        with capture(level="debug", capacity=1_000_000) as records:
            log = loglog.get_logger("app")
            gc.set_threshold(1)
            for i in range(20_000):
                Cyclic()
                log.info("call %d", i, i=i)
            gc.set_threshold(700)
            gc.collect()
            loglog.flush(timeout=30)
        stats = loglog.stats()
        emitted = sum(stats["emitted"].values())
        dropped = sum(stats["dropped"].values())
        print(len(records), emitted, dropped, stats["internal_errors"])
        """
    )
    assert out.returncode == 0, out.stderr
    delivered, emitted, dropped, errors = (int(x) for x in out.stdout.split())
    assert emitted >= 20_000
    assert delivered + dropped == emitted
    assert errors == 0


@pytest.mark.slow
def test_reconfiguring_while_threads_log_never_crashes_or_miscounts() -> None:
    out = _run(
        """
        import threading, loglog
        from loglog.testing import ListSink

        records = []
        loglog.configure(console=None, sinks=[ListSink(records)], registry=None)
        stop = threading.Event()

        def spam():
            log = loglog.get_logger("t").bind(thread=threading.get_ident())
            while not stop.is_set():
                log.info("spam", n=1)
                log.debug("below the threshold")

        threads = [threading.Thread(target=spam) for _ in range(3)]
        for thread in threads:
            thread.start()
        for i in range(30):
            loglog.configure(console=None, sinks=[ListSink(records)], registry=None)
        stop.set()
        for thread in threads:
            thread.join()
        loglog.shutdown(timeout=10)
        print(len(records) > 0, loglog.stats()["internal_errors"])
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "0"], out.stdout


@pytest.mark.slow
@pytest.mark.skipif(PURE, reason="this runs the Python path itself")
def test_the_python_path_passes_the_api_and_guarantee_tests() -> None:
    """Where the extension cannot be built, the Python path runs: keep it working."""
    env = {**os.environ, "LOGLOG_PURE_PYTHON": "1"}
    tests = ["tests/loglog/test_api.py", "tests/loglog/test_guarantees.py"]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    assert " passed" in out.stdout


def test_both_paths_share_the_warning_path() -> None:
    """WARNING+ always runs the Python closure (the crash spool lives there)."""
    harness = _Harness(speedups is not None, 10, lambda: None)
    log = harness.logger("app", None)
    log.warning("w")
    log.error("e")
    assert [raw[MSG] for raw in harness.high] == ["w", "e"]
    assert all(raw[2] >= WARNING for raw in harness.high)
    harness.close()


def test_a_pickled_or_copied_logger_logs_through_the_live_configuration() -> None:
    import copy
    import pickle

    from loglog.testing import capture

    with capture() as records:
        log = Logger("app", {"k": 1})
        for clone in (pickle.loads(pickle.dumps(log)), copy.copy(log), copy.deepcopy(log)):
            assert clone._core is core_mod.CORE
            clone.info("from a clone", n=1)
    assert [(r.message, r.fields) for r in records] == [("from a clone", {"k": 1, "n": 1})] * 3


# -- findings of the red-team review of the C path, each a test that failed before its fix --


def _debug_run(code: str) -> subprocess.CompletedProcess[str]:
    """A child under CPython's debug allocator, which fills freed memory with a pattern:
    a use-after-free shows as garbage or a crash instead of passing by luck."""
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONMALLOC": "debug"},
    )


@needs_c
@pytest.mark.slow
def test_a_finalizer_rebinding_the_name_or_fields_mid_call_is_safe() -> None:
    out = _debug_run(
        """
        import gc, os
        from collections import deque
        from loglog.core import make_emit, CallerStats
        from loglog.counters import AtomicCounter
        from loglog import _speedups
        from loglog.logger import Logger
        r, w = os.pipe2(os.O_NONBLOCK)
        low, high = deque(), deque()
        core = _speedups.Core(); core.threshold = 0
        core.emit = make_emit(low=low, high=high, low_capacity=1000, high_capacity=1000,
            seq=AtomicCounter(), stats=CallerStats(), context_get=lambda: None, wake_fd=w,
            spool=None, idle=[False])
        log = Logger("".join(["na", "me"]), {"k": 1}, core)
        armed = [False]
        class Cyclic:
            def __init__(self):
                self.me = self
            def __del__(self):
                if armed[0]:
                    armed[0] = False
                    log.name = "".join(["re", "named"])
                    log._bound = {"k": 2}
        gc.collect(); gc.set_threshold(1)
        for i in range(300):
            Cyclic(); armed[0] = True
            (log.info if i % 2 else log.warning)("m")
        gc.set_threshold(700)
        import json
        records = [*low, *high]
        print(json.dumps({"names": [r[3] for r in records], "bounds": [r[6] for r in records]}))
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    seen = json.loads(out.stdout)
    assert len(seen["names"]) == 300
    assert set(seen["names"]) <= {"name", "renamed"}, set(seen["names"])  # never freed memory
    assert all(bound in ({"k": 1}, {"k": 2}) for bound in seen["bounds"])


@needs_c
@pytest.mark.slow
def test_threads_rebinding_a_logger_while_others_log_never_crash() -> None:
    out = _debug_run(
        """
        import gc, threading, time, loglog
        from loglog.testing import ListSink
        loglog.configure(console=None, sinks=[ListSink([])], registry=None, level="debug",
                         capacity=100)
        log = loglog.get_logger("start")
        stop = threading.Event()
        def renamer():
            i = 0
            while not stop.is_set():
                log.name = "n%d" % i
                log._bound = {"i": i}
                i += 1
        gc.callbacks.append(lambda phase, info: time.sleep(0))  # lets the GIL switch
        gc.set_threshold(1)
        thread = threading.Thread(target=renamer)
        thread.start()
        started = time.time()
        while time.time() - started < 3:
            log.info("x")
        stop.set(); thread.join()
        gc.set_threshold(700)
        print("survived", loglog.stats()["internal_errors"])
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["survived", "0"]


@needs_c
def test_a_core_whose_threshold_lookup_drops_it_is_still_used_safely() -> None:
    out = _debug_run(  # a child: a use-after-free here is a segfault
        """
        from loglog.logger import Logger
        seen = []
        class Fickle:
            @property
            def threshold(self):
                log._core = None  # frees this core, in the middle of the call
                return 0
            def emit(self, *args):
                seen.append(args)
        log = Logger("x", None, Fickle())
        log.info("hi")
        print(seen)
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[(20, 'x', 'hi', {}, None)]"


@needs_c
def test_a_nan_threshold_on_any_core_compares_like_python() -> None:
    seen: list[Any] = []

    class Nan:
        threshold = float("nan")

        def emit(self, *args: Any) -> None:
            seen.append(args)

    for logger in (Logger("x", None, Nan()), _PyLogger("x", None, Nan())):  # type: ignore[arg-type]
        logger.warning("w")
    assert seen == []  # nan <= 30 is False: neither path logs


def test_a_threshold_out_of_range_fails_configure_and_the_core_clamps() -> None:
    import loglog

    with pytest.raises(loglog.ConfigError, match="out of range"):
        loglog.configure(level=10**20, console=None, registry=None)
    with pytest.raises(loglog.ConfigError, match="out of range"):
        loglog.configure(level=-1, console=None, registry=None)
    core = core_mod.Core()
    core.threshold = 10**30  # clamped: every level disabled
    assert core.threshold >= 2**31 - 1
    if speedups is not None:
        with pytest.raises(TypeError, match="must be an int"):
            core.threshold = 1.5  # type: ignore[assignment]
        with pytest.raises(AttributeError):
            del core.threshold


@needs_c
def test_a_reference_cycle_through_a_queued_record_is_collected() -> None:
    import gc
    import weakref

    harness = _Harness(True, 10, lambda: None)

    class Msg:
        queue: Any = None

    msg = Msg()
    msg.queue = harness.low  # msg → queue → record → msg
    harness.core.emit(20, "n", msg, {}, None)
    ref = weakref.ref(msg)
    harness.low = None  # type: ignore[assignment]
    del msg
    harness.core.emit = None  # the Emitter held the queue too
    gc.collect()
    harness.close()
    assert ref() is None


@needs_c
def test_a_subinterpreter_importing_loglog_leaves_the_main_one_intact() -> None:
    out = _run(
        """
        import _xxsubinterpreters as interpreters
        import loglog
        from loglog.testing import capture
        sub = interpreters.create()
        interpreters.run_string(sub, "import loglog, loglog.core as c; assert not c.SPEEDUPS")
        interpreters.destroy(sub)
        with capture() as records:
            loglog.get_logger("x").info("a %s", 1)
        print(loglog.SPEEDUPS, records[0].message)
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "a", "1"]


def test_reconfiguring_does_not_leak_descriptors() -> None:
    import loglog
    from loglog import wakeup

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    loglog.configure(console=None, registry=None)
    before = open_fds()
    for _ in range(50):
        loglog.configure(console=None, registry=None)
    loglog.shutdown()
    assert open_fds() - before <= 4, (before, open_fds())  # before the fix: +100
    assert wakeup.free_count() <= 3


def test_a_stale_build_is_not_used_and_says_how_to_rebuild() -> None:
    out = _run(
        """
        import sys, types
        stale = types.ModuleType("loglog._speedups")
        stale.API = 1  # an older interface than loglog/core.py expects
        sys.modules["loglog._speedups"] = stale
        import loglog
        from loglog.testing import capture
        with capture() as records:
            loglog.get_logger("x").info("still logs")
        print(loglog.SPEEDUPS, records[0].message)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "still", "logs"]
    assert "stale build" in out.stderr and "pip install -e ." in out.stderr


def test_flat_fields_become_the_same_dict_on_both_paths() -> None:
    flat = ("stream", "cam1", "frame", 1, "msg", None)
    expected = {"stream": "cam1", "frame": 1, "msg": None}
    assert as_fields(flat) == expected
    assert as_fields(()) == {} and as_fields(expected) is expected  # a dict passes through
    if speedups is not None:
        assert speedups.fields_dict(flat) == expected
        with pytest.raises(TypeError, match="pairs"):
            speedups.fields_dict(("odd",))
