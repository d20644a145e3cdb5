"""Admission control: every HTTP request has a deadline, and one that cannot meet it is
refused at once instead of waiting to be answered after its client gave up.

The policy (README, "Overload"), after Triton's queue policy and the SRE book's
"Handling Overload":

- **A deadline per request**: ``request_timeout_s`` after it arrived (by default 0.8 × the
  latency SLO, ``latency_slo_s``: the rest is the margin for the stages after the last
  queue, the network and the client), or the ``X-Request-Timeout`` header in seconds, capped
  at ``max_request_timeout_s`` (Triton's ``allow_timeout_override``, which may lower but
  not raise; here the cap is explicit).
- **Refused at once when it cannot be met**: the predicted answer time — the requests
  already admitted ÷ the rate the pipeline serves them (:mod:`inference.core.service`, or the
  requests answered in the last :data:`SERVED_WINDOW` seconds if more), plus what one
  item alone needs — past a share of the time left (:data:`ADMIT_SHARE`, cut when
  admitted requests expire anyway, grown back as they are answered) is a 503 with
  ``Retry-After`` and a body naming the limit, before the body is read (reason
  ``predicted_wait``); a full queue is the same (``queue_full``).
- **Dropped before the engine when it can no longer be met**: a queue drops a request
  whose deadline is too near (``expired``, :mod:`inference.core.queues`). The engine never runs
  an item whose answer nobody waits for, so under any overload it serves requests that
  still have a client.
- **Streams first**: frames are taken before requests at every queue, so HTTP gets the
  rate the streams leave; the model subtracts the streams' frame rate from every stage
  they pass through.

Not adopted: CoDel's "drop when the sojourn time stays above a target" and adaptive
LIFO — with a deadline on every request the sojourn bound is the deadline itself, and a
queue kept under one deadline's worth of work does not need LIFO to stay fresh; a
concurrency limit from measured latency (Netflix ``concurrency-limits``, Envoy) — the
stage ledger measures service time directly, which converges faster than a gradient
(the share of the deadline a prediction may use is adjusted AIMD-style, though).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..errors import InputError, ShedError
from ..metrics import RuntimeMetrics
from ..types import ENGINE_STAGE, STAGES, Item
from .service import ServiceModel

if TYPE_CHECKING:
    from .pipeline import Pipeline

#: The per-request deadline header (seconds, e.g. ``0.5``).
TIMEOUT_HEADER = "x-request-timeout"
#: Every ``reason`` of inference_requests_shed_total (series exist from the start).
SHED_REASONS = ("predicted_wait", "queue_full", "expired", "max_connections")
#: The default deadline's share of the latency SLO (the rest is margin).
DEADLINE_SHARE = 0.8
#: What X-Request-Timeout may hold: a plain decimal number of seconds (float() alone also
#: reads "1_000", "infinity" and non-ASCII digits), of a bounded length.
_SECONDS = re.compile(r"[0-9]{1,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?|\.[0-9]{1,20}")
#: Longest Retry-After sent, in seconds.
MAX_RETRY_AFTER = 30
#: A request is admitted when its predicted answer time is within this share of the time
#: left to its deadline. The rest absorbs how fast service rates move: ±40 % within
#: seconds on a shared host, measured here; at 1.0 a quarter of the admitted requests
#: expired in their queue under a 2× overload, and were answered late instead of at once.
ADMIT_SHARE = 0.6
#: Each request that expires in a queue anyway (the prediction was optimistic) shrinks the
#: share by this factor, down to MIN_SHARE; each one answered grows it back by SHARE_STEP
#: (additive increase, multiplicative decrease, as TCP and Netflix's concurrency-limits
#: do). When streams take most of the engine, HTTP's rate is a small difference of two
#: noisy ones, and a fixed share let a tenth of the admitted requests expire.
SHARE_CUT = 0.75
MIN_SHARE = 0.15
SHARE_STEP = 0.02
#: … and it grows back by this much per second in any case: after an overload that cut
#: it, nothing may be admitted for a while (so nothing answered), and a 0.5× load 10 s
#: later found it still at the floor and was refused whole.
SHARE_REGROW = 0.1
#: Requests answered over this many seconds are a floor under the modelled rate: what was
#: just served can be served (the model, a difference of noisy rates when streams take
#: most of the engine, can be far below it).
SERVED_WINDOW = 2.0


class Admission:
    """Deadlines, the admit-or-shed decision, and the counts (see the module docstring).

    ``enqueue(item)`` hands an admitted item to the pipeline without blocking (False: the
    queue is full). ``clock`` is the clock of deadlines and of the queues' checks.

    >>> future = admission.submit(item, admission.deadline("0.5"))  # or raises ShedError
    """

    def __init__(
        self,
        model: ServiceModel,
        enqueue: Callable[[Item], bool],
        metrics: RuntimeMetrics,
        *,
        latency_slo: float,
        default_timeout: float,
        max_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
        log_every: float = 10.0,
    ) -> None:
        self.model = model
        self._enqueue = enqueue
        self.latency_slo = latency_slo
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self._clock = clock
        self._log = log
        self._log_every = log_every
        self._lock = threading.Lock()
        self.inflight = 0  # admitted HTTP requests not answered yet
        #: The share of the time left that a predicted answer may take (ADMIT_SHARE, less
        #: after requests expired).
        self.share = ADMIT_SHARE
        self._share_at = clock()
        self._served: deque[float] = deque()  # when requests were answered (clock)
        self._since = clock()
        self._admitted = metrics.requests_admitted_total
        self._shed = {reason: metrics.requests_shed_total.labels(reason) for reason in SHED_REASONS}
        # Read when Prometheus scrapes (the /metrics handler runs on the loop, as checks do).
        metrics.admission_capacity_items_per_second.set_function(self._capacity_now)
        self._logged_at = clock()
        self._unlogged: dict[str, int] = {}

    # -- deadlines -----------------------------------------------------------------------

    def deadline(self, header: str | None, arrived: float | None = None) -> float:
        """The request's deadline on this clock: ``arrived`` (default now) plus the
        ``X-Request-Timeout`` header's seconds (capped at the maximum) or the default."""
        now = self._clock() if arrived is None else arrived
        if header is None:
            return now + self.default_timeout
        text = header.strip()
        # Read whole: cutting it first made "0.5<40 spaces>garbage" a valid 0.5.
        if not _SECONDS.fullmatch(text):
            shown = repr(text[:40]) + ("…" if len(text) > 40 else "")
            raise InputError(f"X-Request-Timeout {shown} is not a number of seconds: send e.g. 0.5")
        seconds = float(text)
        if not math.isfinite(seconds) or seconds <= 0:
            raise InputError(f"X-Request-Timeout must be a positive number of seconds, got {text}")
        return now + min(seconds, self.max_timeout)

    def remaining(self, deadline: float) -> float:
        """Seconds left until ``deadline`` (negative once past)."""
        return deadline - self._clock()

    # -- the decision --------------------------------------------------------------------

    def http_rate(self) -> float:
        """Requests/s the pipeline serves: the model's, or what it just served if more."""
        now = self._clock()
        served = self._served
        while served and served[0] < now - SERVED_WINDOW:
            served.popleft()
        if now - self._since < SERVED_WINDOW:
            return self.model.http_rate
        return max(self.model.http_rate, len(served) / SERVED_WINDOW)

    def predicted(self) -> float:
        """Seconds until a request admitted now would be answered (inf: never)."""
        rate = self.http_rate()
        if rate <= 0:
            return math.inf
        return self.model.floor + self.inflight / rate

    def check(self, deadline: float) -> None:
        """Raise ShedError (reason ``predicted_wait``) when a request admitted now would
        not be answered well before ``deadline`` (within :attr:`share` of the time left);
        counts it."""
        self.model.refresh()
        now = self._clock()
        predicted = self.predicted()
        budget = deadline - now
        with self._lock:
            self.share = min(ADMIT_SHARE, self.share + SHARE_REGROW * (now - self._share_at))
            self._share_at = now
            share = self.share
        if predicted <= share * budget or (self.inflight == 0 and predicted <= budget):
            return  # (alone, a request is tried whenever it can make it: progress)
        floor = self.model.floor
        if floor > budget:
            enough = math.ceil(floor / ADMIT_SHARE * 100) / 100
            # Not the load: alone, with nothing queued, a request takes longer than this
            # deadline (before, "past its capacity … retry after 1s", on an idle server).
            self._refuse(
                ShedError(
                    f"this request's deadline is {max(0.0, budget):.3f}s away, shorter than "
                    f"one request alone takes here now (about {floor:.3f}s with nothing queued; "
                    "/v1/profile has each stage's time): "
                    "it cannot be met under any load, and a retry will not help. Send a "
                    f"longer X-Request-Timeout (at least {enough:g}s), "
                    "or raise request_timeout_s if the request sent none",
                    reason="predicted_wait",
                    limit="request_timeout_s",
                    retry_after=MAX_RETRY_AFTER,
                )
            )
        # When the backlog will have drained enough for a request like this one.
        retry = MAX_RETRY_AFTER if math.isinf(predicted) else math.ceil(predicted / share - budget)
        rate, frames = self.http_rate(), self.model.frame_rate
        retry = min(max(1, retry), MAX_RETRY_AFTER)
        if rate <= 0:
            why = (
                f"would not be answered: live streams take the whole capacity ({frames:.1f} "
                "frames/s, served first); delete a stream or add servers"
            )
        else:
            streams = f" after the streams' {frames:.1f} frames/s" if frames >= 0.5 else ""
            why = (
                f"would be answered in about {predicted:.2f}s ({self.inflight} requests ahead, "
                f"served at {rate:.1f}/s{streams})"
            )
        self._refuse(
            ShedError(
                f"the server is past its capacity: a request admitted now {why}; this "
                f"request's deadline is {max(0.0, budget):.2f}s away (request_timeout_s, or "
                f"X-Request-Timeout up to max_request_timeout_s {self.max_timeout:g}s), and "
                f"requests are admitted when predicted within {share:.0%} of it; retry "
                f"after {retry}s",
                reason="predicted_wait",
                limit="request_timeout_s",
                retry_after=retry,
            )
        )

    def submit(self, item: Item, deadline: float) -> Future[Item]:
        """Admit ``item`` with ``deadline`` and hand it to the pipeline, or raise ShedError.
        The future resolves with the item, or with ShedError if it expires in a queue."""
        self.check(deadline)
        item.deadline = deadline
        item.future = Future()
        with self._lock:
            self.inflight += 1
        if not self._enqueue(item):
            with self._lock:
                self.inflight -= 1
            self._refuse(
                ShedError(
                    "the server's first queue is full (queue_capacity): retry after 1s",
                    reason="queue_full",
                    limit="queue_capacity",
                )
            )
        self._admitted.inc()
        item.future.add_done_callback(self._answered)
        return item.future

    def _answered(self, future: Future[Item]) -> None:
        expired = (
            not future.cancelled()
            and isinstance(error := future.exception(), ShedError)
            and error.reason == "expired"
        )
        if not expired and not future.cancelled() and future.exception() is None:
            self._served.append(self._clock())
        with self._lock:
            self.inflight -= 1
            if expired:
                self.share = max(MIN_SHARE, self.share * SHARE_CUT)
                self._share_at = self._clock()  # regrowth counts from the cut
            elif self.share < ADMIT_SHARE:
                self.share = min(ADMIT_SHARE, self.share + SHARE_STEP)
        if expired:
            # Counted by the queue that dropped it; the loop's next log line says so (this
            # runs on a stage thread: no log from here, and a lost +1 only touches the log).
            self._unlogged["expired"] = self._unlogged.get("expired", 0) + 1

    def _refuse(self, error: ShedError) -> None:
        self.count_shed(error.reason)
        raise error

    def count_shed(self, reason: str) -> None:
        """Count a shed request (one of :data:`SHED_REASONS`) and note it for the log."""
        self._shed[reason].inc()
        self._note(reason)

    def _note(self, reason: str) -> None:
        """While shedding, one log line per ``log_every`` seconds says how many and why,
        not one per request."""
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        now = self._clock()
        if self._log is not None and now - self._logged_at >= self._log_every:
            self._log.warning(
                "shedding requests",
                seconds=round(now - self._logged_at, 1),
                predicted_s=round(min(self.predicted(), 1e6), 3),
                http_capacity_per_s=round(min(self.http_rate(), 1e6), 1),
                **{f"shed_{key}": value for key, value in sorted(self._unlogged.items())},
            )
            self._unlogged = {}
            self._logged_at = now

    # -- reporting -----------------------------------------------------------------------

    def _capacity_now(self) -> float:
        self.model.refresh()
        rate = self.http_rate()
        return rate if math.isfinite(rate) else 0.0

    def describe(self) -> dict[str, Any]:
        """For ``/v1/profile`` (and ``loglog loadgen --rps 1.5x``)."""
        self.model.refresh()
        rate, total = self.http_rate(), self.model.total_rate
        return {
            "latency_slo_s": self.latency_slo,
            "request_timeout_s": self.default_timeout,
            "max_request_timeout_s": self.max_timeout,
            "http_capacity_items_per_s": _rounded(rate),
            "pipeline_capacity_items_per_s": _rounded(total),
            "stream_items_per_s": round(self.model.frame_rate, 2),
            "requests_in_flight": self.inflight,
            "admit_share": round(self.share, 3),
            "predicted_answer_s": _rounded(self.predicted(), 3),
            "stage_ms_per_item": {
                stage: round(seconds * 1000, 3) for stage, seconds in self.model.per_item.items()
            },
            "policy": "stream frames first; HTTP requests get the rest, each within its deadline",
        }


