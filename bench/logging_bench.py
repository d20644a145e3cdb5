"""Benchmark: loglog against the loggers it replaces, on the same records, in one run.

Not a test. Every measurement runs in a child process of its own (loggers are global
state), all in the same run on the same machine, so the ratios are comparable even on a
noisy host. Records are a message and three fields (``stream``, ``frame``, ``ms``).

- caller cost: p50/p99 of one log call (µs), each logger writing to a file, with a paced
  producer: after every 1,000 calls (outside the timed calls) the producer waits until the
  logger has written what it was given, so no logger drops a record — the drops column
  shows it (records given minus lines in the file, for every row);
- an empty call, timed the same way: what the two clock reads and the loop's call cost
  (part of every row);
- the CPython floor: a Python method call with keyword arguments that appends to a
  deque, timed the same way — no logger written in Python can cost less (loglog's C
  level methods skip the Python frame, so they can);
- loglog unpaced: the same calls back to back, where loglog sheds load (counted drops);
- throughput: records/s delivered to a file, measured from the first call until the last
  record is on disk, pinned to one core;
- stalled pipe: 20k calls with stdout a pipe nobody reads — finished (seconds) or hung;
- loglog's caller cost while a sink is stalled, against its own normal cost;
- "loglog, pure-Python path": loglog with ``LOGLOG_PURE_PYTHON=1`` (no C extension), in
  the same run — what the C hot path saves;
- with ``--instructions``: instructions per call on the calling thread, counted by
  valgrind's callgrind — a figure this noisy shared host cannot move.

Usage: ``python -m bench.logging_bench [--quick] [--repeats 5] [--instructions]``.
Prints a table, writes ``bench/results/logging.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FLOOR = "CPython floor (Python method call + deque.append)"
NOTHING = "an empty call (the timing's own cost)"
PURE = "loglog, pure-Python path"
LOGGERS = [
    "loglog",
    PURE,
    "stdlib StreamHandler",
    "stdlib QueueHandler",
    "loguru",
    "loguru enqueue=True",
    "structlog",
    "picologging",
]
RESULTS = Path(__file__).resolve().parent / "results"


# -- child side: one logger, one measurement ------------------------------------------------


class _Floor:
    """What a logger written in Python costs at least: a bound Python method call with
    keyword arguments and one ``deque.append``."""

    def __init__(self) -> None:
        from collections import deque

        self._queue: Any = deque(maxlen=1024)

    def info(self, msg: str, **fields: Any) -> None:
        self._queue.append((msg, fields))


def _pacer(name: str) -> Callable[[], object]:
    """Wait until logger ``name`` has written everything it was given (untimed)."""
    if name.startswith("loglog"):
        import loglog

        return lambda: loglog.flush(timeout=60)
    if name == "loguru enqueue=True":
        from loguru import logger

        return logger.complete
    if name == "stdlib QueueHandler":
        import logging

        handlers = logging.getLogger("bench").handlers
        queue = handlers[0].queue if handlers else None  # type: ignore[attr-defined]

        def drain() -> None:
            while queue is not None and not queue.empty():
                time.sleep(0.0005)

        return drain
    return lambda: None  # synchronous loggers: written when the call returns


def _setup(name: str, stream: Any) -> tuple[Callable[[int], None], Callable[[], None]]:
    """Configure logger ``name`` to write to ``stream``; return (log one record, finish)."""
    if name == NOTHING:

        def call_nothing(i: int) -> None:
            pass

        return call_nothing, lambda: None
    if name == FLOOR:
        floor = _Floor()

        def call_floor(i: int) -> None:
            floor.info("frame decoded", stream="cam1", frame=i, ms=3.2)

        return call_floor, lambda: None
    if name in ("loglog", PURE):
        import loglog

        # PURE runs in a child started with LOGLOG_PURE_PYTHON=1 (see _child_env).
        if (name == "loglog") != loglog.SPEEDUPS:
            raise SystemExit(f"{name}: loglog.SPEEDUPS is {loglog.SPEEDUPS}; build the C path")
        if stream is sys.stdout:
            loglog.configure(console="json", console_stream="stdout", registry=None)
        else:
            loglog.configure(console=None, file=stream.name, registry=None)
        log = loglog.get_logger("bench")

        def call_loglog(i: int) -> None:
            log.info("frame decoded", stream="cam1", frame=i, ms=3.2)

        return call_loglog, lambda: loglog.shutdown(timeout=60)
    if name.startswith("stdlib") or name == "picologging":
        return _setup_stdlib_like(name, stream)
    if name.startswith("loguru"):
        from loguru import logger

        logger.remove()
        logger.add(
            stream,
            level="INFO",
            enqueue="enqueue" in name,
            format="{time} {level} {name} {message} {extra}",
        )

        def call_loguru(i: int) -> None:
            logger.info("frame decoded", stream="cam1", frame=i, ms=3.2)

        return call_loguru, logger.complete if "enqueue" in name else (lambda: stream.flush())
    if name == "structlog":
        import structlog

        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.processors.JSONRenderer(),
            ],
            logger_factory=structlog.WriteLoggerFactory(file=stream),
            cache_logger_on_first_use=True,
        )
        slog = structlog.get_logger("bench")

        def call_structlog(i: int) -> None:
            slog.info("frame decoded", stream="cam1", frame=i, ms=3.2)

        return call_structlog, lambda: stream.flush()
    raise ValueError(name)


def _setup_stdlib_like(name: str, stream: Any) -> tuple[Callable[[int], None], Callable[[], None]]:
    import logging

    module: Any = logging
    if name == "picologging":
        import picologging

        module = picologging
    # %-arguments: the common stdlib idiom, and picologging cannot format extra= fields.
    fmt = module.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    target = module.StreamHandler(stream)
    target.setFormatter(fmt)
    log = module.getLogger("bench")
    log.setLevel(module.INFO)
    log.propagate = False
    finish: Callable[[], None] = target.flush
    if name == "stdlib QueueHandler":
        import logging.handlers
        import queue

        q: queue.Queue[Any] = queue.Queue(-1)
        listener = logging.handlers.QueueListener(q, target)
        listener.start()
        log.addHandler(logging.handlers.QueueHandler(q))

        def finish_queue() -> None:
            listener.stop()
            target.flush()

        finish = finish_queue
    else:
        log.addHandler(target)

    def call(i: int) -> None:
        log.info("frame decoded stream=%s frame=%d ms=%s", "cam1", i, 3.2)

    return call, finish


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000.0


def child_caller(name: str, n: int, stalled_sink: bool, paced: bool) -> dict[str, Any]:
    """p50/p99 of one call; ``paced``: wait (untimed) after every 1,000 calls until the
    logger has written them, so that nothing is dropped."""
    path = Path(tempfile.mkdtemp()) / "caller.log"
    warmup = 5000
    with open(path, "w") as stream:
        call, finish = _setup(name, stream)
        if stalled_sink:
            import threading

            import loglog

            class Stalled:
                def write(self, records: Any) -> None:
                    threading.Event().wait()

            loglog.configure(console=None, file=str(path), sinks=[Stalled()], registry=None)
        pace = _pacer(name) if paced else None
        clock = time.perf_counter_ns
        for i in range(warmup):
            call(i)
        if pace is not None:
            pace()
        samples = []
        for i in range(n):
            started = clock()
            call(i)
            samples.append(clock() - started)
            if pace is not None and i % 1000 == 999:
                pace()
        dropped_by_loglog = None
        if name.startswith("loglog"):
            import loglog

            loglog.shutdown(timeout=0.5 if stalled_sink else 60)
            dropped_by_loglog = sum(loglog.stats()["dropped"].values())
        else:
            finish()
    with open(path) as written:
        lines = sum(1 for _ in written)
    given = warmup + n
    return {
        "p50_us": _percentile(samples, 0.5),
        "p99_us": _percentile(samples, 0.99),
        "mean_us": sum(samples) / len(samples) / 1000.0,
        # Records given minus lines in the file; the floor writes no file.
        "drops": None if name in (FLOOR, NOTHING) else given - lines,
        "drops_counted_by_loglog": dropped_by_loglog,
    }


def child_throughput(name: str, n: int) -> dict[str, Any]:
    """Records/s from the first call until the last record is on disk, all on one core.

    loglog keeps its default bounded queue (10k) and the producer waits (flush) after
    every 5,000 records, so nothing is dropped and memory stays bounded. The other async
    loggers run as they are: their queues are unbounded.
    """
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core for everything
    path = Path(tempfile.mkdtemp()) / "throughput.log"
    with open(path, "w") as stream:
        call, finish = _setup(name, stream)
        pace: Callable[[], object] | None = None
        if name in ("loglog", PURE):
            import loglog

            pace = loglog.flush
        started = time.perf_counter()
        for i in range(n):
            call(i)
            if pace is not None and i % 5000 == 4999:
                pace()
        finish()
        elapsed = time.perf_counter() - started
    with open(path) as written:
        lines = sum(1 for _ in written)
    return {"records_per_s": lines / elapsed, "delivered": lines, "seconds": elapsed}


def child_instructions(name: str, n: int) -> dict[str, Any]:
    """``n`` paced calls after a warm-up, for callgrind to count (see instructions())."""
    path = Path(tempfile.mkdtemp()) / "instructions.log"
    with open(path, "w") as stream:
        call, finish = _setup(name, stream)
        pace = _pacer(name)
        for i in range(2000):
            call(i)
        pace()
        for i in range(n):
            call(i)
            if i % 1000 == 999:
                pace()
        finish()
    return {"calls": n}


def instructions(name: str, n: int) -> float | None:
    """Instructions the *calling* thread executes per log call, counted by valgrind's
    callgrind (deterministic: the same count on a busy or an idle machine): the calling
    thread's total with ``2n`` calls minus with ``n``, divided by ``n``, so start-up and
    set-up cancel out. Other threads (loglog's worker and sinks) are counted apart and
    left out: what the caller pays. None when valgrind is missing or a run failed."""
    totals = []
    for calls in (n, 2 * n):
        directory = Path(tempfile.mkdtemp())
        wrap = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
        wrap += [f"--callgrind-out-file={directory}/cg.%p"]
        # A logger whose queue thread valgrind serialises can take an hour: given up.
        result, _ = _run_child(["instructions", name, str(calls)], timeout=300, wrap=wrap)
        main_thread = sorted(directory.glob("cg.*-01"))
        if result is None or not main_thread:
            return None
        for line in main_thread[0].read_text().splitlines():
            if line.startswith("totals:"):
                totals.append(int(line.split()[1]))
    return (totals[1] - totals[0]) / n if len(totals) == 2 else None


def child_stall(name: str, n: int) -> dict[str, Any]:
    call, finish = _setup(name, sys.stdout)
    started = time.perf_counter()
    for i in range(n):
        call(i)
    calls = time.perf_counter() - started
    finish()
    return {"calls_s": calls}


# -- parent side -----------------------------------------------------------------------------


def _child_env(name: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "LOGLOG_PURE_PYTHON"}
    return {**env, "LOGLOG_PURE_PYTHON": "1"} if name == PURE else env


def _run_child(
    args: list[str], timeout: float, stalled_stdout: bool = False, wrap: list[str] | None = None
) -> tuple[dict[str, Any] | None, float]:
    out = Path(tempfile.mkdtemp()) / "result.json"
    started = time.monotonic()
    proc = subprocess.Popen(
        [*(wrap or []), sys.executable, "-m", "bench.logging_bench", "--child", str(out), *args],
        stdout=subprocess.PIPE if stalled_stdout else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parent.parent,
        env=_child_env(args[1]),
    )
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, time.monotonic() - started
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    elapsed = time.monotonic() - started
    if proc.returncode != 0 or not out.exists():
        return None, elapsed
    return json.loads(out.read_text()), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records (a smoke run)")
    parser.add_argument("--repeats", type=int, default=5, help="caller rows: median of these")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per call under valgrind (slow; deterministic)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        out, mode, name, n = args.child[0], args.child[1], args.child[2], int(args.child[3])
        if mode == "caller":
            result = child_caller(name, n, stalled_sink=False, paced=True)
        elif mode == "caller-unpaced":
            result = child_caller(name, n, stalled_sink=False, paced=False)
        elif mode == "caller-stalled":
            result = child_caller(name, n, stalled_sink=True, paced=False)
        elif mode == "throughput":
            result = child_throughput(name, n)
        elif mode == "instructions":
            result = child_instructions(name, n)
        else:
            result = child_stall(name, n)
        Path(out).write_text(json.dumps(result))
        return 0

    n_caller = 20_000 if args.quick else 200_000
    n_throughput = 50_000 if args.quick else 300_000
    rows: dict[str, dict[str, Any]] = {}
    empty = {"p50_us": None, "p99_us": None, "mean_us": None, "drops": None}
    # The caller rows, floor included, round-robin ``--repeats`` times: on a shared host
    # the floor alone moved between 0.29 and 0.65 µs from one minute to the next, so each
    # logger's figure is the median of its repeats, taken alongside the others'.
    callers: dict[str, list[dict[str, Any]]] = {name: [] for name in [*LOGGERS, FLOOR, NOTHING]}
    for _ in range(args.repeats):
        for name in callers:
            caller, _ = _run_child(["caller", name, str(n_caller)], timeout=300)
            if caller is not None:
                callers[name].append(caller)
    for name in LOGGERS:
        row: dict[str, Any] = {**empty, **_median_row(callers[name])}
        throughput, _ = _run_child(["throughput", name, str(n_throughput)], timeout=300)
        row["records_per_s"] = throughput["records_per_s"] if throughput else None
        stall, seconds = _run_child(["stall", name, "20000"], timeout=15, stalled_stdout=True)
        row["stalled_pipe"] = (
            f"finished {seconds:.1f} s" if stall else f"hung (killed at {seconds:.0f} s)"
        )
        rows[name] = row
        print(f"measured {name}", file=sys.stderr)
    for reference in (FLOOR, NOTHING):
        rows[reference] = {**empty, **_median_row(callers[reference]), "records_per_s": None}
        rows[reference]["stalled_pipe"] = "—"
    unpaced, _ = _run_child(["caller-unpaced", "loglog", str(n_caller)], timeout=300)
    rows["loglog unpaced (sheds load)"] = {
        **(unpaced or empty),
        "records_per_s": None,
        "stalled_pipe": "—",
    }
    stalled, _ = _run_child(["caller-stalled", "loglog", str(n_caller)], timeout=300)
    base = rows["stdlib StreamHandler"]["p50_us"]
    ours = rows["loglog"]
    floor_p50 = rows[FLOOR]["p50_us"]
    summary = {
        "loglog_p50_vs_stdlib_streamhandler": ours["p50_us"] / base if base else None,
        "loglog_p50_over_floor_ratio": (
            ours["p50_us"] / floor_p50 if ours["p50_us"] and floor_p50 else None
        ),
        "loglog_p50_over_floor_us": (
            ours["p50_us"] - floor_p50 if ours["p50_us"] and floor_p50 else None
        ),
        "loglog_p50_us_with_a_stalled_sink": stalled["p50_us"] if stalled else None,
        "loglog_p99_us_with_a_stalled_sink": stalled["p99_us"] if stalled else None,
        "stalled_sink_drops_counted": stalled["drops_counted_by_loglog"] if stalled else None,
        "stalled_over_normal_p50": (stalled["p50_us"] / ours["p50_us"]) if stalled else None,
    }
    _print_table(rows, summary)
    if args.instructions:
        counted = {name: instructions(name, 5000 if args.quick else 20000) for name in callers}
        summary["instructions_per_call"] = counted
        print("\n| logger | instructions per call, calling thread (callgrind) | × floor |")
        print("|---|---:|---:|")
        floor_count = counted.get(FLOOR)
        for name, count in counted.items():
            times = f"{count / floor_count:.2f}" if count and floor_count else "—"
            print(f"| {name} | {'—' if count is None else f'{count:,.0f}'} | {times} |")
    RESULTS.mkdir(exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "records": {"caller": n_caller, "throughput": n_throughput, "stall": 20000},
        "rows": rows,
        "summary": summary,
    }
    (RESULTS / "logging.json").write_text(json.dumps(report, indent=2))
    return 0


def _median_row(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over a logger's repeats, and the spread of its p50."""
    if not repeats:
        return {}
    out: dict[str, Any] = {}
    for key in ("p50_us", "p99_us", "mean_us"):
        values = sorted(r[key] for r in repeats)
        out[key] = values[len(values) // 2]
    p50s = [r["p50_us"] for r in repeats]
    out["p50_range_us"] = [min(p50s), max(p50s)]
    out["repeats"] = len(repeats)
    drops = [r["drops"] for r in repeats]
    out["drops"] = None if None in drops else max(drops)  # the worst repeat
    return out


def _print_table(rows: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    def fmt(value: Any, spec: str) -> str:
        return "—" if value is None else format(value, spec)

    header = ["logger", "caller p50 µs (range)", "caller p99 µs", "caller mean µs", "drops"]
    header += ["to file, 1 core (records/s)", "stdout pipe never read (20k calls)"]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        spread = row.get("p50_range_us")
        p50 = fmt(row["p50_us"], ".2f") + (f" ({spread[0]:.2f}–{spread[1]:.2f})" if spread else "")
        cells = [name, p50, fmt(row["p99_us"], ".2f")]
        cells += [fmt(row.get("mean_us"), ".2f"), fmt(row.get("drops"), ",")]
        cells += [fmt(row["records_per_s"], ",.0f"), row["stalled_pipe"]]
        print("| " + " | ".join(cells) + " |")
    print()
    ratio = fmt(summary["loglog_p50_vs_stdlib_streamhandler"], ".3f")
    print(f"loglog p50 ÷ stdlib StreamHandler p50 (same run): {ratio}")
    above = fmt(summary["loglog_p50_over_floor_us"], ".2f")
    times_floor = fmt(summary["loglog_p50_over_floor_ratio"], ".2f")
    print(f"loglog p50 − the CPython floor: {above} µs (× {times_floor} of the floor)")
    p50 = fmt(summary["loglog_p50_us_with_a_stalled_sink"], ".2f")
    p99 = fmt(summary["loglog_p99_us_with_a_stalled_sink"], ".2f")
    times = fmt(summary["stalled_over_normal_p50"], ".2f")
    drops = fmt(summary["stalled_sink_drops_counted"], ",")
    print(
        f"loglog with a sink stalled (unpaced): p50 {p50} µs, p99 {p99} µs "
        f"(× {times} of its paced p50); {drops} records dropped and counted"
    )


if __name__ == "__main__":
    raise SystemExit(main())
