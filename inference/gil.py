"""The GIL's switch interval, set for serving: the engine thread must get the GIL back fast.

An engine call (ONNX Runtime, PyTorch, TensorRT) releases the GIL while it computes and
needs it back to hand the batch on. If a decode or HTTP thread is running Python at that
moment, CPython lets it keep the GIL for up to the switch interval (5 ms by default)
before it must yield — a wait paid once per batch, on the one thread that sets the
model's pace, while its core idles. At ~50 small batches a second that is up to a
quarter of the engine's time. A shorter interval bounds the wait; the price is more GIL
hand-overs among the Python threads (a few µs each, at most one per interval).
Measured (``bench.http_bench``, JPEG, 16 closed-loop clients, 2026-12-01, paired runs):
see the README's HTTP section.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def set_switch_interval(
    milliseconds: float, setter: Callable[[float], None] = sys.setswitchinterval
) -> str:
    """Set the interpreter's switch interval (0: leave it); return a line for the log."""
    if not milliseconds:
        return f"GIL switch interval: Python's own, {sys.getswitchinterval() * 1000:g} ms"
    setter(milliseconds / 1000)
    return f"GIL switch interval: {milliseconds:g} ms"
