"""The twelve guarantees of loglog, each run as a scenario in its own process.

A scenario that hangs is killed at its hard timeout and the test fails with its stderr.
Timing assertions are hang guards only (seconds, never microseconds).
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from tests.conftest import free_port
from tests.doubles.loki import LokiServer, SilentServer
from tests.loglog.prelude import total

pytestmark = pytest.mark.slow

PRELUDE = """
import json, os, sys, threading, time
import loglog
from tests.loglog.prelude import flat_stats, report, total
"""


def script(body: str) -> str:
    """The common imports followed by a scenario body (dedented)."""
    return PRELUDE + textwrap.dedent(body)


def test_g1_log_calls_never_block_or_raise_whatever_the_sinks_do(scenario):
    """A sink that raises, a sink that hangs forever, a value whose __str__ raises and a
    message that is not a string: every call returns at once and nothing reaches the caller."""
    result = scenario(
        script(
            """
        class Raises:
            name = "raises"
            def write(self, records):
                raise OSError("disk on fire")
        class Hangs:
            name = "hangs"
            def write(self, records):
                threading.Event().wait()
        class BadStr:
            def __str__(self):
                raise RuntimeError("no")
        loglog.configure(console=None, sinks=[Raises(), Hangs()], capacity=500, registry=None)
        log = loglog.get_logger("g1")
        worst = 0.0
        raised = 0
        for i in range(20000):
            t = time.perf_counter()
            try:
                log.info("value", v=BadStr())
                log.error(BadStr(), i=i)
                log.log("not a level", "weird")
            except BaseException:
                raised += 1
            worst = max(worst, time.perf_counter() - t)
        loglog.flush(1.0)
        report(worst=worst, raised=raised, stats=flat_stats())
        loglog.shutdown(timeout=0.5)
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.result["raised"] == 0
    assert result.result["worst"] < 0.5, "a log call blocked"
    stats = result.result["stats"]
    assert stats["sink_errors"].get("raises", 0) > 0, "the raising sink's failures are counted"
    assert total(stats["dropped"], sink="raises", reason="sink_error") > 0
    assert total(stats["dropped"], sink="hangs", reason="sink_backlog") > 0


def test_g2_stalled_stdout_pipe_never_freezes_callers_or_exit(scenario):
    """stdout is a pipe that nobody reads: 20k calls finish promptly, console drops are
    counted, every record is accounted for, and the process exits within the deadline."""
    result = scenario(
        script(
            """
        loglog.configure(console="text", console_stream="stdout", registry=None)
        log = loglog.get_logger("g2")
        started = time.monotonic()
        for i in range(20000):
            log.info("a line that will fill the pipe", i=i, pad="x" * 60)
        calls = time.monotonic() - started
        started = time.monotonic()
        loglog.shutdown()  # the default 2 s deadline
        stats = flat_stats()
        report(calls=calls, shutdown=time.monotonic() - started, stats=stats)
        sys.stderr.write("EXIT %f\\n" % time.monotonic())
        """
        ),
        timeout=30,
        stdout=subprocess.PIPE,  # a pipe nobody reads
    )
    assert result.returncode == 0, result.stderr
    data = result.result
    assert data["calls"] < 5.0, "log calls waited on the stalled pipe"
    assert data["shutdown"] < 2.5, "shutdown overran its 2 s deadline"
    assert result.ended_at - result.marker("EXIT") < 1.5, "the interpreter hung on the way out"
    stats = data["stats"]
    dropped = total(stats["dropped"], sink="console") + total(stats["dropped"], sink="all")
    delivered = total(stats["delivered"], sink="console")
    assert dropped > 0, "the stall must show up as counted drops"
    assert delivered + dropped == 20000 == stats["emitted"]["info"]


SPILL_WRITER = script(
    """
    url, spill, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    loglog.configure(console=None, loki_url=url, spill_dir=spill, loki_timeout=0.5,
                     loki_backoff_min=0.1, loki_backoff_max=0.5, loki_batch_wait=0.1,
                     registry=None)
    log = loglog.get_logger("writer")
    worst = 0.0
    for i in range(n):
        t = time.perf_counter()
        (log.warning if i % 10 == 0 else log.info)("record", i=i)
        worst = max(worst, time.perf_counter() - t)
    started = time.monotonic()
    flushed = loglog.shutdown(timeout=2.0)
    report(worst=worst, shutdown=time.monotonic() - started, flushed=flushed,
           stats=flat_stats())
    """
)

