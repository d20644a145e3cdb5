"""Job sources behind the project's one media seam: one synthetic pattern for live streams
and job clips, and no PyAV import in the fleet."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.sources import read
from inference.media.sources import SyntheticSource, parse_source, synthetic_pattern
from inference.media.video import to_rgb
from tests.conftest import ROOT


def _old_live_base(width: int, height: int) -> np.ndarray:
    """The live source's frame 0 as inference/media/sources.py computed it before the pattern
    had one definition (the regression reference)."""
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    base = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                     (x + y) / 2 * np.ones((height, 1), np.float32)], axis=-1)  # fmt: skip
    return base.astype(np.uint8)


@settings(max_examples=25, deadline=None)
@given(width=st.integers(16, 300), height=st.integers(16, 600), index=st.integers(0, 200))
def test_live_and_job_clips_draw_one_pattern(width: int, height: int, index: int) -> None:
    """Frame i of a job clip equals frame i of the live synthetic source, and both equal
    what the live source drew before (bands of rows do not change a pixel)."""
    url = f"synthetic://{width}x{height}@10"
    now = [0.0]
    live = SyntheticSource(parse_source(url), clock=lambda: now[0], sleep=lambda s: None)
    assert (live._base == _old_live_base(width, height)).all()
    frames = live.frames(stop=lambda: False)
    for frame in range(index + 1):  # in real time: one period per frame, nothing skipped
        now[0] = frame / 10
        live_frame = next(frames)
    assert live_frame.index == index
    (_, _, clip_frame), *_ = read(f"{url}?seconds=100", index, index + 1)
    expected = np.roll(_old_live_base(width, height), index * 4, axis=1)
    assert (to_rgb(clip_frame) == expected).all()
    assert (live_frame.image == expected).all()
    assert (synthetic_pattern(np.zeros((height, width, 3), np.uint8), index) == expected).all()


def test_no_fleet_module_imports_pyav() -> None:
    """PyAV lives behind inference/media/video.py (decode, header probe, new frames): the fleet
    reaches it only through that module."""
    importers = []
    for path in sorted((ROOT / "fleet").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            if any(name == "av" or name.startswith("av.") for name in names):
                importers.append(str(Path(path).relative_to(ROOT)))
    assert importers == []
