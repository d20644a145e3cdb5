"""Bounded rendering: user ``__str__``/``__repr__`` code runs on a helper thread, each
record within a time budget, so a value that blocks cannot stop the worker.

Nearly every record holds only builtins (``str``, numbers, ``None``, containers of them)
and is converted on the worker directly: no user code runs. The others — a message or a
field of another type, an exception — go to a ``loglog-render`` thread. The worker waits
as long as that thread makes progress, but at most ``budget`` seconds on one record; a
record that takes longer is written with ``<timed out>`` in place of each such value, the
helper is abandoned (a daemon thread stuck in user code, counted) and a fresh one takes the
rest. After ``MAX_STUCK`` abandoned helpers, user code is no longer called at all: values
become ``<TypeName>``. A value whose ``__str__`` raises or recurses becomes
``<unrepresentable Type: Error>``; either way, no other record is affected.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from .core import Fmt, RawRecord, as_fields
from .counters import AtomicCounter
from .format import is_plain, plain_fields
from .tracing import plain_context
from .types import Record

#: Helpers abandoned (stuck in user code) before user code is no longer called at all.
MAX_STUCK = 16
TIMED_OUT = "<timed out>"
Convert = Callable[..., Record]


def needs_user_code(raw: RawRecord) -> bool:
    """Whether converting ``raw`` could run user code (worker thread, per record): a
    message or a field value of a type that is not a builtin, an exception, a span of a
    tracer that is not OpenTelemetry's. Looks at types only."""
    msg, fields, bound, context, exc = raw[4], raw[5], raw[6], raw[7], raw[9]
    if exc is not None or not plain_context(context):
        return True
    kind = type(msg)
    if kind is not str and not (kind is Fmt and type(msg.msg) is str and is_plain(msg.args)):
        return True
    fields = as_fields(fields)  # a flat tuple (C) or a dict; anything else: a placeholder
    if type(fields) is dict and fields and not plain_fields(fields):
        return True
    return type(bound) is dict and bool(bound) and not plain_fields(bound)


class _Job:
    __slots__ = ("cancelled", "current", "done", "raws", "results")

    def __init__(self, raws: list[RawRecord]) -> None:
        self.raws = raws
        self.results: list[Record] = []
        self.current = 0
        self.cancelled = False
        self.done = threading.Event()


class BoundedRenderer:
    """Converts records that need user code; see the module docstring."""

    def __init__(self, convert: Convert, budget: float) -> None:
        self._convert = convert
        self.budget = budget
        self.timeouts = AtomicCounter()  # records written with <timed out>
        self.stuck = 0  # helpers abandoned
        self.stopping = False  # set at shutdown: the worker's last cycle waits on no one
        self._jobs: queue.SimpleQueue[_Job] | None = None
        self._names = itertools.count(1)

    def convert_all(self, raws: list[RawRecord]) -> list[Record]:
        """Convert ``raws`` (worker thread), in order, within the budget per record."""
        out: list[Record] = []
        start = 0
        while start < len(raws):
            if self.stuck >= MAX_STUCK or self.stopping:
                out += [self._convert(raw, {}, None) for raw in raws[start:]]
                return out
            jobs = self._jobs or self._start_helper()
            job = _Job(raws[start:])
            jobs.put(job)
            seen = -1
            while not job.done.wait(self.budget):
                if job.current == seen or self.stopping:
                    break  # no progress for a whole budget: stuck in user code
                seen = job.current
            if job.done.is_set():
                return out + job.results
            job.cancelled = True
            index = job.current
            out += job.results[:index]
            out.append(self._convert(raws[start + index], {}, TIMED_OUT))
            self.timeouts.inc()
            self.stuck += 1
            self._jobs = None  # abandoned: it may finish later, harmlessly
            start += index + 1
        return out

    def stop(self) -> None:
        """Call no more user code (shutdown): what is left gets ``<TypeName>``, and a wait
        on a helper ends within one budget."""
        self.stopping = True

    def _start_helper(self) -> queue.SimpleQueue[_Job]:
        jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        thread = threading.Thread(
            target=self._help, args=(jobs,), name=f"loglog-render-{next(self._names)}"
        )
        thread.daemon = True
        thread.start()
        self._jobs = jobs
        return jobs

    def _help(self, jobs: queue.SimpleQueue[_Job]) -> None:
        threads: dict[int, Any] = {}
        while True:
            job = jobs.get()
            for index, raw in enumerate(job.raws):
                if job.cancelled:
                    return
                job.current = index
                job.results.append(self._convert(raw, threads, ""))
            job.done.set()
