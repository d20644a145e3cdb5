"""Decode and preprocess share their threads in a decode process: utilization for the verdict.

On threads, a stream's source thread decodes and the preprocess workers preprocess; each
stage's utilization is its busy time over its own workers. In a decode process one thread
per stream does both, one after the other, so neither stage alone can reach 100 % when
that thread is saturated: a stream thread spending 70 % of its time decoding and 30 %
preprocessing is as saturated as one spending 100 % decoding. :func:`fuse` gives the
monitor's windows that view: when the stream threads' decode and preprocess time
together reach ``saturation``, the stage taking the larger share is shown at their
combined utilization, so the verdict names it — decode when decoding dominates, as a
drill on preprocess still names preprocess.
"""

from __future__ import annotations

import dataclasses

from ..types import REMOTE_STAGES
from .bottleneck import StageWindow


def fuse(
    windows: list[StageWindow],
    busy: dict[str, float],
    elapsed: float,
    threads: int,
    saturation: float,
) -> list[StageWindow]:
    """``windows`` with decode or preprocess raised to the shared threads' utilization
    (``threads``: streams decoded in decode processes; ``busy``: seconds per stage)."""
    if threads <= 0 or elapsed <= 0:
        return windows
    # In PIPELINE order: on a tie the earlier stage (decode) is named.
    seconds = [busy.get(name, 0.0) for name in REMOTE_STAGES]
    shared = min(1.0, sum(seconds) / (elapsed * threads))
    if shared < saturation:
        return windows
    larger = REMOTE_STAGES[seconds.index(max(seconds))]
    return [
        dataclasses.replace(window, utilization=max(window.utilization, shared))
        if window.name == larger
        else window
        for window in windows
    ]
