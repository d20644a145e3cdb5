"""The decode processes' wire: framed messages on pipes, anonymous shared regions."""

from __future__ import annotations

import itertools
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.feed.protocol import (
    COMMAND,
    EVENT,
    FRAME,
    FRAME_STRUCT,
    FREE,
    Parser,
    ProtocolError,
    Sender,
    decode_json,
    frame,
    json_message,
)
from inference.feed.shm import Block, Layout, Region

_messages = st.lists(
    st.one_of(
        st.binary(min_size=FRAME_STRUCT.size, max_size=FRAME_STRUCT.size).map(lambda b: (FRAME, b)),
        st.dictionaries(st.text(max_size=8), st.integers(), max_size=4).map(
            lambda d: (EVENT, json_message(EVENT, d)[8:])
        ),
        st.lists(st.integers(0, 63), max_size=40).map(
            lambda slots: (FREE, np.array(slots, np.int32).tobytes())
        ),
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(messages=_messages, cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_messages_come_out_whole_however_the_pipe_splits_the_bytes(messages, cuts):
    """Whatever sizes the reads return, every message comes out once, whole, in order."""
    wire = b"".join(frame(kind, payload) for kind, payload in messages)
    points = sorted({min(cut, len(wire)) for cut in cuts} | {0, len(wire)})
    parser = Parser()
    got = []
    for start, end in itertools.pairwise(points):
        got.extend(parser.feed(wire[start:end]))
    assert got == [(kind, bytes(payload)) for kind, payload in messages]


def test_a_header_that_is_no_message_is_an_error_not_a_hang():
    """Garbage on the pipe (a bug, a dead peer's half write) is a ProtocolError: the
    reader treats the process as dead instead of waiting for 4 GB that never come."""
    with pytest.raises(ProtocolError, match="bad message header"):
        Parser().feed(struct.pack("<BxxxI", 99, 4) + b"abcd")
    with pytest.raises(ProtocolError, match="bad message header"):
        Parser().feed(struct.pack("<BxxxI", EVENT, 1 << 30))
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_json(b"{nope")


def test_the_engine_never_blocks_on_a_full_pipe_and_loses_nothing():
    """Nobody reads the decode process's end: the engine's sends return at once and keep
    what the pipe cannot take; once it is read, a flush delivers every byte in order."""
    read_end, write_end = os.pipe()
    sender = Sender(write_end, blocking=False)
    message = frame(COMMAND, b"x" * 1000)
    for _ in range(200):  # 200 KB: three times a Linux pipe's 64 KiB
        sender.send(message)
    assert sender.pending > 0
    received = bytearray()
    os.set_blocking(read_end, False)
    while len(received) < 200 * len(message):
        try:
            received += os.read(read_end, 1 << 16)
        except BlockingIOError:
            sender.flush()
    assert bytes(received) == message * 200 and sender.pending == 0
    os.close(read_end)
    sender.send(message)  # the reader is gone: dropped, no exception, no hang
    assert sender.broken
    sender.close()


def test_a_region_is_shared_through_its_descriptor_and_has_no_name():
    """What one mapping writes, a second mapping of the same descriptor reads (as the
    decode process does after spawn); the region appears in no directory, so a SIGKILL
    of either side cannot leave it behind in /dev/shm."""
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    layout = Layout(rows=4, slots=3, shape=(3, 8, 8), dtype="float32")
    ours = Block(Region(layout.size), layout)
    theirs = Block(Region(layout.size, fd=os.dup(ours.region.fd)), layout)
    ours.slot(2)[...] = 7.5
    ours.stats[3, 1] = 123
    assert float(theirs.slot(2).mean()) == 7.5 and int(theirs.stats[3, 1]) == 123
    assert float(theirs.slot(1).max()) == 0.0  # slots do not overlap
    link = os.readlink(f"/proc/self/fd/{ours.region.fd}") if os.path.isdir("/proc") else ""
    assert "/dev/shm/" not in link
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert after == before
    theirs.close()
    ours.close()


@given(
    rows=st.integers(1, 1000),
    slots=st.integers(1, 64),
    shape=st.lists(st.integers(1, 300), min_size=1, max_size=3).map(tuple),
    dtype=st.sampled_from(["float32", "float16", "uint8"]),
)
def test_the_layout_keeps_every_part_aligned_and_apart(rows, slots, shape, dtype):
    layout = Layout(rows=rows, slots=slots, shape=shape, dtype=dtype)
    tensor = int(np.prod(shape)) * np.dtype(dtype).itemsize
    assert layout.slot_bytes >= tensor and layout.slot_bytes % 64 == 0
    assert layout.stats_offset >= 64 and layout.ring_offset % 64 == 0
    assert layout.ring_offset >= layout.stats_offset + rows * 8 * 8
    assert layout.size == layout.ring_offset + slots * layout.slot_bytes
