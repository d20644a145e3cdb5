"""The pipeline's accounting: what each stage call did, and how each item ended.

A call is accounted once, where it ended: its ledger entry closes (busy time, items,
errors, drill seconds and, for the engine, the calibrated seconds it should have taken),
its duration goes into the stage's histogram with the item's trace as exemplar, and each
item keeps its milliseconds per stage. A call that ran in a decode process is accounted
the same way, on this process's clock (:meth:`Accounting.remote`).

An item ends in one place, :meth:`Accounting.finish`: counted as completed, taken out
of the in-flight table, counted by outcome (ok, error, rejected), its span ended, its
caller answered. The items a queue drops past their deadline (:meth:`Accounting.expired`)
and those left at shutdown (:meth:`Accounting.abandon`) end here too.

Built without instrumentation (benchmarks of the bare loop), :meth:`~Accounting.observe`
is replaced at set-up by a function that does nothing, so the loop tests nothing per item.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any, Protocol

from loglog.counters import AtomicCounter

from ..analysis.stats import StageLedger
from ..analysis.tracing import Tracing
from ..errors import InferenceError, InputError, ShedError
from ..metrics import RuntimeMetrics
from ..types import Item


class Metered(Protocol):
    """What accounting reads of a stage built by the pipeline."""

    @property
    def name(self) -> str: ...

    ledger: StageLedger
    duration: Any  # Histogram child
    items: Any  # Counter child
    errors: Any  # Counter child
    #: The engine's stage: calibrated seconds for a batch of n (engine efficiency).
    expected: Callable[[int], float] | None


class Accounting:
    """Stage calls into ledgers, metrics and spans; items' ends into the request counters."""

    def __init__(
        self, metrics: RuntimeMetrics, tracing: Tracing, *, log: Any, instrumented: bool
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.log = log
        self.instrumented = instrumented
        #: Items out of the pipeline, counted in every mode.
        self.completed = AtomicCounter()
        #: id(item) → created (monotonic), for the items in the pipeline now.
        self.inflight: dict[int, float] = {}
        self._requests = {s: metrics.requests_total.labels(s) for s in ("ok", "error", "rejected")}
        self._latency = metrics.request_duration_seconds
        self._shed_expired = metrics.requests_shed_total.labels("expired")
        if not instrumented:
            self.observe = _observe_nothing  # type: ignore[method-assign]

    def request_ages(self) -> list[float]:
        """Ages of the items in the pipeline now (entered, not finished)."""
        now = time.monotonic()
        return [now - created for created in tuple(self.inflight.values())]

    # -- a stage's call -------------------------------------------------------------------

    def observe(
        self, stage: Metered, items: list[Item], token: int, ended: float, drilled: float
    ) -> None:
        """The call entered in ``stage``'s ledger as ``token`` ended at ``ended`` with
        ``items`` (those with an error failed in it)."""
        errors = sum(item.error is not None for item in items)
        ok = len(items) - errors
        engine = stage.expected is not None and ok > 0
        started = stage.ledger.leave(
            token,
            ended,
            ok=ok,
            errors=errors,
            drilled=drilled,
            engine=engine,
            expected_seconds=stage.expected(len(items)) if engine else 0.0,  # type: ignore[misc]
        )
        self.record(stage, items, started, ended, errors)

    def remote(
        self,
        stage: Metered,
        item: Item,
        started: float,
        ended: float,
        drilled: float,
        then: Callable[[], object] | None = None,
    ) -> None:
        """A call of ``stage`` on ``item`` ran in a decode process from ``started`` to
        ``ended`` (this pipeline's clock): account it as if it had run here. ``then`` runs
        under the stage ledger's lock (see StageLedger.add_call)."""
        if not self.instrumented:
            if then is not None:
                then()
            return
        errors = int(item.error is not None)
        stage.ledger.add_call(
            started, ended, ok=1 - errors, errors=errors, drilled=drilled, then=then
        )
        self.record(stage, [item], started, ended, errors)

    def record(
        self, stage: Metered, items: list[Item], started: float, ended: float, errors: int
    ) -> None:
        """The call's duration, items and errors into the stage's metrics and the items."""
        seconds = ended - started
        name = stage.name
        exemplar: dict[str, str] | None = None
        for item in items:
            item.stage_ms[name] = seconds * 1000.0
            if item.span is not None:
                self.tracing.stage(item, name, started, ended)
                exemplar = {"trace_id": item.trace_id or ""}
        stage.duration.observe(seconds, exemplar)
        stage.items.inc(len(items) - errors)
        if errors:
            stage.errors.inc(errors)

    # -- an item's end --------------------------------------------------------------------

    def finish(self, item: Item) -> None:
        """The end of an item's road: count it, end its span, answer its caller."""
        self.completed.inc()
        if self.instrumented:
            self.inflight.pop(id(item), None)
            self.outcome(item)
        self.tracing.finish(item)
        _settle(item)

    def outcome(self, item: Item) -> None:
        """Count a finished item by status; its end-to-end latency when it succeeded."""
        error = item.error
        if error is None:
            self._requests["ok"].inc()
            exemplar = {"trace_id": item.trace_id} if item.trace_id else None
            self._latency.observe(time.monotonic() - item.created, exemplar)
            return
        self._requests["rejected" if isinstance(error, InputError) else "error"].inc()
        if self.log is not None:
            self.log.warning(
                "item failed", stream=item.stream, frame=item.frame,
                error=f"{type(error).__name__}: {error}", trace_id=item.trace_id,
            )  # fmt: skip

    def abandon(self, item: Item) -> None:
        """At shutdown: a waiting HTTP caller gets an error; a stream frame is counted."""
        if item.future is not None:
            item.error = InferenceError("the server is shutting down; retry elsewhere")
            self.finish(item)
        else:
            self.inflight.pop(id(item), None)
            self.metrics.frames_dropped_total.labels(item.stream, "shutdown").inc()

    def expired(self, items: list[Item]) -> None:
        """Requests a queue dropped because their deadline would pass before they could
        finish: each caller gets a 503 now, and the engine never runs them."""
        for item in items:
            item.error = ShedError(
                "dropped before the engine: this request's deadline (request_timeout_s, or "
                "the X-Request-Timeout header) would pass before it finished; the server is "
                "past its capacity, retry after 1s",
                reason="expired",
                limit="request_timeout_s",
            )
            self._shed_expired.inc()
            self.inflight.pop(id(item), None)
            self.completed.inc()
            self.tracing.finish(item)
            _settle(item)


def _settle(item: Item) -> None:
    """Answer the item's caller, if one waits: a caller that gave up (its HTTP handler
    cancelled the future past the deadline) may have cancelled it meanwhile."""
    future = item.future
    if future is None or future.done():
        return
    with contextlib.suppress(InvalidStateError):
        if item.error is None:
            future.set_result(item)
        else:
            future.set_exception(item.error)


def _observe_nothing(
    stage: Metered, items: list[Item], token: int, ended: float, drilled: float
) -> None:
    return None