def _rounded(value: float, digits: int = 2) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def admission_for(
    pipeline: Pipeline,
    *,
    latency_slo: float,
    default_timeout: float,
    max_timeout: float,
    log: Any = None,
) -> Admission:
    """Admission control over ``pipeline`` (on its deadline clock): its stage ledgers
    measure the service times, the engine's calibrated speed stands in until they have."""
    from .pipeline import FIRST_AFTER_DECODE

    batch = pipeline.batcher.max_batch
    calibration = pipeline.calibration
    model = ServiceModel(
        {name: stage.ledger for name, stage in pipeline.stages.items()},
        workers=pipeline.workers,
        frames=lambda: pipeline.frames_in.value,
        shared=frozenset(STAGES[STAGES.index(FIRST_AFTER_DECODE) :]),
        batch_wait=lambda: pipeline.batcher.max_wait,
        initial={ENGINE_STAGE: (calibration.latency(batch) / batch, calibration.latency(1))},
        queues=pipeline.queues,
        clock=pipeline.clock,
    )
    return Admission(
        model,
        lambda item: pipeline.submit(item, timeout=0, kind="request"),
        pipeline.metrics,
        latency_slo=latency_slo,
        default_timeout=default_timeout,
        max_timeout=max_timeout,
        clock=pipeline.deadline_clock,
        log=log,
    )
