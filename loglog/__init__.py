"""loglog: the deadlock-safe async logger.

A log call never blocks, never deadlocks and never raises, whatever the sinks do: it puts
a tuple on a bounded lock-free queue and returns. Records are rendered and delivered by
background threads to the console, a file, Loki and OTLP, with batching, backoff, a disk
spill, and a crash spool that keeps WARNING+ records across a SIGKILL. Every drop is
counted, with its reason.

>>> import loglog
>>> loglog.configure(level="INFO", console="text", loki_url=None)     # doctest: +SKIP
>>> log = loglog.get_logger("decoder").bind(stream="cam1")
>>> log.info("frame decoded", frame=12, ms=3.2)
>>> loglog.flush(timeout=2.0)                                        # doctest: +SKIP
True
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

from . import wakeup
from .bridges import StdlibHandler, install_stdlib, loguru_sink
from .config import LogConfig, build_config, build_config_lenient
from .core import CORE, SPEEDUPS, discard
from .errors import ConfigError, LoglogError, MissingExtra, SinkStalled
from .logger import Logger, get_logger
from .redact import redact
from .stats import SpoolStats, Stats
from .stderr import stderr_line
from .types import CRITICAL, DEBUG, ERROR, INFO, TRACE, WARNING, DropReason, Record, Sink

__all__ = [
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "INFO",
    "SPEEDUPS",
    "TRACE",
    "WARNING",
    "ConfigError",
    "DropReason",
    "LogConfig",
    "Logger",
    "LoglogError",
    "MissingExtra",
    "Record",
    "Sink",
    "SinkStalled",
    "SpoolStats",
    "Stats",
    "StdlibHandler",
    "configure",
    "flush",
    "get_logger",
    "install_stdlib",
    "loguru_sink",
    "shutdown",
    "stats",
    "stats_typed",
]

_DEFAULT_REGISTRY: Any = object()
_lock = threading.Lock()  # serialises configure/shutdown; never taken by a log call
_registered: set[int] = set()
_last: Any = None  # the most recent pipeline, for stats() after shutdown
_retired: list[Any] = []  # replaced pipelines whose queues _sweep looks at
_KEEP_ENDED = 4  # ended ones kept that long: a straggler arrives microseconds after the swap


def configure(
    *, registry: Any = _DEFAULT_REGISTRY, sinks: Iterable[object] = (), **options: Any
) -> LogConfig:
    """Start (or restart) logging with ``options``; see :class:`LogConfig` for each one.

    Options not given come from ``LOGLOG_<OPTION>`` environment variables, then defaults.
    ``sinks`` adds your own sinks (objects with ``write(records)``, or plain callables).
    ``registry`` is the prometheus_client registry for loglog's self-metrics (default: the
    global one where prometheus_client is installed, else none; ``None``: none). Raises
    :class:`ConfigError` on any invalid setting, and :class:`MissingExtra` (a ConfigError)
    when an option needs a package that is not installed (``otlp_endpoint``: the ``otlp``
    extra).
    """
    config = build_config(options)
    _start(config, sinks, registry)
    return config


def _start(config: LogConfig, sinks: Iterable[object], registry: Any) -> None:
    """Build and swap in the pipeline for ``config``; raises ConfigError when it cannot."""
    global _last
    from .pipeline import Pipeline

    with _lock:
        try:
            pipeline = Pipeline(config, extra_sinks=sinks)
        except OSError as exc:
            raise ConfigError(
                f"loglog cannot open {exc.filename or 'a file'}: {exc.strerror}; "
                "check the file/spill_dir options point to a writable place",
                option="spill_dir" if config.spill_dir else "file",
            ) from exc
        except TypeError as exc:
            raise ConfigError(f"loglog sinks: {exc}") from exc
        pipeline.start()
        old = CORE.pipeline
        CORE.threshold = config.level  # first: the one assignment that could refuse a value
        CORE.pipeline = _last = pipeline
        CORE.emit = pipeline.emit
        _register_collector(registry)
    if old is not None:
        old.close(config.shutdown_timeout)
        _retired.append(old)
    _sweep(pipeline)


def _sweep(into: Any) -> None:
    """Hand records that reached a replaced pipeline after its last cycle to ``into``.

    A caller may still hold an old pipeline's emit when ``configure()`` swaps it — a
    preempted thread, or a finalizer that reconfigures in the middle of a log call (the
    call then finishes on the old pipeline). Replaced pipelines are looked at by every
    later ``configure()``, ``flush()`` and ``shutdown()``: all whose worker still runs,
    and the last few that have ended.
    """
    for old in list(_retired):
        into.adopt(old.stragglers())
    _prune()


def _prune() -> None:
    ended = [old for old in list(_retired) if not old.worker.alive]
    for old in ended[:-_KEEP_ENDED]:
        with contextlib.suppress(ValueError):
            _retired.remove(old)


def flush(timeout: float = 2.0) -> bool:
    """Wait up to ``timeout`` s until every record logged so far is delivered or counted
    as dropped; ``True`` when that happened in time."""
    pipeline = CORE.pipeline
    if pipeline is None:
        return True
    _sweep(pipeline)  # deque pops and log calls only: safe in a signal handler too
    return bool(pipeline.flush(timeout))


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop, within ``timeout`` seconds (default: the ``shutdown_timeout``
    option, 2 s) even if every sink hangs. Registered to run at exit. Log calls after
    this are ignored until the next ``configure()``."""
    with _lock:
        pipeline = CORE.pipeline
        if pipeline is None:
            return True
        CORE.pipeline = None
        CORE.emit = discard
        CORE.threshold = 10**9
    _sweep(pipeline)
    closed = pipeline.close(pipeline.config.shutdown_timeout if timeout is None else timeout)
    for old in (*_retired, pipeline):  # logged after the last cycle, with nothing to take it
        pipeline.count_stragglers(old.stragglers())  # in the figures stats() reads
    _retired.append(pipeline)
    _prune()
    return bool(closed)


