"""One decode process as the engine sees it: spawn, read, account, deliver, restart.

The process is started with ``subprocess`` (fork + exec of a fresh interpreter, the same
guarantee as multiprocessing's *spawn*: the engine's threads and locks are never copied),
inheriting exactly four descriptors: its two pipe ends, its shared region and the drill
board. A reader thread here takes its messages: for a frame it copies the tensor out of
the ring slot and frees the slot at once (one ``FREE`` per read batch), accounts the
frame's decode and preprocess calls in their stage ledgers and histograms with the times
the process measured, and hands the item to the stream's mailbox through the stream's
inlet — where drop-oldest, fairness and backpressure work exactly as for a thread.

EOF on the pipe means the process is gone. Unless the pool is stopping, its calls still
in progress are closed as errors, the death is counted, and a new process takes its
streams over: a file resumes at the first frame not yet received, a live stream at its
present. Past :data:`RESTART_LIMIT` deaths within :data:`RESTART_WINDOW_S` the process is
not restarted and its streams fail, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, SourceError
from ..types import REMOTE_STAGES, Item
from .protocol import (
    COMMAND,
    CREDIT,
    CREDIT_STRUCT,
    EVENT,
    FAILED,
    FRAME,
    FRAME_STRUCT,
    FREE,
    OK,
    Parser,
    ProtocolError,
    Sender,
    decode_json,
    frame,
    json_message,
    none_nan,
)
from .remote import RemoteSource
from .shm import DEC_SEQ, HEARTBEAT, PRE_SEQ, Block, Region

if TYPE_CHECKING:
    from .pool import DecodePool

RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
#: How often the reader wakes with nothing to read (to flush what the pipe could not take).
_POLL_S = 0.1
_ROW_WAIT_S = 5.0  # how long an open waits for a row a removed stream still holds
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class _Life:
    """One incarnation of the process: its child, pipes, region and what was reported."""

    def __init__(self, owner: DecodeProcess) -> None:
        pool = owner.pool
        layout = pool.layout
        self.block = Block(Region(layout.size), layout)
        #: The last sequence number added to the ledgers, per row and stage (decode,
        #: preprocess): calls above it are still in progress, or their report is on its way.
        self.reported = np.zeros((layout.rows, 2), np.int64)
        to_child, from_engine = os.pipe()
        to_engine, from_child = os.pipe()
        spec = {
            "index": owner.index, "rows": layout.rows, "slots": layout.slots,
            "shape": list(layout.shape), "dtype": layout.dtype, "region_fd": self.block.region.fd,
            "drills_fd": pool.board.region.fd, "in_fd": to_child, "out_fd": from_child,
            "info": pool.info_dict, "cores": pool.plan.for_process(owner.index),
            "claim": pool.plan.claim,
            "claims_dir": pool.claims_dir, "log_level": pool.log_level,
        }  # fmt: skip
        env = {key: value for key, value in os.environ.items() if not key.startswith("LOGLOG_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_PACKAGE_ROOT, env.get("PYTHONPATH"))))
        try:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "inference.feed.worker", json.dumps(spec)],
                pass_fds=(to_child, from_child, self.block.region.fd, pool.board.region.fd),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(to_child)
            os.close(from_child)
        self.sender = Sender(from_engine, blocking=False)
        self.fd = to_engine
        self.pid = self.child.pid

    def close(self) -> None:
        self.sender.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.block.close()


class DecodeProcess:
    """A decode process and the streams it owns (``rows``: row → :class:`RemoteSource`)."""

    def __init__(self, index: int, pool: DecodePool) -> None:
        self.index = index
        self.pool = pool
        self.rows: dict[int, RemoteSource] = {}
        self._lock = threading.Lock()  # rows and lives
        #: Notified when a row is given back: a stream removed a moment ago keeps its row
        #: until the process says it ended, and a stream added right after waits for it.
        self._row_freed = threading.Condition(self._lock)
        self._deaths: deque[float] = deque()
        self._stopping = False
        self.life = _Life(self)
        self._reader = self._start_reader(self.life)

    # -- the engine's side of the streams ----------------------------------------------

    def open(self, source: RemoteSource) -> None:
        """Give ``source`` a row and ask the process to open it."""
        with self._lock:

            def free_rows() -> list[int]:
                return [row for row in range(self.pool.layout.rows) if row not in self.rows]

            free = self._row_freed.wait_for(free_rows, timeout=_ROW_WAIT_S)
            if not free:
                raise SourceError(
                    f"this decode process holds its maximum of {self.pool.layout.rows} "
                    f"streams, none of them ending within {_ROW_WAIT_S:.0f} s: delete a "
                    "stream first, or raise max_streams"
                )
            source.row = free[0]
            self.rows[source.row] = source
            self.command(source.open_command(start=False))

    def command(self, body: dict[str, Any]) -> None:
        self.life.sender.send(json_message(COMMAND, body))

    def credit(self, row: int, token: int, count: int = 1) -> None:
        self.life.sender.send(frame(CREDIT, CREDIT_STRUCT.pack(row, token, count)))

    def load(self) -> int:
        return len(self.rows)

    def heartbeat_age(self) -> float | None:
        """Seconds since the process last stamped its heartbeat (None: not yet)."""
        header = self.life.block.header
        if header.size == 0:  # given up: its region is closed
            return None
        beat = int(header[HEARTBEAT])
        return (time.monotonic_ns() - beat) / 1e9 if beat else None

    def alive(self) -> bool:
        return self.life.child.poll() is None

    # -- in progress, for the ledgers ---------------------------------------------------

    def unreported(self, stage: int) -> list[tuple[int, int, int]]:
        """(row, start ns, end ns or 0) of the calls of ``stage`` (0: decode, 1:
        preprocess) that started and are not yet in the ledger. Called under that
        ledger's lock."""
        life = self.life
        stats, reported = life.block.stats, life.reported
        column = DEC_SEQ if stage == 0 else PRE_SEQ
        found = []
        try:
            for row in list(self.rows):
                for _ in range(3):  # the process may be writing this row: read until stable
                    seq = int(stats[row, column])
                    started, ended = int(stats[row, column + 1]), int(stats[row, column + 2])
                    if int(stats[row, column]) == seq:
                        break
                else:
                    continue
                if seq > reported[row, stage] and started:
                    found.append((row, started, ended))
        except IndexError:  # the process died and its region closed meanwhile
            return []
        return found

    # -- the reader ---------------------------------------------------------------------

    def _start_reader(self, life: _Life) -> threading.Thread:
        thread = threading.Thread(
            target=self._read, args=(life,), name=f"feed-reader-{self.index}", daemon=True
        )
        thread.start()
        return thread

    def _read(self, life: _Life) -> None:
        parser = Parser()
        why = "its pipe closed"
        try:
            while True:
                ready, _, _ = select.select([life.fd], [], [], _POLL_S)
                life.sender.flush()
                if not ready:
                    continue
                data = os.read(life.fd, 1 << 16)
                if not data:
                    break
                frees: list[int] = []
                for kind, payload in parser.feed(data):
                    if kind == FRAME:
                        self._on_frame(life, payload, frees)
                    elif kind == EVENT:
                        self._on_event(life, decode_json(payload))
                if frees:
                    life.sender.send(frame(FREE, np.array(frees, np.int32).tobytes()))
        except (OSError, ProtocolError, ValueError) as exc:
            why = f"its pipe failed ({type(exc).__name__}: {exc})"
        except Exception as exc:  # a bug here must not leave the process's streams frozen
            self._died(life, f"the reader failed ({type(exc).__name__}: {exc})", kill=True)
            return
        self._died(life, why, kill=why != "its pipe closed")

    def _on_frame(self, life: _Life, payload: bytes, frees: list[int]) -> None:
        (row, slot, seq, index, pts, captured, dec_start, dec_end, pre_start, pre_end,
         dec_drilled, pre_drilled, late, status) = FRAME_STRUCT.unpack(payload)  # fmt: skip
        tensor = None
        if slot >= 0:
            tensor = life.block.slot(slot).copy()  # 12 KB–600 KB: cheaper than a view's bookkeeping
            frees.append(slot)
        source = self.rows.get(row)
        if source is None:  # cannot happen: a row is released after its last frame
            return
        to_clock = self.pool.to_clock
        item = Item(
            source.stream_id, index, none_nan(pts), tensor=tensor, captured=none_nan(captured),
            created=dec_end / 1e9,  # as on a thread: the item exists once decoded
        )  # fmt: skip
        reported = life.reported
        pipeline = self.pipeline

        def decode_reported() -> None:
            reported[row, 0] = seq

        decode, preprocess = REMOTE_STAGES
        pipeline.account_remote(
            decode, item, to_clock(dec_start), to_clock(dec_end), dec_drilled, decode_reported
        )
        if pre_start:
            if status == FAILED:
                item.error = InputError(source.take_error() or "preprocess failed")

            def preprocess_reported() -> None:
                reported[row, 1] = seq

            pipeline.account_remote(
                preprocess, item, to_clock(pre_start), to_clock(pre_end), pre_drilled,
                preprocess_reported,
            )  # fmt: skip
        source.arrived(item, late, status == OK)
        if status == FAILED:
            pipeline.fail(item)

    @property
    def pipeline(self) -> Any:
        return self.pool.pipeline

    def _on_event(self, life: _Life, body: dict[str, Any]) -> None:
        event = body.get("event")
        if event == "log":
            self.pool.relay_log(self.index, life.pid, body)
            return
        row = int(body.get("row", -1))
        source = self.rows.get(row)
        if source is None:
            return
        if event == "opened":
            source.opened(body)
        elif event == "frame_error":
            source.error_text = str(body.get("error", ""))
        elif event == "ended":
            with self._lock:
                self.rows.pop(row, None)
                self._row_freed.notify_all()
            source.ended(str(body.get("state", "ended")), str(body.get("error", "")))

    # -- death and restart ---------------------------------------------------------------

    def _died(self, life: _Life, why: str, kill: bool = False) -> None:
        """The process ``life`` ended (or its reader failed: ``kill`` it first). Close its
        calls, count it, and restart it with its streams — or fail them, saying why."""
        if kill:
            with contextlib.suppress(OSError):
                life.child.kill()
        code = _exit_code(life.child)
        if self._stopping:
            life.close()
            return
        said = _exit_words(code)
        self._close_calls(life)
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > RESTART_WINDOW_S:
            self._deaths.popleft()
        give_up = len(self._deaths) > RESTART_LIMIT
        self.pool.count_death(self.index, life.pid, said, why, restarted=not give_up)
        failure = (
            f"decode process {self.index} died {len(self._deaths)} times within "
            f"{RESTART_WINDOW_S:.0f} s (last: {said}); its streams were stopped. Check the "
            "server log for the cause, then add the stream again"
        )
        new: _Life | None = None
        # Under the lock from the rows' snapshot to the swap: an open() meanwhile waits and
        # then goes to the new process, and a stop() meanwhile prevents the restart.
        with self._lock:
            sources = [self.rows[row] for row in sorted(self.rows)]
            self.rows.clear()
            if not give_up and not self._stopping:
                try:
                    new = _Life(self)
                except OSError as exc:
                    failure = (
                        f"decode process {self.index} died ({said}) and could not restart: {exc}"
                    )
            if new is not None:
                self.life = new
                for source in sources:
                    if source.inlet is None:  # not started yet: its add() hears it failed
                        source.ended("failed", f"decode process {self.index} died ({said})")
                        continue
                    self.rows[source.row] = source
                    new.sender.send(json_message(COMMAND, source.open_command(start=True)))
            self._row_freed.notify_all()  # rows of streams that did not come along
        life.close()
        if new is None:
            for source in sources:
                source.ended("failed", failure)
            return
        self._reader = self._start_reader(new)

    def _close_calls(self, life: _Life) -> None:
        """The dead process's calls in progress end now, as errors (the ledgers must not
        show them running forever, nor lose the seconds they already counted)."""
        now = time.monotonic_ns()
        for stage, name in enumerate(REMOTE_STAGES):
            for row, started, ended in self.unreported(stage):
                source = self.rows.get(row)
                item = Item(source.stream_id if source else "?", -1)
                item.error = SourceError("the decode process died during this call")

                def reported(row: int = row, stage: int = stage) -> None:
                    life.reported[row, stage] = life.block.stats[row, DEC_SEQ + 3 * stage]

                self.pipeline.account_remote(
                    name, item, self.pool.to_clock(started),
                    self.pool.to_clock(ended or now), 0.0, reported,
                )  # fmt: skip

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the process to end, wait up to ``timeout``, then kill it."""
        with self._lock:
            self._stopping = True
            life = self.life
        life.sender.send(json_message(COMMAND, {"op": "stop"}))
        try:
            life.child.wait(timeout)
        except subprocess.TimeoutExpired:
            life.child.kill()
            life.child.wait(5.0)
        self._reader.join(timeout)


def _exit_code(child: subprocess.Popen[bytes]) -> int | None:
    try:
        return child.wait(5.0)
    except subprocess.TimeoutExpired:  # the pipe failed but the process lives on: end it
        child.kill()
        return child.wait(5.0)


def _exit_words(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        import signal

        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"