SPILL_READER = script(
    """
    url, spill = sys.argv[1], sys.argv[2]
    loglog.configure(console=None, loki_url=url, spill_dir=spill, loki_batch_wait=0.1,
                     registry=None)
    loglog.get_logger("reader").info("second process")
    flushed = loglog.flush(timeout=20)
    report(flushed=flushed, stats=flat_stats())
    loglog.shutdown()
    """
)


@pytest.mark.parametrize("failure", ["hangs", "down"])
def test_g3_loki_hanging_or_down_spills_then_delivers_after_restart(scenario, tmp_path, failure):
    """Loki accepts TCP and never answers, or nothing listens: callers are unaffected,
    records wait in the spill, and the next process delivers every one of them once."""
    spill = str(tmp_path / "spill")
    port = free_port()
    silent = SilentServer(port) if failure == "hangs" else None
    try:
        first = scenario(SPILL_WRITER, args=[f"http://127.0.0.1:{port}", spill, "2000"], timeout=30)
    finally:
        if silent is not None:
            silent.close()
    assert first.returncode == 0, first.stderr
    assert first.result["worst"] < 0.5
    assert first.result["shutdown"] < 3.0
    assert first.result["flushed"] is False, "nothing can have been delivered"
    with LokiServer(port) as loki:
        second = scenario(SPILL_READER, args=[loki.url, spill], timeout=40)
        assert second.returncode == 0, second.stderr
        assert second.result["flushed"] is True
        messages = [e.json() for e in loki.state.entries]
    written = sorted(m["i"] for m in messages if m["logger"] == "writer")
    assert written == list(range(2000)), "every spilled record delivered exactly once"
    assert sum(m["level"] == "warning" for m in messages) == 200
    assert second.result["stats"]["replayed"]["spill"] == 2000


def test_g4_loki_5xx_then_recovery_delivers_everything(scenario):
    """500 and 503 answers are retried with backoff until Loki recovers; nothing is lost."""
    with LokiServer() as loki:
        loki.state.script = [(500, None), (503, None), (503, None)]
        result = scenario(
            script(
                f"""
            loglog.configure(console=None, loki_url="{loki.url}", loki_backoff_min=0.05,
                             loki_backoff_max=0.2, registry=None)
            log = loglog.get_logger("g4")
            for i in range(300):
                log.info("record", i=i)
            report(flushed=loglog.flush(timeout=15), stats=flat_stats())
            loglog.shutdown()
            """
            ),
            timeout=40,
        )
        assert result.returncode == 0, result.stderr
        assert result.result["flushed"] is True
        assert sorted(e.json()["i"] for e in loki.state.entries) == list(range(300))
        assert len(loki.state.requests) >= 4, "three failures, then success"
        assert total(result.result["stats"]["delivered"], sink="loki") == 300


def test_g4_loki_429_honours_retry_after(scenario):
    """A 429 is retried, and not before the Retry-After the server asked for."""
    with LokiServer() as loki:
        loki.state.script = [(429, "2")]
        result = scenario(
            script(
                f"""
            loglog.configure(console=None, loki_url="{loki.url}", loki_backoff_min=0.01,
                             loki_backoff_max=10, registry=None)
            loglog.get_logger("g4").warning("rate limited")
            report(flushed=loglog.flush(timeout=15))
            loglog.shutdown()
            """
            ),
            timeout=40,
        )
        assert result.returncode == 0, result.stderr
        assert result.result["flushed"] is True
        first, second = loki.state.requests[0]["time"], loki.state.requests[1]["time"]
        assert second - first >= 1.9, "retried before Retry-After elapsed"
        assert [e.json()["msg"] for e in loki.state.entries] == ["rate limited"]


@pytest.mark.parametrize("status", [400, 413])
def test_g4_loki_400_and_413_are_never_retried(scenario, status):
    """A 400/413 batch is dropped at once with its reason counted: a retry could
    duplicate the streams Loki already stored from a partly valid request."""
    with LokiServer() as loki:
        loki.state.script = [(status, None)]
        result = scenario(
            script(
                f"""
            loglog.configure(console=None, loki_url="{loki.url}", loki_backoff_min=0.01,
                             loki_backoff_max=0.05, registry=None)
            log = loglog.get_logger("g4")
            for i in range(5):
                log.info("record", i=i)
            flushed = loglog.flush(timeout=10)
            time.sleep(1.0)  # room for a wrong retry to happen
            report(flushed=flushed, stats=flat_stats())
            loglog.shutdown()
            """
            ),
            timeout=40,
        )
        assert result.returncode == 0, result.stderr
        assert result.result["flushed"] is True
        assert len(loki.state.requests) == 1, "a 400/413 must not be retried"
        dropped = result.result["stats"]["dropped"]
        assert total(dropped, sink="loki", reason=f"http_{status}") == 5