def stats() -> dict[str, Any]:
    """Every count loglog keeps (emitted, delivered and dropped by sink, level, reason…),
    as a plain dict: :meth:`Stats.to_dict` of :func:`stats_typed`; ``{}`` before the first
    ``configure()``."""
    typed = stats_typed()
    return {} if typed is None else typed.to_dict()


def stats_typed() -> Stats | None:
    """Every count loglog keeps, as a :class:`Stats` (attributes instead of keys); ``None``
    before the first ``configure()``.

    >>> s = loglog.stats_typed()                                      # doctest: +SKIP
    >>> s.dropped.get(("all", "info", loglog.DropReason.QUEUE_FULL), 0)  # doctest: +SKIP
    0
    """
    pipeline = CORE.pipeline or _last
    return None if pipeline is None else pipeline.stats()


def _register_collector(registry: Any) -> None:
    if registry is None:
        return
    if registry is _DEFAULT_REGISTRY:
        try:
            from prometheus_client import REGISTRY
        except ImportError:  # the logger alone (no 'prometheus' extra): no self-metrics
            return
        registry = REGISTRY
    if id(registry) in _registered:
        return
    from .metrics import LoglogCollector

    registry.register(LoglogCollector(stats_typed))
    _registered.add(id(registry))


def _lazy_emit(level: int, *args: Any, **kwargs: Any) -> None:
    """The first log call before ``configure()`` configures from the environment."""
    if not _lock.acquire(blocking=False):
        return  # someone is configuring right now (maybe this very thread): skip one record
    try:
        needed = CORE.emit is _lazy_emit
    finally:
        _lock.release()
    if needed:
        _configure_from_environment()
    if level >= CORE.threshold and CORE.emit is not _lazy_emit:
        CORE.emit(level, *args, **kwargs)


def _configure_from_environment() -> None:
    """Configure for a log call: bad ``LOGLOG_*`` values and unusable paths degrade to
    safe defaults, each reported in one stderr line; this never raises."""
    try:
        config, problems = build_config_lenient()
        try:
            _start(config, (), _DEFAULT_REGISTRY)
        except ConfigError as exc:
            # A path that cannot be opened (read-only spill_dir, missing file directory):
            # keep everything else, without files on disk.
            problems.append(f"{exc}; logging without file and spill_dir instead")
            config = dataclasses.replace(config, file=None, spill_dir=None)
            _start(config, (), _DEFAULT_REGISTRY)
    except Exception as exc:  # the last resort: stderr text, defaults
        problems = [f"loglog could not start ({type(exc).__name__}: {exc}); using defaults"]
        try:
            _start(LogConfig(), (), _DEFAULT_REGISTRY)
        except Exception:
            CORE.emit, CORE.threshold = discard, 10**9
    for problem in problems:
        stderr_line(f"{redact(problem)}\n")


def _at_exit() -> None:
    shutdown()


def _after_fork_in_child() -> None:
    """Give the child a pipeline of its own; the parent keeps delivering what it queued."""
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at the moment of fork
    wakeup.after_fork_in_child()
    _retired.clear()  # the parent's: their queues are the parent's to deliver
    pipeline = CORE.pipeline
    if pipeline is None:
        return
    try:
        from .pipeline import Pipeline

        pipeline.abandon()
        child = Pipeline(pipeline.config, extra_sinks=pipeline.extra_sinks, adopt=False)
        child.start()
        CORE.pipeline = child
        CORE.emit = child.emit
        if "multiprocessing" in sys.modules:
            # multiprocessing children leave through os._exit, skipping atexit.
            from multiprocessing import util

            util.Finalize(None, shutdown, exitpriority=-100)
    except Exception:
        CORE.emit = discard


CORE.emit = _lazy_emit
CORE.threshold = 0  # let the first call through, so it can configure
atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
