"""The worker thread: drain the callers' queues, render, fan out, release the crash spool.

It wakes when a caller writes a byte to its pipe (WARNING+, half-full queue, flush) or
after ``poll_interval`` at the latest. Each cycle takes everything queued, restores
emission order (WARNING+ and DEBUG/INFO travel in separate queues), turns raw tuples into
:class:`~loglog.types.Record` — rendering values, formatting tracebacks, resolving trace
ids, all off the caller's thread — and offers the batch to every sink runner.

A record emitted on a loglog thread is ``internal``; its values are rendered without
calling user code, which is what ends a ``__repr__`` that logs after one level.

No code of a user's runs on this thread, by construction: it looks at the *type* of what
a record holds before anything else. Names and field mappings are exact ``str`` and plain
``dict`` (loglog/plain.py says where they became so; one that is not yet is copied here,
by type checks and ``str.__str__`` only, before any dict operation); a record that holds a
value of another type (or an exception, or a span of a tracer that is not
OpenTelemetry's) goes to the bounded render helper (loglog/render.py). What this thread
hands to the sinks holds builtins only.
A value costs only its own record: an int of more than 4,300 digits, NaN and infinities
become text; a record time outside what every sink can write (0 to 2**63-1 ns, up to the
year 2262) never reaches the fast path — the bridges replace it before queuing — and the
slow path replaces any other with the time the worker received it, the original kept in
the ``invalid_ts`` field.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING

from . import wakeup
from .core import MAX_TIME_NS, Fmt, RawRecord, as_fields, fields_dict
from .counters import AtomicCounter
from .format import (
    MAX_INT,
    MAX_TEXT,
    MIN_INT,
    format_exc,
    format_exc_safe,
    int_text,
    is_plain,
    placeholder,
    render_fields,
    render_key,
    render_value,
)
from .plain import exact_name, safe_fields
from .render import BoundedRenderer, needs_user_code
from .tracing import default_context, plain_context, span_ids
from .types import Record

if TYPE_CHECKING:
    from .runner import SinkRunner
    from .spool import Spool

_THREADS = threading._active  # type: ignore[attr-defined]  # ident → Thread, read-only here
_by_seq = itemgetter(0)
_IDLE_POLL_MS = 1000.0
_NO_IDS = (None, None)
_NO_CONTEXT = default_context()  # what the caller captures outside any span


def thread_of(ident: int) -> tuple[str, bool]:
    """(thread name, whether it is one of loglog's own threads) for a thread id.

    Read from the thread's ``__dict__``, not through ``Thread.name``, which a subclass of
    ``Thread`` may have made a property of its own (its code would run here)."""
    thread = _THREADS.get(ident)
    name = None
    if thread is not None:
        try:
            name = dict.get(object.__getattribute__(thread, "__dict__"), "_name")
        except Exception:
            name = None
    if type(name) is not str:
        name = f"thread-{ident}"
    return name, name.startswith("loglog-")


def convert(raw: RawRecord, threads: dict[int, tuple[str, bool]], mode: str | None = "") -> Record:
    """Turn a caller's raw tuple into a Record; never raises.

    ``threads`` caches :func:`thread_of` for one cycle: within a cycle a thread id cannot
    be reused by a new thread, so the cache is exact. ``mode`` ``""`` renders values with
    user code (the render helper's thread only); ``None`` without (``<TypeName>``); any
    other text replaces every value that would need user code (``<timed out>``).
    """
    try:
        return _convert(raw, threads, mode)
    except Exception as exc:  # one bad record never costs another
        try:
            return _convert(raw, threads, f"<unrepresentable: {type(exc).__name__}>")
        except Exception:
            seq, stamp, level, name = raw[0], raw[1], raw[2], raw[3]
            stamp = stamp if type(stamp) is int and 0 <= stamp <= MAX_TIME_NS else 0
            return Record(seq, stamp, level, exact_name(name), "<unrepresentable record>", {})


def convert_plain(raw: RawRecord, threads: dict[int, tuple[str, bool]]) -> Record | None:
    """The worker's fast path: a Record when ``raw`` holds only a string message and
    scalar builtin fields (nearly always), else None. Runs no user code."""
    seq, stamp, level, name, msg, fields, bound, context, ident, exc, _slot = raw
    # What emit queues (loglog/core.py): a time from 0 to MAX_TIME_NS, fields as a flat
    # tuple or a dict, bound fields None or a logger's plain dict of exact names.
    if exc is not None or type(name) is not str:
        return None
    if type(fields) is tuple:
        fields = fields_dict(fields)  # the C level methods': exact names (checked in C)
    elif type(fields) is dict:
        for key in fields:  # the Python path's **fields: exact before any merge
            if type(key) is not str:
                return None
    else:
        return None
    if type(msg) is not str:
        if type(msg) is Fmt and type(msg.msg) is str and is_plain(msg.args):
            msg = str(msg)  # builtins only: no user code runs
        else:
            return None
    merged = {**bound, **fields} if bound else fields
    for value in merged.values():
        kind = type(value)
        if kind is str:
            if len(value) > MAX_TEXT:
                return None
        elif kind is int:
            if not MIN_INT < value < MAX_INT:  # over 4,300 digits: no repr() for it
                return None
        elif kind is float:
            if value - value != 0.0:  # NaN and ±inf
                return None
        elif not (kind is bool or value is None):
            return None
    if "trace_id" in merged:
        return None
    known = threads.get(ident)
    if known is None:
        known = threads[ident] = thread_of(ident)
    if context is None or context is _NO_CONTEXT:
        trace_id, span_id = _NO_IDS
    elif plain_context(context):
        trace_id, span_id = span_ids(context)
    else:
        return None  # a vendor's span: asked for its ids on the render helper
    return Record(
        seq, stamp, level, name, msg, merged if merged else {}, trace_id, span_id,
        known[0], None, known[1], False, ident,
    )  # fmt: skip


_PENDING_RENDER = Record(-1, 0, 0, "", "", {})  # a place held for the bounded renderer


def _convert(raw: RawRecord, threads: dict[int, tuple[str, bool]], mode: str | None) -> Record:
    seq, stamp, level, name, msg, fields, bound, context, ident, exc, _slot = raw
    known = threads.get(ident)
    if known is None:
        known = threads[ident] = thread_of(ident)
    thread_name, internal = known
    # Exact names and plain dicts before any dict operation (loglog/plain.py).
    merged = safe_fields(as_fields(fields))
    if bound is not None:
        merged = {**safe_fields(bound), **merged}
    safe = internal or mode != ""
    if type(stamp) is not int or not 0 <= stamp <= MAX_TIME_NS:
        merged["invalid_ts"] = int_text(stamp) if type(stamp) is int else placeholder(stamp)
        stamp = time.time_ns()
    if type(msg) is Fmt and type(msg.msg) is str and is_plain(msg.args):
        msg = str(msg)  # builtins only: no user code runs
    if mode:  # a placeholder for everything that would run user code
        if type(msg) is not str:
            msg = mode
        merged = {render_key(k, safe=True): (v if is_plain(v) else mode) for k, v in merged.items()}
    name = exact_name(name)
    if type(msg) is str:
        message = msg
    else:
        rendered = render_value(msg, safe=safe)
        message = rendered if type(rendered) is str else str(rendered)
    trace_id, span_id = span_ids(context, foreign=not safe)
    if trace_id is None and "trace_id" in merged:
        # No span is current: an explicit trace_id= field (e.g. an item's, logged on a
        # worker thread that never entered its span) becomes the record's trace id.
        merged = dict(merged)
        trace_id = str(render_value(merged.pop("trace_id"), safe=safe) or "") or None
        span_id = str(render_value(merged.pop("span_id", ""), safe=safe) or "") or None
    exc_text = (format_exc_safe(exc) if safe else format_exc(exc)) if exc is not None else None
    return Record(
        seq,
        stamp,
        level,
        name,
        message,
        render_fields(merged, safe=safe) if merged else {},
        trace_id,
        span_id,
        thread_name,
        exc_text,
        internal,
        False,
        ident,
    )


class Worker:
    """Owns the ``loglog-worker`` thread; see the module docstring."""

    def __init__(
        self,
        *,
        low: deque[RawRecord],
        high: deque[RawRecord],
        seq: AtomicCounter,
        runners: list[SinkRunner],
        spool: Spool | None,
        pipe: wakeup.Pipe,
        poll_interval: float,
        replay: list[tuple[Record, int]],
        idle: list[bool],
        render_timeout: float = 0.1,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self._low = low
        self._on_exit = on_exit
        self._high = high
        self._seq = seq
        self._runners = runners
        self._spool = spool
        self._pipe = pipe
        self._poll_ms = poll_interval * 1000
        self._idle = idle
        self._replay = replay
        # (upto at dispatch, seq, slot): a slot is released once every runner is durable
        # past the watermark its record was dispatched with.
        self._slots: deque[tuple[int, int, int]] = deque()
        self.dispatched = -1
        self.cycles = 0  # cycles started; flush() waits for one that starts after it
        self.cycle_done = -1  # index of the last finished cycle
        self.offered_cycle = -1  # index of the last cycle that offered records to runners
        self.renderer = BoundedRenderer(convert, render_timeout)
        self.errors = AtomicCounter()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="loglog-worker")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self._on_exit is not None:
                with contextlib.suppress(Exception):
                    self._on_exit()  # hands the wake pipe back, however late the exit

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._pipe.read, select.POLLIN)
        pipe_lost = False
        quiet = 0
        while True:
            stopping = self._stopping
            try:
                timeout = self._poll_ms
                if quiet >= 3 and not self._slots and not pipe_lost:
                    # Nothing for a while: sleep long, but announce it first and look again,
                    # so a record appended in between is not left waiting.
                    self._idle[0] = True
                    if len(self._low) or len(self._high):
                        self._idle[0] = False
                    else:
                        timeout = _IDLE_POLL_MS
                if stopping:
                    pass  # told to stop before this pass began: one last cycle, no wait
                elif pipe_lost:
                    time.sleep(self._poll_ms / 1000)  # no pipe to wait on: poll the queues
                elif poller.poll(timeout):
                    if wakeup.still_ours(self._pipe.read, self._pipe.read_id):
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._pipe.read, 4096)
                    else:
                        # Closed under us (os.closerange) and perhaps reused for a file:
                        # never read it again, and do not spin on POLLNVAL.
                        pipe_lost = True
                        poller.unregister(self._pipe.read)
                self._idle[0] = False
                quiet = 0 if self.cycle() else quiet + 1
            except Exception:
                self.errors.inc()  # a bug here must not end delivery
            if stopping:
                return

    def cycle(self) -> bool:
        """Dispatch what is queued; False when there was nothing to do."""
        index = self.cycles
        self.cycles = index + 1
        try:
            return self._cycle(index)
        finally:
            self.cycle_done = index

    def _cycle(self, index: int) -> bool:
        upto = self._seq.value - 1
        raw = self._take(self._high) + self._take(self._low)
        if not raw and not self._replay and upto == self.dispatched:
            self._release()
            return False
        raw.sort(key=_by_seq)
        threads: dict[int, tuple[str, bool]] = {}
        records: list[Record] = []
        hostile: list[RawRecord] = []
        places: list[int] = []
        for item in raw:
            try:
                record = convert_plain(item, threads)
                hostile_item = record is None and needs_user_code(item)
            except Exception:  # a malformed record (say, bound fields that are no mapping)
                record, hostile_item = None, True  # the bounded renderer gives a placeholder
            if record is None:
                if hostile_item:
                    places.append(len(records))
                    hostile.append(item)
                    record = _PENDING_RENDER
                else:  # builtins only, but not the fast path's: rendered here, safely
                    record = convert(item, threads, None)
            records.append(record)
        internal = any(known[1] for known in threads.values())
        if hostile:
            for place, rendered in zip(places, self.renderer.convert_all(hostile), strict=True):
                records[place] = rendered
                internal = internal or rendered.internal
        if self._replay:
            records[:0] = [record for record, _ in self._replay]
            self._slots.extend(
                (upto, record.seq, slot) for record, slot in self._replay if slot >= 0
            )
            self._replay = []
        for runner in self._runners:
            runner.offer(records, upto, internal, index)
        self.offered_cycle = index
        self.dispatched = upto
        self._slots.extend((upto, item[0], item[-1]) for item in raw if item[-1] >= 0)
        self._release()
        return True

    @staticmethod
    def _take(queue: deque[RawRecord]) -> list[RawRecord]:
        # Pop exactly what is there now; callers keep appending concurrently.
        popleft = queue.popleft
        return [popleft() for _ in range(len(queue))]

    def _release(self) -> None:
        if self._spool is None or not self._slots:
            return
        durable = min((runner.durable_seq for runner in self._runners), default=self.dispatched)
        slots = self._slots
        while slots and slots[0][0] <= durable:
            _, _seq, token = slots.popleft()
            self._spool.release(token)

    def stop(self, deadline: float) -> None:
        """Run one last cycle and exit; wait until ``deadline`` at most."""
        self._stopping = True
        wakeup.wake_if_ours(self._pipe)
        self._thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        """Whether the worker thread is still running (it may read its wake pipe)."""
        return self._thread.is_alive()

    def release_now(self) -> None:
        """Release what became durable after the thread stopped (at shutdown)."""
        self._release()
