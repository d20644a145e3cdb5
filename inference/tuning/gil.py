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

import math
import sys
import threading
from collections.abc import Callable

_lock = threading.Lock()
_holders = 0
_saved: float | None = None  # the interval before the first holder set one


def set_switch_interval(
    milliseconds: float, setter: Callable[[float], None] = sys.setswitchinterval
) -> str:
    """Set the interpreter's switch interval (0: leave it); return a line for the log."""
    if not milliseconds:
        return f"GIL switch interval: Python's own, {sys.getswitchinterval() * 1000:g} ms"
    if not (isinstance(milliseconds, int | float) and math.isfinite(milliseconds)):
        raise ValueError(f"GIL switch interval: {milliseconds!r} ms is not a finite number")
    if not 0 < milliseconds <= 1000:
        raise ValueError(f"GIL switch interval: {milliseconds:g} ms is outside (0, 1000]")
    setter(milliseconds / 1000)
    return f"GIL switch interval: {milliseconds:g} ms"


def hold(milliseconds: float) -> tuple[bool, str]:
    """Set the interval for one runtime while it serves; ``(held, line for the log)``.

    The switch interval is process-wide and several runtimes may serve in one process
    (tests, an embedding application): the first holder saves the interval it found and
    the last :func:`release` restores it, so one runtime stopping never changes it under
    another that still serves. Holders after the first set their own value too (the last
    one set wins while several serve). ``0`` holds nothing.
    """
    global _holders, _saved
    if not milliseconds:
        return False, set_switch_interval(0)
    with _lock:
        before = sys.getswitchinterval()
        line = set_switch_interval(milliseconds)  # raises before anything is counted
        if _holders == 0:
            _saved = before
        _holders += 1
    return True, line


def release() -> None:
    """Undo one :func:`hold`; the last one restores the interval the first one found."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders == 0 and _saved is not None:
            sys.setswitchinterval(_saved)
            _saved = None