def test_g5_fork_200_times_while_threads_log(scenario, tmp_path):
    """200 forks while two threads log: every child logs and exits, none hangs, and the
    file holds each parent record and each child record exactly once."""
    path = tmp_path / "fork.jsonl"
    result = scenario(
        script(
            f"""
        loglog.configure(console=None, file="{path}", registry=None)
        log = loglog.get_logger("parent")
        stop = threading.Event()
        def spam(n):
            i = 0
            while not stop.is_set():
                log.info("spam", t=n, i=i)
                i += 1
        threads = [threading.Thread(target=spam, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        children = []
        for k in range(200):
            log.warning("before fork", k=k)  # WARNING: the spam may fill the INFO queue
            pid = os.fork()
            if pid == 0:
                loglog.get_logger("child").info("child says hi", k=k)
                os._exit(0 if loglog.shutdown(timeout=5) else 3)
            children.append(pid)
        hung, bad = 0, 0
        deadline = time.monotonic() + 30
        for pid in children:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    bad += os.waitstatus_to_exitcode(status) != 0
                    break
                if time.monotonic() > deadline:
                    hung += 1
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.005)
        stop.set()
        for t in threads:
            t.join()
        loglog.shutdown(timeout=10)
        report(hung=hung, bad=bad, stats=flat_stats())
        """
        ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.result["hung"] == 0, "a child hung"
    assert result.result["bad"] == 0, "a child could not deliver its record"
    import json

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    children = sorted(r["k"] for r in lines if r["logger"] == "child")
    assert children == list(range(200))
    before = sorted(r["k"] for r in lines if r["msg"] == "before fork")
    assert before == list(range(200)), "parent records queued at fork: none lost, none doubled"
    spam = [(r["t"], r["i"]) for r in lines if r["msg"] == "spam"]
    assert len(spam) == len(set(spam)), "a child re-delivered its parent's records"
    stats = result.result["stats"]
    parent_delivered = total(stats["delivered"], sink="file")
    assert parent_delivered == len(lines) - 200, "parent delivered exactly what it reports"


def test_g6_logging_from_a_signal_handler_every_millisecond(scenario, tmp_path):
    """A SIGALRM handler logs (INFO and WARNING, spooled) every millisecond while the main
    thread logs; nothing deadlocks and every record is delivered."""
    result = scenario(
        script(
            f"""
        import signal
        loglog.configure(console=None, file="{tmp_path / "sig.jsonl"}",
                         spill_dir="{tmp_path / "spill"}", registry=None)
        log = loglog.get_logger("g6")
        fired = 0
        def handler(signum, frame):
            global fired
            fired += 1
            (log.warning if fired % 2 else log.info)("from signal", n=fired)
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        deadline = time.monotonic() + 3
        i = 0
        while time.monotonic() < deadline:
            log.info("main", i=i)
            if i % 50 == 0:
                log.warning("main warning", i=i)
            if i % 20 == 0:
                time.sleep(0.0005)  # a busy service, not a benchmark: ~30k records/s
            i += 1
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        flushed = loglog.flush(timeout=10)
        report(fired=fired, flushed=flushed, stats=flat_stats())
        loglog.shutdown()
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = result.result
    assert data["fired"] > 500, "the timer must actually interrupt the logging loop"
    assert data["flushed"] is True
    stats = data["stats"]
    emitted = sum(stats["emitted"].values())
    assert total(stats["delivered"], sink="file") + total(stats["dropped"]) == emitted
    assert total(stats["dropped"], level="warning") == 0
    assert stats["internal_errors"] == 0


def test_g7_del_during_gc_and_a_sink_failure_path_that_logs(scenario):
    """__del__ methods that log run during GC (even inside a log call); a sink that logs
    from its failure path and a __str__ that logs do not recurse forever: the recursion
    is cut and counted."""
    result = scenario(
        script(
            """
        import gc
        from loglog.testing import ListSink
        gc.set_threshold(1, 1, 1)  # collect at almost every allocation, inside log calls too
        log = loglog.get_logger("g7")
        class Noisy:
            def __del__(self):
                log.warning("collected")
        class LogsInRepr:
            def __str__(self):
                log.error("str was called", inner=self)
                return "LogsInRepr"
        class FailsAndLogs:
            name = "failing"
            def write(self, records):
                log.error("sink is failing", n=len(records))
                raise RuntimeError("down")
        kept = ListSink()
        loglog.configure(console=None, sinks=[FailsAndLogs(), kept], registry=None)
        for i in range(3000):
            n = Noisy()
            n.cycle = n
            del n
            log.info("value", v=LogsInRepr())
        gc.collect()
        flushed = loglog.flush(timeout=10)
        time.sleep(0.5)
        loglog.flush(timeout=10)
        report(flushed=flushed, kept=len(kept.records), stats=flat_stats())
        loglog.shutdown()
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    stats = result.result["stats"]
    assert stats["emitted"]["warning"] >= 2900, "__del__ logging works during GC"
    assert total(stats["dropped"], reason="recursion") > 0, "recursion cut and counted"
    assert sum(stats["emitted"].values()) < 20000, "no runaway feedback"
    assert stats["internal_errors"] == 0


def test_g8_exit_with_every_sink_hung_finishes_within_the_deadline(scenario):
    """Console on an unread pipe, Loki that never answers, and a user sink that never
    returns: the process still exits within its 2 s shutdown deadline."""
    with SilentServer() as silent:
        result = scenario(
            script(
                f"""
            class Hangs:
                def write(self, records):
                    threading.Event().wait()
            loglog.configure(console="json", console_stream="stdout", loki_url="{silent.url}",
                             loki_timeout=60, sinks=[Hangs()], registry=None)
            log = loglog.get_logger("g8")
            for i in range(5000):
                log.info("line", i=i, pad="y" * 80)
            time.sleep(0.3)
            sys.stderr.write("EXIT %f\\n" % time.monotonic())
            """
            ),
            timeout=30,
            stdout=subprocess.PIPE,
        )
    assert result.returncode == 0, result.stderr
    # The process must be gone within the 2 s deadline (plus interpreter teardown).
    assert result.ended_at - result.marker("EXIT") < 2.0 + 1.5


def test_g9_flood_from_8_threads_is_bounded_prioritised_and_accounted(scenario, tmp_path):
    """8 threads flood a small queue: memory stays bounded, DEBUG/INFO are dropped before
    WARNING+, and per sink delivered + dropped (by reason) = emitted."""
    result = scenario(
        script(
            f"""
        class Slow:
            name = "slow"
            local = True
            def write(self, records):
                time.sleep(0.002)
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        loglog.configure(console=None, file="{tmp_path / "flood.jsonl"}", sinks=[Slow()],
                         capacity=1000, registry=None)
        log = loglog.get_logger("g9")
        base = rss()
        peak = [base]
        done = threading.Event()
        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.01)
        sampler = threading.Thread(target=sample); sampler.start()
        def flood(n):
            for i in range(100_000):
                if i % 200 == 0:
                    log.warning("important", t=n, i=i)
                else:
                    log.info("noise", t=n, i=i, pad="z" * 100)
        threads = [threading.Thread(target=flood, args=(k,)) for k in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        flushed = loglog.flush(timeout=30)
        done.set(); sampler.join()
        report(flushed=flushed, growth=peak[0] - base, stats=flat_stats())
        loglog.shutdown()
        """
        ),
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    data = result.result
    assert data["flushed"] is True
    # 800k records of ~250 bytes would need ~200 MB if the queue grew without bound.
    assert data["growth"] < 60 * 1024 * 1024, f"memory grew by {data['growth']} bytes"
    stats = data["stats"]
    emitted = sum(stats["emitted"].values())
    assert emitted == 800_000
    assert total(stats["dropped"], level="info") > 0, "the flood must overflow the queue"

    # The documented rules: at the caller's queue WARNING+ evicts queued DEBUG/INFO, and is
    # dropped itself only once capacity × 1¼ WARNING+ records wait; at a sink's inbox it is
    # kept until 2 × capacity wait. Eight threads that do nothing but log (4 M calls/s on
    # the C path) can starve the worker and sink threads of the GIL past those bounds on a
    # loaded host (CI runs lost 29, then ~690 of 4,000 across two sinks), so what is
    # asserted is the priority at each stage, not a timing: WARNING+ is lost at a smaller
    # share than INFO at the queue, and never at a larger one at any sink.
    def share(level: str, **where: str) -> float:
        return total(stats["dropped"], level=level, **where) / stats["emitted"][level]

    assert share("info", sink="all") > 0.5, share("info", sink="all")
    assert share("warning", sink="all") < share("info", sink="all") / 3, stats["dropped"]
    for sink in ("file", "slow"):
        assert share("warning", sink=sink) <= share("info", sink=sink), (sink, stats["dropped"])
    lost_early = total(stats["dropped"], sink="all")
    for sink in ("file", "slow"):
        accounted = total(stats["delivered"], sink=sink) + total(stats["dropped"], sink=sink)
        assert accounted + lost_early == emitted, sink


def test_g10_asyncio_loop_never_blocks_while_logging(scenario):
    """Coroutines and loop callbacks log thousands of records while every sink is stuck;
    the event loop's worst tick lag stays tiny."""
    result = scenario(
        script(
            """
        import asyncio
        class Hangs:
            def write(self, records):
                threading.Event().wait()
        loglog.configure(console="text", console_stream="stdout", sinks=[Hangs()],
                         registry=None, shutdown_timeout=0.5)
        log = loglog.get_logger("g10")
        async def ticker(lags):
            last = time.monotonic()
            for _ in range(200):
                await asyncio.sleep(0.005)
                now = time.monotonic()
                lags.append(now - last - 0.005)
                last = now
        async def chatty(n):
            for i in range(2000):
                log.info("from coroutine", n=n, i=i)
                if i % 100 == 0:
                    asyncio.get_running_loop().call_soon(log.warning, "from callback")
                    await asyncio.sleep(0)
        async def main():
            lags = []
            await asyncio.gather(ticker(lags), *(chatty(n) for n in range(10)))
            return lags
        lags = asyncio.run(main())
        report(worst=max(lags), stats=flat_stats())
        """
        ),
        timeout=60,
        stdout=subprocess.PIPE,
    )
    assert result.returncode == 0, result.stderr
    assert result.result["worst"] < 0.25, "the event loop was blocked"
    assert result.result["stats"]["emitted"]["info"] == 20000


def test_g11_http_client_logging_through_stdlib_never_feeds_back(scenario, tmp_path):
    """OTLP export fails and its HTTP stack logs through the stdlib bridge: those records
    reach local sinks only, so once the application stops logging the totals stop growing."""
    port = free_port()
    result = scenario(
        script(
            f"""
        import logging
        os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"] = "1"
        loglog.configure(console=None, file="{tmp_path / "g11.jsonl"}", level="debug",
                         otlp_endpoint="http://127.0.0.1:{port}/v1/logs", registry=None)
        loglog.install_stdlib(level="debug")
        log = loglog.get_logger("g11")
        for i in range(50):
            log.info("application record", i=i)
            logging.getLogger("app").warning("stdlib application record %d", i)
            time.sleep(0.02)
        loglog.flush(timeout=20)
        time.sleep(2.0)
        settled = sum(loglog.stats()["emitted"].values())
        time.sleep(3.0)
        later = sum(loglog.stats()["emitted"].values())
        report(settled=settled, later=later, stats=flat_stats())
        loglog.shutdown(timeout=1)
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    stats = result.result["stats"]
    assert total(stats["dropped"], sink="otlp", reason="recursion") > 0, (
        "the exporter's own records were kept away from it"
    )
    assert total(stats["dropped"], sink="otlp", reason="sink_error") >= 100
    assert result.result["later"] - result.result["settled"] <= 10, "a feedback loop"


def test_g12_warning_survives_sigkill_and_is_delivered_by_the_next_process(scenario, tmp_path):
    """SIGKILL right after WARNING/ERROR calls return (nothing delivered yet): the next
    process with the same spill_dir delivers them — with the traceback — and INFO is not
    promised."""
    spill = tmp_path / "spill"
    out = tmp_path / "after.jsonl"
    killed = scenario(
        script(
            f"""
        import signal
        class Hangs:
            def write(self, records):
                threading.Event().wait()
        loglog.configure(console=None, sinks=[Hangs()], spill_dir="{spill}", registry=None)
        log = loglog.get_logger("victim")
        for i in range(100):
            log.warning("about to die", i=i)
        try:
            raise ValueError("the cause")
        except ValueError:
            log.exception("last words")
        os.kill(os.getpid(), signal.SIGKILL)
        """
        ),
        timeout=30,
    )
    assert killed.returncode == -9
    restart = script(
        f"""
        loglog.configure(console=None, file="{out}", spill_dir="{spill}", registry=None)
        report(flushed=loglog.flush(timeout=10), stats=flat_stats())
        loglog.shutdown()
        """
    )
    after = scenario(restart, timeout=30)
    assert after.returncode == 0, after.stderr
    import json

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    warnings = [r for r in lines if r["msg"] == "about to die"]
    assert sorted(r["i"] for r in warnings) == list(range(100))
    assert all(r.get("replayed") for r in lines)
    last = [r for r in lines if r["msg"] == "last words"]
    assert len(last) == 1 and "ValueError: the cause" in last[0]["exc"]
    assert after.result["stats"]["replayed"]["spool"] == 101

    again = scenario(restart, timeout=30)
    assert again.result["stats"]["replayed"]["spool"] == 0, (
        "delivered records are not replayed twice"
    )
