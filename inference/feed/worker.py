"""A decode process: ``python -m inference.feed.worker SPEC`` (started by the pool only).

One thread per stream, as on the engine's side before: it decodes a frame with PyAV
(FFmpeg and swscale on one thread each — the process has its core), runs the project's own
:class:`~inference.core.stages.Preprocess` into a free slot of the shared ring, and sends one
fixed-size message (:mod:`.protocol`). Around each call it writes the call's start and end
into its stats row, so the engine sees a call in progress — and a hung one — while it
runs. The main thread reads the engine's pipe (freed slots, credits, commands); its end
(EOF) means the engine is gone, and the process exits. A heartbeat thread stamps the
header every :data:`HEARTBEAT_S`.

Flow control, as on threads: a live stream never waits for the engine (its mailbox there
drops the oldest frame); a file stream sends only while it has credits — places in its
mailbox — so it decodes no further ahead than it did on a thread.

Records logged here go to the engine over the pipe and out through its sinks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from .drills import DECODE, PREPROCESS, DrillBoard
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
    STOPPED,
    Parser,
    Sender,
    decode_json,
    frame,
    json_message,
    nan_none,
)
from .shm import (
    DEC_END,
    DEC_SEQ,
    DEC_START,
    HEARTBEAT,
    PID,
    PRE_END,
    PRE_SEQ,
    Block,
    Layout,
    Region,
)

HEARTBEAT_S = 0.25
_WAIT_S = 0.5  # a wait for a slot or a credit looks at ``stopping`` this often


class _Stream:
    """A stream this process decodes; ``row`` is its stats row and its name on the wire."""

    def __init__(self, row: int, body: dict[str, Any]) -> None:
        self.row = row
        self.token = int(body.get("token", 0))
        self.body = body
        self.live = bool(body["spec"]["live"])
        self.credits = int(body.get("credits", 0))
        self.resume = int(body.get("resume", 0))  # file: first frame index still to send
        self.offset = int(body.get("offset", 0))  # live: added to the source's indexes
        self.started = threading.Event()
        if body.get("start"):
            self.started.set()
        self.stopping = False
        self.late_sent = 0


class DecodeWorker:
    """Everything one decode process runs; :meth:`serve` until the engine goes."""

    def __init__(
        self, block: Block, board: DrillBoard, out: Sender, info: Any, decoder_threads: int
    ) -> None:
        from ..core.stages import Preprocess

        self.block = block
        self.board = board
        self.out = out
        self.preprocess = Preprocess(info)
        self.decoder_threads = decoder_threads
        self.streams: dict[int, _Stream] = {}
        self._free: deque[int] = deque(range(block.layout.slots))
        self._cond = threading.Condition()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- the engine's pipe ----------------------------------------------------------------

    def serve(self, fd: int) -> None:
        """Read the engine's messages until EOF or ``stop``; then end every stream."""
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        parser = Parser()
        try:
            while not self._done.is_set():
                try:
                    data = os.read(fd, 1 << 16)
                except InterruptedError:
                    continue
                if not data:
                    break  # the engine is gone
                for kind, payload in parser.feed(data):
                    self._handle(kind, payload)
        finally:
            self._done.set()
            with self._cond:
                for stream in self.streams.values():
                    stream.stopping = True
                    stream.started.set()
                self._cond.notify_all()
            for thread in self._threads:
                thread.join(timeout=2.0)

    def _handle(self, kind: int, payload: bytes) -> None:
        if kind == FREE:
            slots = np.frombuffer(payload, dtype=np.int32)
            with self._cond:
                self._free.extend(int(slot) for slot in slots)
                self._cond.notify_all()
        elif kind == CREDIT:
            row, token, count = CREDIT_STRUCT.unpack(payload)
            with self._cond:
                stream = self.streams.get(row)
                if stream is not None and stream.token == token:
                    stream.credits += count
                    self._cond.notify_all()
        elif kind == COMMAND:
            self._command(decode_json(payload))

    def _command(self, body: dict[str, Any]) -> None:
        op = body.get("op")
        if op == "stop":
            self._done.set()
            return
        row = int(body["row"])
        if op == "open":
            stream = _Stream(row, body)
            with self._cond:
                self.streams[row] = stream
            thread = threading.Thread(
                target=self._run_stream, args=(stream,), name=f"decode-{row}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
            return
        with self._cond:
            stream = self.streams.get(row)  # type: ignore[assignment]
            if stream is None or stream.token != body.get("token"):
                return  # the stream that row held has ended; another may hold it now
            if op == "start":
                stream.started.set()
            elif op == "close":
                stream.stopping = True
                stream.started.set()
                self._cond.notify_all()

    def _heartbeat(self) -> None:
        header = self.block.header
        header[PID] = os.getpid()
        while not self._done.is_set():
            header[HEARTBEAT] = time.monotonic_ns()
            self._done.wait(HEARTBEAT_S)

    def _event(self, body: dict[str, Any]) -> None:
        self.out.send(json_message(EVENT, body))

    # -- one stream -------------------------------------------------------------------------

    def _run_stream(self, stream: _Stream) -> None:
        from ..errors import SourceError
        from ..media.sources import SourceSpec, open_source

        row = stream.row
        try:
            source = open_source(SourceSpec(**stream.body["spec"]), threads=self.decoder_threads)
        except Exception as exc:  # SourceError says what to do; anything else is a bug
            self._end(stream, "failed", _say(exc))
            return
        self._event(
            {"event": "opened", "row": row, "width": source.width, "height": source.height,
             "fps": source.fps}
        )  # fmt: skip
        state, error = "ended", ""
        try:
            stream.started.wait()
            if not stream.stopping:
                for decoded in source.frames(lambda: stream.stopping):
                    if not self._frame(stream, source, decoded):
                        break
            if stream.stopping:
                state = "stopped"
        except SourceError as exc:
            state, error = "failed", str(exc)
        except Exception as exc:  # a broken stream ends alone, with its error
            state, error = "crashed", _say(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self._end(stream, state, error)

    def _end(self, stream: _Stream, state: str, error: str) -> None:
        with self._cond:
            self.streams.pop(stream.row, None)
        self._event({"event": "ended", "row": stream.row, "state": state, "error": error})

    def _frame(self, stream: _Stream, source: Any, decoded: Any) -> bool:
        """Account, preprocess and send one decoded frame; False once the stream stops."""
        index = decoded.index + stream.offset
        if index < stream.resume:
            return True  # after a restart: already delivered by the process that died
        stats = self.block.stats[stream.row]
        seq = int(stats[DEC_SEQ]) + 1
        ended = time.monotonic_ns()
        _begin(stats, DEC_SEQ, seq, ended - int(decoded.decode_seconds * 1e9))
        dec_drilled = self.board.pause(DECODE)
        dec_end = time.monotonic_ns()
        stats[DEC_END] = dec_end
        slot, status, pre_start, pre_end, pre_drilled = -1, STOPPED, 0, 0, 0.0
        if self._wait_credit(stream):
            slot = self._take_slot(stream)
        if slot >= 0:
            pre_start = time.monotonic_ns()
            _begin(stats, PRE_SEQ, seq, pre_start)
            try:
                pre_drilled = self.board.pause(PREPROCESS)
                self.block.slot(slot)[...] = self.preprocess.tensor(decoded.image)
                status = OK
            except Exception as exc:  # the frame fails alone, as in the preprocess stage
                status = FAILED
                self._event({"event": "frame_error", "row": stream.row, "error": _say(exc)})
                self._give_back(slot)
                slot = -1
            pre_end = time.monotonic_ns()
            stats[PRE_END] = pre_end
        late = int(getattr(source, "late", 0))
        if status == OK and not stream.live:
            with self._cond:
                stream.credits -= 1
        message = FRAME_STRUCT.pack(
            stream.row, slot, seq, index, nan_none(decoded.pts), nan_none(decoded.captured),
            int(stats[DEC_START]), dec_end, pre_start, pre_end, dec_drilled, pre_drilled,
            late - stream.late_sent, status,
        )  # fmt: skip
        stream.late_sent = late
        self.out.send(frame(FRAME, message))
        return status != STOPPED

    def _wait_credit(self, stream: _Stream) -> bool:
        """A file stream waits for a place in its mailbox; False when it stops."""
        if stream.live:
            return not stream.stopping
        with self._cond:
            while stream.credits <= 0 and not stream.stopping:
                self._cond.wait(_WAIT_S)
            return not stream.stopping

    def _take_slot(self, stream: _Stream) -> int:
        """A free ring slot (waiting for the engine to free one); -1 when it stops."""
        with self._cond:
            while not self._free and not stream.stopping:
                self._cond.wait(_WAIT_S)
            return -1 if stream.stopping else self._free.popleft()

    def _give_back(self, slot: int) -> None:
        with self._cond:
            self._free.append(slot)
            self._cond.notify_all()


def _begin(stats: np.ndarray, seq_column: int, seq: int, started: int) -> None:
    """Mark a call started: end cleared, start set, then the sequence number — the engine
    reads the sequence number around the others and retries if it moved."""
    stats[seq_column + 2] = 0
    stats[seq_column + 1] = started
    stats[seq_column] = seq


def _say(exc: BaseException) -> str:
    from loglog.redact import redact

    return redact(f"{type(exc).__name__}: {exc}" if not _ours(exc) else str(exc))


def _ours(exc: BaseException) -> bool:
    from ..errors import InferenceError

    return isinstance(exc, InferenceError)


class _ForwardSink:
    """A loglog sink that hands this process's records to the engine over the pipe."""

    name = "decode_process"
    local = True

    def __init__(self, out: Sender) -> None:
        self._out = out

    def write(self, records: Sequence[Any]) -> None:
        for record in records:
            self._out.send(
                json_message(
                    EVENT,
                    {"event": "log", "level": record.level, "logger": record.logger,
                     "message": record.message[:8192], "fields": record.fields,
                     "exc_text": record.exc_text},
                )
            )  # fmt: skip


def _configure_logging(out: Sender, level: int) -> None:
    import loglog

    # The engine's LOGLOG_* settings were left out of this process's environment: its
    # records reach the engine's sinks once, through the engine.
    loglog.configure(level=level, console=None, registry=None, sinks=[_ForwardSink(out)])


def main(argv: list[str]) -> int:
    """Run a decode process from the JSON ``argv[1]`` the pool wrote."""
    # The engine owns this process's life: it ends when the engine's pipe closes (the
    # engine stopped, or died however it died). A Ctrl-C or SIGTERM sent to the whole
    # process group must not kill it first — the engine would take that for a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spec = json.loads(argv[1])
    from ..media.video import set_scale_threads
    from ..types import EngineInfo
    from .claims import claim_and_pin

    layout = Layout(
        rows=spec["rows"], slots=spec["slots"], shape=tuple(spec["shape"]), dtype=spec["dtype"]
    )
    block = Block(Region(layout.size, fd=spec["region_fd"]), layout)
    board = DrillBoard(Region(64, fd=spec["drills_fd"]))
    out = Sender(spec["out_fd"], blocking=True)
    _configure_logging(out, spec["log_level"])
    import loglog

    log = loglog.get_logger("inference.feed").bind(decode_process=spec["index"])
    placed = claim_and_pin(spec.get("cores"), spec.get("claims_dir"), bool(spec.get("claim")))
    set_scale_threads(1)
    info = EngineInfo(**{**spec["info"], "input_shape": tuple(spec["info"]["input_shape"]),
                         "output_names": tuple(spec["info"]["output_names"])})  # fmt: skip
    worker = DecodeWorker(block, board, out, info, decoder_threads=1)
    log.info("decode process ready", pid=os.getpid(), cores=placed)
    try:
        worker.serve(spec["in_fd"])
    finally:
        loglog.shutdown(timeout=1.0)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    # Not sys.exit: a stream thread stuck in a C call (a hung decoder) must not hold up
    # interpreter shutdown; everything worth keeping was flushed above.
    sys.stdout.flush()
    os._exit(code)
