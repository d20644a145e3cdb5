"""Ship records to Loki: validate, batch by bytes and time, spill, retry with backoff.

Two threads share this sink. The sink thread (``write``/``tick``) validates each record,
groups it by stream and seals batches into a queue — in memory, or on disk when a spill
directory is set, *before* anything is sent. A sender thread of its own ships the oldest
batch and is the only one that waits on the network, so a Loki that hangs or is down only
makes batches wait (on disk, with a spill), never the sink thread or a caller.

Validated before sending, because Loki answers a partly-invalid request with a 400 after
storing the valid part (a retry would duplicate it): records older than ``loki_max_age``
are dropped (``too_old``), lines over ``loki_max_line_bytes`` are truncated and counted,
an entry more than five minutes ahead of this host's clock (Loki refuses those past its
ten-minute grace) is sent with this host's time, its own in the line's ``original_ts``;
label count and names were checked at configure time.

Every record this sink takes on is counted once, through its :class:`~loglog.ledger.Ledger`
— also the ones the sender still holds when ``shutdown()`` returns (``shutdown``, or
``spilled`` when they wait on disk for the next process).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..backoff import backoff_delay
from ..batches import Batch, MemoryQueue, SpillQueue
from ..config import LogConfig
from ..counters import Tally
from ..format import JsonRenderer, iso_utc
from ..ledger import Ledger
from ..logger import Logger
from ..types import WARNING, DropReason, Record, level_name
from .loki_http import LokiClient, PushResult

_WARN_EVERY = 10.0
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: A batch that makes the sender fail this many times in a row is dropped (``sink_error``):
#: a bug triggered by one batch must not stop shipping for good.
_MAX_CRASHES_PER_BATCH = 3
#: How far ahead of this host's clock an entry may be; Loki refuses more than its
#: ``creation_grace_period`` (10 minutes by default) with a 400 for the whole push.
_MAX_AHEAD_NS = 5 * 60 * 10**9


class LokiSink:
    """A network sink for Loki's push API. See the module docstring for the threading."""

    local = False
    name = "loki"

    def __init__(
        self,
        config: LogConfig,
        queue: MemoryQueue | SpillQueue,
        *,
        client: LokiClient | None = None,
        host: str | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        assert config.loki_url is not None
        self._cfg = config
        self.queue = queue
        self._client = client or LokiClient(
            config.loki_url, timeout=config.loki_timeout, tenant=config.loki_tenant
        )
        self._clock = clock
        self._render = JsonRenderer(timestamp=False)
        self._iso = iso_utc()
        self._static = dict(config.loki_labels)
        self._dynamic = config.loki_dynamic_labels
        self._host = host or socket.gethostname()
        self._labels: dict[tuple[str, ...], dict[str, str]] = {}
        self.tally = Tally()  # written by the sink thread: truncations
        self.sender_tally = Tally()  # written by the sender thread: restarts
        #: Every record's outcome, counted once (read by the runner, which holds records
        #: here as it takes them from its inbox, and settles the rest at shutdown).
        self.ledger = Ledger()
        self.tallies = (self.tally, self.sender_tally, self.ledger.tally)
        self._log = Logger("loglog.loki")
        self._warned: dict[str, float] = {}
        self._reset_open()
        self._cond = threading.Condition()
        self._stopping = False
        self.restarts = 0  # times the sender loop died on an exception and was restarted
        self._sender = threading.Thread(target=self._supervise, name="loglog-loki-sender")
        self._sender.daemon = True
        self._sender.start()

    # -- sink thread -------------------------------------------------------------------

    def _reset_open(self) -> None:
        self._open: dict[tuple[str, ...], list[tuple[int, list[Any], int]]] = {}
        self._open_bytes = 0
        self._open_min = -1
        self._open_max = -1
        self._open_since = 0.0

    def write(self, records: Sequence[Record]) -> None:
        """Place each record in an open batch, or count it as dropped: one record that
        cannot be placed costs only itself (``sink_error``), never its batch."""
        now = self._clock()
        oldest_allowed = now - int(self._cfg.loki_max_age * 1e9)
        for record in records:
            try:
                self._place(record, now, oldest_allowed)
            except Exception:
                self.ledger.drop(record.levelname, DropReason.SINK_ERROR)
                continue
            if self._open_bytes >= self._cfg.loki_batch_bytes:
                self._seal()

    def _place(self, record: Record, now: int, oldest_allowed: int) -> None:
        stamp = record.time_ns
        if stamp < oldest_allowed:
            self.ledger.drop(record.levelname, DropReason.TOO_OLD)
            return
        if stamp > now + _MAX_AHEAD_NS:  # Loki would refuse it (a 400 for the whole push)
            stamp = now
            record = dataclasses.replace(
                record, fields={**record.fields, "original_ts": self._iso(record.time_ns)}
            )
        line = self._line(record)
        entry: list[Any] = [str(stamp), line]
        if self._cfg.loki_structured_metadata and record.trace_id:
            entry.append({"trace_id": record.trace_id, "span_id": record.span_id or ""})
        key = self._stream_key(record)
        # Nothing below raises: the record is placed whole or not at all.
        if not self._open:
            self._open_since = time.monotonic()
            self._open_min = record.seq
        self._open.setdefault(key, []).append((stamp, entry, record.level))
        self._open_max = record.seq
        self._open_bytes += len(line) + 40

    def _line(self, record: Record) -> str:
        line = self._render(record)
        limit = self._cfg.loki_max_line_bytes
        if len(line) * 4 <= limit or len(line.encode()) <= limit:
            return line
        self.tally.add(("truncated",))
        size = len(line.encode())
        short = dataclasses.replace(
            record,
            message=record.message[: limit // 4],
            fields={"truncated_from_bytes": size},
            exc_text=(record.exc_text or "")[-limit // 4 :] or None,
        )
        line = self._render(short)
        return (
            line if len(line.encode()) <= limit else line.encode()[:limit].decode("utf-8", "ignore")
        )

    def _stream_key(self, record: Record) -> tuple[str, ...]:
        values = []
        for label in self._dynamic:
            if label == "level":
                values.append(level_name(record.level))
            elif label == "host":
                values.append(self._host)
            else:
                values.append(record.logger[:200] or "root")
        return tuple(values)

    def _stream_labels(self, key: tuple[str, ...]) -> dict[str, str]:
        labels = self._labels.get(key)
        if labels is None:
            labels = dict(self._static)
            labels.update(zip(self._dynamic, key, strict=True))
            self._labels[key] = labels
        return labels

    def tick(self, force: bool = False) -> None:
        if self._open and (
            force or time.monotonic() - self._open_since >= self._cfg.loki_batch_wait
        ):
            self._seal()

    def _seal(self) -> None:
        open_streams, min_seq, max_seq = self._open, self._open_min, self._open_max
        self._reset_open()
        try:
            batch = self._encode(open_streams, min_seq, max_seq)
        except Exception as exc:  # a bug here costs this batch, counted, not the sink
            for entries in open_streams.values():
                for _stamp, _entry, level in entries:
                    self.ledger.drop(level_name(level), DropReason.SINK_ERROR)
            self._warn("encode", "cannot encode a Loki batch; dropped it", error=repr(exc))
            return
        if batch is None:
            return
        try:
            evicted = self.queue.put(batch)
        except OSError as exc:
            # The spill cannot take it (full disk, read-only, I/O error): a counted drop.
            reason = DropReason.DISK_FULL if exc.errno in _DISK_FULL else DropReason.DISK_ERROR
            self.ledger.settle(batch, reason)
            self._warn(reason, "cannot spill a Loki batch; dropped it", error=str(exc))
            return
        if self.queue.durable:
            self.ledger.spilled(batch)
        for old in evicted:
            self.ledger.settle(old, DropReason.BUFFER_FULL)
        with self._cond:
            self._cond.notify()

    def _encode(
        self, open_streams: dict[tuple[str, ...], list[tuple[int, list[Any], int]]], *seqs: int
    ) -> Batch | None:
        """The batch of ``open_streams`` (None when the spill takes none of them)."""
        keep = self._spill_admits()
        levels: dict[str, int] = {}
        streams = []
        oldest = 0
        for key, entries in open_streams.items():
            entries.sort(key=lambda item: item[0])  # Loki wants each stream in time order
            values = []
            for stamp, entry, level in entries:
                name = level_name(level)
                if level < keep:
                    self.ledger.drop(name, DropReason.SPILL_FULL)
                    continue
                levels[name] = levels.get(name, 0) + 1
                values.append(entry)
                oldest = stamp if not oldest else min(oldest, stamp)
            if values:
                streams.append({"stream": self._stream_labels(key), "values": values})
        if not streams:
            return None
        payload = json.dumps({"streams": streams}, ensure_ascii=False, separators=(",", ":"))
        return Batch(payload.encode(), levels, seqs[0], seqs[1], oldest)

    def _spill_admits(self) -> int:
        """Lowest level the spill still takes. ``spill_max_bytes`` is a hard cap; DEBUG/INFO
        stop at 80 % of it, so the last fifth is kept for WARNING+."""
        if not isinstance(self.queue, SpillQueue):
            return 0
        used, limit = self.queue.nbytes, self.queue.max_bytes
        if used >= limit:
            return 10**9
        return WARNING if used >= limit * 0.8 else 0

    def progress(self) -> tuple[int | None, int | None]:
        """(oldest seq not yet durable, oldest seq not yet delivered or dropped)."""
        pending = self._open_min if self._open else None
        waiting = [seq for seq in (pending, self.queue.oldest_seq()) if seq is not None]
        done = min(waiting) if waiting else None
        durable = pending if self.queue.durable else done
        return durable, done

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.tick(force=True)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._sender.join(max(0.0, deadline - time.monotonic()))
        for batch in self.queue.drain():  # memory only: a spill keeps its files
            self.ledger.settle(batch, DropReason.SHUTDOWN)  # a push still under way counts nothing
        self._client.close()

    # -- sender thread ---------------------------------------------------------------

    def _supervise(self) -> None:
        """Run the send loop; if it dies on an exception, count a restart and run it again,
        dropping (and counting) a batch that keeps killing it."""
        culprit: Batch | None = None
        crashes = 0
        while True:
            try:
                self._send_loop()
                return
            except Exception as exc:  # shipping must outlive any bug
                self.restarts += 1
                self.sender_tally.add(("restart",))
                head = self.queue.head()
                crashes = crashes + 1 if head is not None and head is culprit else 1
                culprit = head
                if head is not None and crashes >= _MAX_CRASHES_PER_BATCH:
                    self.ledger.settle(head, DropReason.SINK_ERROR)
                    self.queue.pop(head)
                    culprit, crashes = None, 0
                self._warn("restart", "Loki sender failed; restarted it", error=repr(exc))
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(min(0.05 * 2**crashes, 1.0))

    def _send_loop(self) -> None:
        attempt = 0
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._expire(batch)
            result = self._client.push(batch.payload) if batch.count else PushResult(204)
            if result.ok:
                self.ledger.settle(batch, None)
                self.queue.pop(batch)
                attempt = 0
                continue
            if not result.retryable:
                self._finish_failed(batch, result)
                attempt = 0
                continue
            attempt += 1
            if not self.queue.durable and attempt > self._cfg.loki_max_retries:
                self._finish_failed(batch, result)
                attempt = 0
                continue
            delay = result.retry_after
            if delay is None or not 0.0 <= delay < float("inf"):
                delay = backoff_delay(
                    attempt, self._cfg.loki_backoff_min, self._cfg.loki_backoff_max
                )
            delay = min(delay, self._cfg.loki_backoff_max)
            self._warn(
                f"retry:{result.status}",
                "Loki push failed; retrying",
                status=result.status,
                detail=result.detail,
                retry_in_s=round(delay, 3),
                attempt=attempt,
            )
            with self._cond:
                if not self._stopping:
                    self._cond.wait(delay)

    def _next_batch(self) -> Batch | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                batch = self.queue.head()
                if batch is not None:
                    return batch
                self._cond.wait(0.5)

    def _finish_failed(self, batch: Batch, result: PushResult) -> None:
        reason = result.reason
        self.ledger.settle(batch, reason)
        self.queue.pop(batch)
        self._warn(
            reason,
            "Loki rejected a batch; dropped it (not retried)",
            status=result.status,
            detail=result.detail,
            records=batch.count,
        )

    def _expire(self, batch: Batch) -> None:
        """Remove entries that have grown too old while waiting (e.g. a replayed spill).

        Mutates ``batch`` in place: it stays the queue's head, which ``pop`` checks.
        """
        oldest_allowed = self._clock() - int(self._cfg.loki_max_age * 1e9)
        if batch.oldest_ns >= oldest_allowed:
            return
        body = json.loads(batch.payload)
        levels: dict[str, int] = {}
        expired: dict[str, int] = {}
        for stream in body["streams"]:
            kept = []
            for entry in stream["values"]:
                level = stream["stream"].get("level") or _line_level(entry[1])
                if int(entry[0]) < oldest_allowed:
                    expired[level] = expired.get(level, 0) + 1
                else:
                    kept.append(entry)
                    levels[level] = levels.get(level, 0) + 1
            stream["values"] = kept
        self.ledger.settle_entries(batch, expired, DropReason.TOO_OLD)
        body["streams"] = [s for s in body["streams"] if s["values"]]
        batch.payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        batch.levels = levels
        batch.oldest_ns = oldest_allowed

    def _warn(self, key: str, message: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[key] = now
            self._log.warning(message, **fields)


def _line_level(line: str) -> str:
    """The level a JSON line carries (for counting), ``unknown`` when it has none."""
    try:
        level = json.loads(line).get("level")
    except (ValueError, AttributeError, RecursionError):
        return "unknown"
    return level if isinstance(level, str) and level in _KNOWN_LEVELS else "unknown"


_KNOWN_LEVELS = frozenset({"trace", "debug", "info", "warning", "error", "critical"})
