"""Sources: URL validation, real-time pacing, and catching up when behind."""

from __future__ import annotations

import pytest

from inference.errors import SourceError
from inference.media.access import SourcePolicy
from inference.media.sources import SyntheticSource, parse_source


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("synthetic://640x480@0", "synthetic sizes"),
        ("synthetic:640x480", "not a valid synthetic source"),
        ("/no/such/file.mp4", "not allowed: video files are read only from source_dirs"),
        ("", "no source given"),
        ("ftp://host/video.mp4", "scheme 'ftp' is not supported"),
    ],
)
def test_bad_sources_say_what_is_accepted(url, message):
    with pytest.raises(SourceError, match=message):
        parse_source(url)


def test_synthetic_and_network_urls_are_live():
    spec = parse_source("synthetic://320x240@25")
    assert (spec.kind, spec.live, spec.width, spec.height, spec.fps) == (
        "synthetic",
        True,
        320,
        240,
        25.0,
    )
    public = SourcePolicy(resolve=lambda host: ["93.184.216.34"])
    assert parse_source("rtsp://camera/stream", public).live


class FakeClock:
    """Virtual time: sleeping advances it; `lag` simulates slow consumers."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_synthetic_source_is_paced_and_skips_frames_when_behind():
    """At 10 fps frames are due every 0.1 s; a consumer 0.35 s late makes it skip 3
    frames (counted as late) instead of drifting behind real time."""
    clock = FakeClock()
    source = SyntheticSource(parse_source("synthetic://64x48@10"), clock=clock, sleep=clock.sleep)
    frames = source.frames(stop=lambda: False)
    first = next(frames)
    second = next(frames)
    assert (first.index, second.index) == (0, 1) and clock.now == pytest.approx(0.1)
    clock.now += 0.45  # the consumer was slow
    third = next(frames)
    assert third.index == 5 and source.late == 3
    assert third.image.shape == (48, 64, 3)
