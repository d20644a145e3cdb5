"""Ordinary faults: full and read-only disks, bad environment values, hostile values, a
malformed or trickling Loki, corrupt spill files, restarts. Each is a scenario in its own
process with a hard timeout (or an in-process check of one component), and the records
are accounted for exactly: delivered + dropped (by reason) [+ waiting on disk] = emitted.

Disk faults use a real small tmpfs mounted by the test (root only; skipped otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.doubles.loki import LokiServer, TrickleServer
from tests.loglog.prelude import total

pytestmark = pytest.mark.slow

PRELUDE = """
import json, os, sys, threading, time
import loglog
from tests.loglog.prelude import flat_stats, report, total
"""


def script(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: a real filesystem that fills up (ENOSPC) and can turn read-only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-R", "-l", str(mnt)], capture_output=True, timeout=30)


def _fill(directory: Path) -> None:
    """Fill the filesystem of ``directory`` to the last byte."""
    with open(directory / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    with open(directory / "filler2", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0")
        except OSError:
            pass


def _spilled(spill: Path) -> dict[str, int]:
    """Records, by level, that wait in spill files (not delivered, not dropped)."""
    levels: dict[str, int] = {}
    for path in (spill / "loki").glob("*.batch"):
        header = json.loads(path.read_bytes().partition(b"\n")[0])
        for level, count in header["levels"].items():
            levels[level] = levels.get(level, 0) + count
    return levels


# -- 1. full and read-only disks ------------------------------------------------------------


def test_a_full_disk_never_kills_the_process_and_every_record_is_counted(scenario, small_disk):
    """spill_dir and the log file on a full filesystem: WARNING calls do not die of SIGBUS
    (the spool cannot be allocated: loglog runs without it and says so once), file writes
    fail as counted ``disk_full`` drops, and the Loki spill drops are counted too."""
    spill = small_disk / "spill"
    spill.mkdir()
    _fill(small_disk)
    port = free_port()  # nothing listens: Loki is down
    result = scenario(
        script(
            f"""
        loglog.configure(console=None, file="{small_disk / "app.jsonl"}",
                         spill_dir="{spill}", loki_url="http://127.0.0.1:{port}",
                         loki_batch_wait=0.05, loki_timeout=0.5, registry=None)
        log = loglog.get_logger("full")
        for i in range(2000):
            (log.warning if i % 4 == 0 else log.info)("on a full disk", i=i, pad="p" * 200)
        flushed = loglog.flush(timeout=20)
        loglog.shutdown(timeout=2)
        report(flushed=flushed, spool=loglog.stats()["spool"], stats=flat_stats())
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, f"died with {result.returncode}: {result.stderr[-2000:]}"
    data = result.result
    assert data["spool"]["enabled"] is False and "ENOSPC" in data["spool"]["error"]
    assert result.stderr.count("crash spool unavailable") == 1, result.stderr
    stats = data["stats"]
    emitted = sum(stats["emitted"].values())
    assert emitted >= 2000  # and loglog's own warnings about the disk
    assert total(stats["dropped"], sink="file", reason="disk_full") > 0
    for sink in ("file", "loki"):
        accounted = total(stats["delivered"], sink=sink) + total(stats["dropped"], sink=sink)
        assert accounted + sum(_spilled(spill).values()) * (sink == "loki") == emitted, sink
    assert data["flushed"] is True


def test_a_disk_that_fills_up_while_loki_is_down_never_kills_the_process(scenario, small_disk):
    """An INFO-heavy program with Loki down fills the disk with its spill; loglog's own
    warnings and the program's go on (the spool was allocated at start), every record
    that could not be spilled is counted ``disk_full``."""
    spill = small_disk / "spill"
    port = free_port()
    result = scenario(
        script(
            f"""
        loglog.configure(console=None, spill_dir="{spill}", loki_url="http://127.0.0.1:{port}",
                         loki_batch_wait=0.02, loki_batch_bytes=64 * 1024, loki_timeout=0.5,
                         spool_slots=64, registry=None)
        log = loglog.get_logger("filling")
        for i in range(60000):
            log.info("filling the disk", i=i, pad="q" * 400)
            if i % 1000 == 0:
                log.warning("still alive", i=i)
                time.sleep(0.02)  # let the sink spill as it goes
        loglog.shutdown(timeout=5)
        report(spool=loglog.stats()["spool"], stats=flat_stats())
        """
        ),
        timeout=120,
    )
    assert result.returncode == 0, f"died with {result.returncode}: {result.stderr[-2000:]}"
    data = result.result
    assert data["spool"]["enabled"] is True
    stats = data["stats"]
    emitted = sum(stats["emitted"].values())
    assert total(stats["dropped"], sink="loki", reason="disk_full") > 0, "the disk must fill"
    lost_early = total(stats["dropped"], sink="all")
    spilled = sum(_spilled(spill).values())
    delivered = total(stats["delivered"], sink="loki")
    assert delivered + total(stats["dropped"], sink="loki") + spilled + lost_early == emitted


