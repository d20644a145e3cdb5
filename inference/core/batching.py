"""Dynamic batching in front of ``infer``: up to ``max_batch`` items or ``max_wait``.

A batch opens when its first item is taken from the queue and is dispatched when it is
full or when it has been open for ``max_wait`` — whichever comes first. ``max_batch``
and ``max_wait`` are read on every batch, so a config reload applies to the next one.
"""

from __future__ import annotations

import time

from ..metrics import RuntimeMetrics
from ..types import Item
from .queues import StageQueue


class Batcher:
    """Forms batches from a :class:`StageQueue`."""

    def __init__(
        self,
        queue: StageQueue,
        *,
        max_batch: int,
        max_wait: float,
        metrics: RuntimeMetrics,
        instrumented: bool = True,
    ) -> None:
        self.queue = queue
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._instrumented = instrumented
        self._size = metrics.batch_size
        self._wait = metrics.batch_wait_seconds

    def next_batch(self, idle_timeout: float = 0.2) -> list[Item]:
        """The next batch, or an empty list if no item arrived within ``idle_timeout``."""
        limit = self.max_batch
        batch = self.queue.get_up_to(limit, idle_timeout)
        if not batch:
            return batch
        opened = time.monotonic()
        deadline = opened + self.max_wait
        while len(batch) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batch.extend(self.queue.get_up_to(limit - len(batch), remaining))
        if self._instrumented:
            self._size.observe(len(batch))
            self._wait.observe(time.monotonic() - opened)
        return batch
