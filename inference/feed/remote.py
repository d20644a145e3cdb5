"""A stream decoded in a decode process, as the stream manager sees a source.

It has what :class:`~inference.core.streams.StreamManager` uses of a source — ``width``,
``height``, ``fps``, ``late``, ``close()`` — plus ``start(inlet)`` (frames go to the inlet
from the reader thread, instead of a thread of the manager pulling ``frames()``) and
``taken()``, which the manager calls when the ingest thread takes one of its frames from
the mailbox: for a file stream that is one more credit for the process.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any

from ..errors import SourceError
from ..media.sources import SourceSpec
from ..types import Item

if TYPE_CHECKING:
    from .process import DecodeProcess

#: How long opening a source may take in the decode process (a network source's own
#: timeout is 10 s; the first stream also waits for the process to start).
OPEN_TIMEOUT_S = 30.0
_tokens = itertools.count(1)


class RemoteSource:
    """One stream in a decode process; see the module docstring."""

    def __init__(self, process: DecodeProcess, spec: SourceSpec, stream_id: str, buffer: int):
        self.process = process
        self.spec = spec
        self.stream_id = stream_id
        self.buffer = buffer
        self.row = -1
        #: Unique per stream: what the process checks before a credit, start or close.
        self.token = next(_tokens)
        self.width, self.height, self.fps = spec.width, spec.height, spec.fps
        self.late = 0
        self.inlet: Any = None
        self.error_text = ""
        self._opened = threading.Event()
        self._failure = ""
        self._closed = False
        #: The next frame index a new process must produce (after a restart): files
        #: resume there; live streams continue their numbering from there.
        self.next_index = 0

    # -- the manager's side -------------------------------------------------------------

    def wait_opened(self, timeout: float = OPEN_TIMEOUT_S) -> None:
        """Block until the process opened the source; SourceError with its reason."""
        if not self._opened.wait(timeout):
            self.close()
            raise SourceError(
                f"the decode process did not open the source within {timeout:.0f} s: check "
                "that it is reachable, or that the server is not overloaded"
            )
        if self._failure:
            raise SourceError(self._failure)

    def start(self, inlet: Any) -> None:
        """Frames start flowing to ``inlet`` (called under the manager's lock)."""
        self.inlet = inlet
        self.process.command({"op": "start", "row": self.row, "token": self.token})

    def taken(self) -> None:
        """The ingest thread took one of this stream's frames from its mailbox."""
        if not self.spec.live:
            self.process.credit(self.row, self.token)

    def close(self) -> None:
        """Stop the stream in the process (idempotent); it reports ``ended`` when done."""
        if not self._closed:
            self._closed = True
            self.process.command({"op": "close", "row": self.row, "token": self.token})

    # -- the reader's side --------------------------------------------------------------

    def open_command(self, *, start: bool) -> dict[str, Any]:
        """The command that (re)opens this stream in a process; after a restart
        (``start``) a file resumes at the first frame not yet received, with as many
        credits as its mailbox has places."""
        body: dict[str, Any] = {
            "op": "open", "row": self.row, "token": self.token, "start": start,
            "spec": {"url": self.spec.url, "kind": self.spec.kind, "live": self.spec.live,
                     "width": self.spec.width, "height": self.spec.height, "fps": self.spec.fps},
        }  # fmt: skip
        if self.spec.live:
            body["offset"] = self.next_index
        else:
            body["resume"] = self.next_index
            body["credits"] = self.inlet.room() if start and self.inlet else self.buffer
        return body

    def opened(self, body: dict[str, Any]) -> None:
        self.width, self.height = int(body["width"]), int(body["height"])
        self.fps = float(body["fps"])
        self._opened.set()

    def take_error(self) -> str:
        text, self.error_text = self.error_text, ""
        return text

    def arrived(self, item: Item, late: int, ok: bool) -> None:
        """A frame came from the process: count it and, with a tensor, deliver it."""
        self.late += late
        self.next_index = max(self.next_index, item.frame + 1)
        # As a stream's thread counts each decoded frame (Pipeline.source_stage):
        # admission takes the streams' frame rate out of what it offers HTTP, and it
        # read 0 frames/s while every stream decoded here.
        self.process.pool.pipeline.frames_in.inc()
        if self.inlet is not None:
            self.inlet.frame(item, self.late, deliver=ok)

    def ended(self, state: str, error: str) -> None:
        """The stream ended in the process (or the process could not go on with it)."""
        if not self._opened.is_set():
            self._failure = error or f"the source {state} before it opened"
            self._opened.set()
            return
        if self.inlet is not None:
            self.inlet.end(error or None, crashed=state == "crashed")
