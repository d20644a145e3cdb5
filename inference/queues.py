"""The bounded queue in front of each stage, measured: depth, capacity, wait.

Bounded on purpose: a slow stage fills the queue in front of it, then ``put`` blocks its
producer (backpressure) — which is what makes the bottleneck visible as "full input queue,
empty output queue" — instead of letting memory grow for an hour.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .metrics import RuntimeMetrics
from .types import Item


class StageQueue:
    """A FIFO of :class:`Item` with a capacity, shared by producer and consumer threads."""

    def __init__(
        self, name: str, capacity: int, metrics: RuntimeMetrics, *, instrumented: bool = True
    ) -> None:
        self.name = name
        self.capacity = capacity
        self._items: deque[Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        metrics.queue_capacity.labels(name).set(capacity)
        depth = metrics.queue_depth.labels(name)
        depth.set(0)
        # Decided here, not per call: without instrumentation these are no-ops.
        self._set_depth = depth.set if instrumented else _nothing
        self._observe_wait = (
            metrics.queue_wait_seconds.labels(name).observe if instrumented else _nothing
        )

    def put(self, item: Item, timeout: float | None = None) -> bool:
        """Append, waiting while the queue is full; False on timeout or when closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._items) >= self.capacity and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 0.5)
            if self._closed:
                return False
            item.enqueued = time.monotonic()
            self._items.append(item)
            self._set_depth(len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Item | None:
        """Pop the oldest item, waiting up to ``timeout``; None when nothing came."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
                if not self._items:
                    return None
            item = self._items.popleft()
            self._set_depth(len(self._items))
            self._cond.notify_all()
        self._observe_wait(time.monotonic() - item.enqueued)
        return item

    def get_up_to(self, limit: int, timeout: float) -> list[Item]:
        """Pop up to ``limit`` items at once, waiting up to ``timeout`` for the first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            taken = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
            if taken:
                self._set_depth(len(self._items))
                self._cond.notify_all()
        now = time.monotonic()
        for item in taken:
            self._observe_wait(now - item.enqueued)
        return taken

    def drain(self) -> list[Item]:
        """Remove and return everything (at shutdown, to fail pending requests)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._set_depth(0)
            self._cond.notify_all()
        return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


def _nothing(*args: object) -> None:
    return None