def test_a_spill_dir_turned_read_only_mid_run_counts_every_record(scenario, small_disk):
    """The Loki spill directory becomes read-only (a bind mount remounted ro) while records
    flow: every batch that cannot be spilled is a counted ``disk_error`` drop."""
    spill = small_disk / "spill"
    loki_dir = spill / "loki"
    loki_dir.mkdir(parents=True)
    port = free_port()
    result = scenario(
        script(
            f"""
        import subprocess
        loglog.configure(console=None, spill_dir="{spill}", loki_url="http://127.0.0.1:{port}",
                         loki_batch_wait=0.02, loki_timeout=0.5, registry=None)
        log = loglog.get_logger("ro")
        def burst(n0):
            for i in range(n0, n0 + 2000):
                log.info("record", i=i)
                if i % 200 == 0:
                    time.sleep(0.03)
        burst(0)
        loglog.flush(timeout=5)
        d = "{loki_dir}"
        subprocess.run(["mount", "--bind", d, d], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", d], check=True)
        burst(2000)
        loglog.shutdown(timeout=5)
        report(stats=flat_stats())
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stats = result.result["stats"]
    assert stats["emitted"]["info"] == 4000
    assert total(stats["dropped"], sink="loki", reason="disk_error") > 0
    spilled = sum(_spilled(spill).values())
    dropped = total(stats["dropped"], sink="loki") + total(stats["dropped"], sink="all")
    emitted = sum(stats["emitted"].values())  # with loglog's own warnings about the disk
    assert total(stats["delivered"], sink="loki") + dropped + spilled == emitted


# -- 2. a log call never raises, whatever the environment -----------------------------------


def test_bad_environment_values_degrade_to_defaults_with_one_line_each(scenario, tmp_path):
    """Bad LOGLOG_CAPACITY, LOGLOG_LOKI_URL (port 99999, with a password) and an unusable
    LOGLOG_SPILL_DIR: the first log call neither raises nor dies; one stderr line names
    each option and its fix, the password never appears, and records are delivered."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {
        "LOGLOG_CAPACITY": "lots",
        "LOGLOG_LOKI_URL": "http://admin:hunter2@loki:99999",
        "LOGLOG_SPILL_DIR": str(blocker / "spill"),
        "LOGLOG_CONSOLE": "json",
    }
    result = scenario(
        script(
            """
        raised = None
        try:
            loglog.get_logger("env").info("first call", n=1)
            loglog.get_logger("env").warning("second call", n=2)
        except BaseException as exc:
            raised = repr(exc)
        flushed = loglog.flush(timeout=5)
        report(raised=raised, flushed=flushed, stats=flat_stats())
        """
        ),
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.result["raised"] is None
    assert result.result["flushed"] is True
    stderr = result.stderr
    assert "hunter2" not in stderr
    lines = stderr.splitlines()
    for option in ("LOGLOG_CAPACITY", "LOGLOG_LOKI_URL"):
        assert len([line for line in lines if option in line]) == 1, option
    assert "spill_dir" in stderr
    assert '"msg":"first call"' in stderr and '"msg":"second call"' in stderr
    assert total(result.result["stats"]["delivered"], sink="console") == 2


# -- 3. hostile values ----------------------------------------------------------------------


def test_a_blocking_str_neither_blocks_the_caller_nor_stops_other_records(scenario, tmp_path):
    """With the crash spool on, WARNING and INFO records carrying a value whose __str__
    blocks: calls return at once, the value is written ``<timed out>``, every other record
    is delivered, and a __str__ that raises (also as a dict key) costs only itself."""
    out = tmp_path / "hostile.jsonl"
    result = scenario(
        script(
            f"""
        release = threading.Event()
        class Blocks:
            def __str__(self):
                release.wait(30)
                return "finally"
        class Raises:
            def __str__(self):
                raise TypeError("no")
            __hash__ = object.__hash__
        class LogsWarning:
            def __str__(self):
                loglog.get_logger("inner").warning("from str", v=self)
                return "logs"
        loglog.configure(console=None, file="{out}", spill_dir="{tmp_path / "spill"}",
                         render_timeout=0.2, registry=None)
        log = loglog.get_logger("hostile")
        worst = 0.0
        for i in range(50):
            t = time.perf_counter()
            log.warning("blocking warning", i=i, v=Blocks())
            log.info("blocking info", i=i, v=Blocks())
            log.info("bad key", i=i, d={{Raises(): 1, "ok": 2}})
            log.warning("self-logging", i=i, v=LogsWarning())
            log.info("plain", i=i)
            worst = max(worst, time.perf_counter() - t)
        flushed = loglog.flush(timeout=60)
        release.set()
        report(worst=worst, flushed=flushed, timeouts=loglog.stats()["render_timeouts"],
               stats=flat_stats())
        loglog.shutdown(timeout=2)
        """
        ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = result.result
    assert data["worst"] < 0.5, "a log call ran user code on the caller's thread"
    assert data["flushed"] is True
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_msg: dict[str, list[dict]] = {}
    for line in lines:
        by_msg.setdefault(line["msg"], []).append(line)
    for msg in ("blocking warning", "blocking info", "bad key", "self-logging", "plain"):
        assert sorted(r["i"] for r in by_msg[msg]) == list(range(50)), msg
    assert all(r["v"] in ("<timed out>", "<Blocks>") for r in by_msg["blocking info"])
    assert data["timeouts"] >= 1
    assert all(r["d"]["ok"] == 2 for r in by_msg["bad key"])
    stats = data["stats"]
    assert sum(stats["emitted"].values()) < 50 * 5 * 3, "self-logging must not multiply"
    emitted = sum(stats["emitted"].values())
    assert total(stats["delivered"], sink="file") + total(stats["dropped"]) == emitted
    assert stats["internal_errors"] == 0


# -- 4. Loki: deadlines, malformed answers, a dying sender ----------------------------------


def test_a_trickling_loki_is_cut_off_by_the_push_deadline(scenario):
    """Loki answers one byte every 0.2 s and never finishes: each push ends at its overall
    deadline, retries run out, and every record is counted — no silent stop."""
    with TrickleServer() as trickle:
        result = scenario(
            script(
                f"""
            loglog.configure(console=None, loki_url="{trickle.url}", loki_timeout=1.0,
                             loki_max_retries=1, loki_backoff_min=0.05, loki_backoff_max=0.1,
                             loki_batch_wait=0.05, registry=None)
            log = loglog.get_logger("trickle")
            for i in range(100):
                log.info("record", i=i)
            started = time.monotonic()
            flushed = loglog.flush(timeout=20)
            report(flushed=flushed, waited=time.monotonic() - started, stats=flat_stats(),
                   restarts=loglog.stats()["sink_restarts"])
            loglog.shutdown(timeout=2)
            """
            ),
            timeout=60,
        )
        connections = trickle.connections
    assert result.returncode == 0, result.stderr
    assert result.result["flushed"] is True, "a push must not outlive its deadline"
    assert connections >= 2, "one push, then one retry"
    stats = result.result["stats"]
    assert total(stats["dropped"], sink="loki", reason="retries_exhausted") == 100
    assert result.result["restarts"] == {}, "a timeout is an answer, not a crash"


@pytest.mark.parametrize("header", ["\u00b2", "Mon, 99 Foo 2026 25:61:61", "1e999", "-3"])
def test_a_malformed_retry_after_does_not_stop_shipping(scenario, header):
    """A 429 whose Retry-After is garbage (a unicode digit, an impossible date…) is
    retried with our own backoff, and shipping continues."""
    with LokiServer() as loki:
        loki.state.script = [(429, header), (503, header)]
        result = scenario(
            script(
                f"""
            loglog.configure(console=None, loki_url="{loki.url}", loki_backoff_min=0.05,
                             loki_backoff_max=0.2, loki_batch_wait=0.05, registry=None)
            log = loglog.get_logger("retry")
            for i in range(50):
                log.info("record", i=i)
            first = loglog.flush(timeout=15)
            for i in range(50, 100):
                log.info("record", i=i)
            report(first=first, flushed=loglog.flush(timeout=15), stats=flat_stats())
            loglog.shutdown()
            """
            ),
            timeout=40,
        )
        assert result.returncode == 0, result.stderr
        assert result.result["first"] is True and result.result["flushed"] is True
        assert sorted(e.json()["i"] for e in loki.state.entries) == list(range(100))
        assert result.result["stats"]["internal_errors"] == 0


def test_a_sender_that_dies_is_restarted_counted_and_keeps_shipping():
    """The Loki client raises (a bug, a library surprise) twice: the sender thread is
    restarted each time, ``loglog_sink_restarts_total`` says so, and nothing is lost."""
    import loglog
    from loglog.batches import MemoryQueue
    from loglog.config import build_config
    from loglog.sinks.loki import LokiSink
    from loglog.sinks.loki_http import PushResult

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def push(self, payload: bytes) -> PushResult:
            self.calls += 1
            if self.calls <= 2:
                raise RuntimeError("surprise")
            return PushResult(204)

        def close(self) -> None:
            pass

    config = build_config({"loki_url": "http://127.0.0.1:9", "loki_batch_wait": 0.05}, environ={})
    sink = LokiSink(config, MemoryQueue(10**6), client=Flaky())
    sink.name = "loki"
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    loglog.configure(console=None, sinks=[sink], registry=registry)
    log = loglog.get_logger("flaky")
    for i in range(20):
        log.info("record", i=i)
    assert loglog.flush(timeout=20)
    stats = loglog.stats()
    assert stats["sink_restarts"] == {"loki": 2}
    assert stats["delivered"][("loki", "info")] == 20
    assert 'loglog_sink_restarts_total{sink="loki"} 2.0' in generate_latest(registry).decode()


# -- 5. crash recovery, ownership, the spool bound ------------------------------------------

VICTIM = script(
    """
    import signal
    spill, n, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    class Hangs:
        def write(self, records):
            threading.Event().wait()
    loglog.configure(console=None, sinks=[Hangs()], spill_dir=spill, spool_slots=slots,
                     registry=None)
    log = loglog.get_logger("victim")
    for i in range(n):
        log.warning("acknowledged", i=i)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)

RESTART = script(
    """
    spill, out = sys.argv[1], sys.argv[2]
    go = sys.argv[3] if len(sys.argv) > 3 else None
    while go and not os.path.exists(go):
        pass  # spin: start as close together as the scheduler allows
    loglog.configure(console=None, file=out, spill_dir=spill, registry=None)
    report(flushed=loglog.flush(timeout=20), stats=flat_stats())
    loglog.shutdown()
    """
)


def _messages(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigkill_in_a_warning_flood_keeps_the_last_spool_slots_and_counts_the_rest(
    scenario, tmp_path
):
    """1000 WARNINGs, nothing delivered, SIGKILL: the next process replays exactly the
    last ``spool_slots`` (64) of them and counts the other 936 as ``lost_in_crash``."""
    spill = tmp_path / "spill"
    killed = scenario(VICTIM, args=[str(spill), "1000", "64"], timeout=30)
    assert killed.returncode == -9
    out = tmp_path / "after.jsonl"
    after = scenario(RESTART, args=[str(spill), str(out)], timeout=30)
    assert after.returncode == 0, after.stderr
    survivors = sorted(r["i"] for r in _messages(out) if r["msg"] == "acknowledged")
    assert survivors == list(range(936, 1000))
    stats = after.result["stats"]
    assert stats["replayed"]["spool"] == 64
    assert total(stats["dropped"], sink="all", reason="lost_in_crash") == 936


@pytest.mark.parametrize("round_", range(3))
def test_processes_restarting_together_replay_each_record_once(scenario, tmp_path, round_):
    """Four processes start at the same instant on the directory a dead process left: each
    of the dead one's records is replayed by exactly one of them. (A race: three rounds, so
    that a broken claim is caught in most runs.)"""
    import time

    spill = tmp_path / "spill"
    killed = scenario(VICTIM, args=[str(spill), "512", "512"], timeout=30)
    assert killed.returncode == -9
    go = tmp_path / "go"
    script_path = tmp_path / "restart.py"
    script_path.write_text(RESTART)
    outs = [tmp_path / f"out{k}.jsonl" for k in range(4)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = []
    for k, out in enumerate(outs):
        env_k = {**env, "RESULT": str(tmp_path / f"r{k}.json")}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script_path), str(spill), str(out), str(go)], env=env_k
            )
        )
    try:
        time.sleep(1.0)  # every interpreter is up and spinning on the go file
        go.write_text("go")
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    replayed = [r["i"] for out in outs for r in _messages(out) if r["msg"] == "acknowledged"]
    assert sorted(replayed) == list(range(512)), "each record exactly once"


def test_configure_twice_on_one_spill_dir_delivers_nothing_twice(scenario, tmp_path):
    """A second configure() with the same spill_dir while the first still holds pending
    WARNINGs: the new pipeline does not replay the live one's spool; each record once."""
    out = tmp_path / "twice.jsonl"
    result = scenario(
        script(
            f"""
        class Slow:
            name = "slow"
            local = True
            def write(self, records):
                time.sleep(0.3)
        loglog.configure(console=None, file="{out}", sinks=[Slow()],
                         spill_dir="{tmp_path / "spill"}", registry=None)
        log = loglog.get_logger("twice")
        for i in range(200):
            log.warning("w", i=i)
        loglog.configure(console=None, file="{out}", spill_dir="{tmp_path / "spill"}",
                         registry=None, shutdown_timeout=10)
        report(flushed=loglog.flush(timeout=20), stats=flat_stats())
        loglog.shutdown(timeout=10)
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = [r["i"] for r in _messages(out) if r["msg"] == "w"]
    assert sorted(seen) == list(range(200)), "each record exactly once"
    assert result.result["stats"]["replayed"]["spool"] == 0


def test_corrupt_spool_and_spill_files_are_moved_aside_counted_and_never_reread(scenario, tmp_path):
    """Files a dead owner left, damaged in every way (garbage, truncated, wrong types in
    a valid JSON header, a bad slot size in the name): configure() never raises, each is
    moved to corrupt/ and counted, and the next start reads none of them again."""
    spill = tmp_path / "spill"
    (spill / "loki").mkdir(parents=True)
    dead = "4242-deadbeef"
    (spill / f"{1:020d}-{dead}-8192.spool").write_bytes(os.urandom(10000))
    (spill / f"{2:020d}-{dead}-0.spool").write_bytes(b"")
    (spill / f"{3:020d}-{dead}-x.spool").write_bytes(b"junk")
    (spill / "loki" / f"{4:020d}-{dead}.batch").write_bytes(b"\x00garbage")
    (spill / "loki" / f"{5:020d}-{dead}.batch").write_bytes(
        b'{"levels": {"info": "many"}, "oldest_ns": 1}\n{}'
    )
    (spill / "loki" / f"{6:020d}-{dead}.batch").write_bytes(
        b'{"levels": {"warning": 2}, "oldest_ns": 1}\n{"streams": [{"stream": {}, "values": '
    )
    port = free_port()
    start = script(
        f"""
        loglog.configure(console=None, spill_dir="{spill}", loki_url="http://127.0.0.1:{port}",
                         registry=None)
        report(stats=flat_stats())
        loglog.shutdown(timeout=1)
        """
    )
    first = scenario(start, timeout=30)
    assert first.returncode == 0, first.stderr
    corrupt = total(first.result["stats"]["dropped"], sink="all", reason="corrupt")
    assert corrupt >= 6
    assert len(list((spill / "corrupt").iterdir())) == 6
    second = scenario(start, timeout=30)
    assert second.returncode == 0, second.stderr
    assert total(second.result["stats"]["dropped"], reason="corrupt") == 0


# -- 6. flush -------------------------------------------------------------------------------


def test_flush_true_means_a_big_warning_is_already_written(scenario, tmp_path):
    """A 10 MB WARNING with the spool on (the call spends a while spooling it) while the
    worker keeps cycling: once flush() returns True, the record is in the file."""
    out = tmp_path / "big.jsonl"
    result = scenario(
        script(
            f"""
        loglog.configure(console=None, file="{out}", spill_dir="{tmp_path / "spill"}",
                         poll_interval=0.005, registry=None)
        log = loglog.get_logger("big")
        found = []
        for k in range(10):
            for j in range(10):  # keep the worker cycling every few milliseconds
                log.info("chatter", j=j)
                time.sleep(0.002)
            log.warning("big %d " % k + "b" * 10_000_000)
            flushed = loglog.flush(timeout=30)
            with open("{out}") as handle:
                text = handle.read()
            found.append(flushed and f'"msg":"big {{k}} ' in text)
        report(found=found)
        loglog.shutdown()
        """
        ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.result["found"] == [True] * 10
