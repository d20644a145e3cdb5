"""The bounded queue in front of each stage, measured: depth, capacity, wait.

Bounded on purpose: a slow stage fills the queue in front of it, then ``put`` blocks its
producer (backpressure) — which is what makes the bottleneck visible as "full input queue,
empty output queue" — instead of letting memory grow for an hour.

Two lanes, one policy (README, "Overload"): **stream frames first**. A frame (an item no
caller waits on) is always taken before a request (an item with a future), and requests
never take a frame's room: a frame waits only while ``capacity`` *frames* are queued, a
request while the queue holds ``capacity`` items of either kind. A live stream can never
take more than its frame rate, so HTTP gets what the streams leave, and an HTTP flood
cannot starve a stream. The depth gauge counts both lanes, so while frames use the room
requests hold it can read above the capacity (by at most the frames).

A request whose ``deadline`` is too near to be met is dropped when it reaches the head of
its lane (Triton's ``timeout_action: REJECT``, checked at dequeue as Triton does): "too
near" is ``now + reserve > deadline``, ``reserve`` being the time the stages after this
queue still need (kept current by :class:`inference.core.admission.ServiceModel`). Dropped
items go to ``on_expired`` outside the lock, so the stage behind never runs them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..metrics import RuntimeMetrics
from ..types import Item


class StageQueue:
    """A two-lane FIFO of :class:`Item` with a capacity, shared by producer and consumer
    threads (see the module docstring for the lanes and the deadline check)."""

    def __init__(
        self,
        name: str,
        capacity: int,
        metrics: RuntimeMetrics,
        *,
        instrumented: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self._frames: deque[Item] = deque()
        self._requests: deque[Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._clock = clock
        #: Seconds a request still needs after it leaves this queue (set from outside).
        self.reserve = 0.0
        #: Items taken from it so far (the monitor: did work come through this queue?).
        self.passed = 0
        #: Called (outside the lock) with the requests dropped for their deadline.
        self.on_expired: Callable[[list[Item]], None] | None = None
        metrics.queue_capacity.labels(name).set(capacity)
        depth = metrics.queue_depth.labels(name)
        depth.set(0)
        # Decided here, not per call: without instrumentation these are no-ops.
        self._set_depth = depth.set if instrumented else _nothing
        self._observe_wait = (
            metrics.queue_wait_seconds.labels(name).observe if instrumented else _nothing
        )

    def _full_for(self, request: bool) -> bool:
        if request:
            return len(self._frames) + len(self._requests) >= self.capacity
        return len(self._frames) >= self.capacity

    def put(self, item: Item, timeout: float | None = None) -> bool:
        """Append, waiting while the item's lane is full; False on timeout (at once with
        ``timeout=0``) or when closed."""
        request = item.future is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._full_for(request) and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 0.5)
            if self._closed:
                return False
            item.enqueued = self._clock()
            (self._requests if request else self._frames).append(item)
            self._set_depth(len(self._frames) + len(self._requests))
            self._cond.notify_all()
            return True

    def _pop(self, limit: int, expired: list[Item]) -> list[Item]:
        """Under the lock: up to ``limit`` items, frames first; late requests go to
        ``expired`` instead."""
        taken: list[Item] = []
        frames, requests = self._frames, self._requests
        while frames and len(taken) < limit:
            taken.append(frames.popleft())
        if requests:
            # Late requests leave from the head even when frames fill the batch: while
            # streams take everything, a request must not wait past its deadline unanswered.
            latest_start = self._clock() + self.reserve
            while requests:
                head = requests[0]
                if head.deadline is not None and latest_start > head.deadline:
                    expired.append(requests.popleft())
                elif len(taken) < limit:
                    taken.append(requests.popleft())
                else:
                    break
        if taken or expired:
            self.passed += len(taken)
            self._set_depth(len(frames) + len(requests))
            self._cond.notify_all()
        return taken

    def _hand_over(self, taken: list[Item], expired: list[Item]) -> None:
        now = self._clock()
        for item in taken:
            self._observe_wait(now - item.enqueued)
        if expired and self.on_expired is not None:
            self.on_expired(expired)

    def get(self, timeout: float) -> Item | None:
        """Pop the oldest item (frames first), waiting up to ``timeout``; None when
        nothing came (or only requests too late to run)."""
        expired: list[Item] = []
        with self._cond:
            if not self._frames and not self._requests:
                self._cond.wait(timeout)
            taken = self._pop(1, expired)
        self._hand_over(taken, expired)
        return taken[0] if taken else None

    def get_up_to(self, limit: int, timeout: float) -> list[Item]:
        """Pop up to ``limit`` items at once (frames first), waiting up to ``timeout`` for
        the first."""
        expired: list[Item] = []
        with self._cond:
            if not self._frames and not self._requests:
                self._cond.wait(timeout)
            taken = self._pop(limit, expired)
        self._hand_over(taken, expired)
        return taken

    def drain(self) -> list[Item]:
        """Remove and return everything (at shutdown, to fail pending requests)."""
        with self._cond:
            items = list(self._frames) + list(self._requests)
            self._frames.clear()
            self._requests.clear()
            self._set_depth(0)
            self._cond.notify_all()
        return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def requests(self) -> int:
        """Requests (items with a caller) waiting in this queue now."""
        return len(self._requests)

    def __len__(self) -> int:
        return len(self._frames) + len(self._requests)


def one_from(queue: StageQueue) -> Callable[[], list[Item]]:
    """A per-item stage's input: one item from its queue, or none after a short wait
    (the batched stage's is a :class:`~inference.core.batching.Batcher`)."""
    get = queue.get

    def take() -> list[Item]:
        item = get(0.2)
        return [item] if item is not None else []

    return take


def _nothing(*args: object) -> None:
    return None
