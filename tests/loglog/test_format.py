"""Rendering of records: JSON lines and human text."""

from __future__ import annotations

import json

from loglog.format import JsonRenderer, TextRenderer, render_value
from loglog.types import Record


def _record(**overrides):
    base = dict(
        seq=1,
        time_ns=1_700_000_000_123_456_789,
        level=30,
        logger="app",
        message='quote " and \\ and ünïcode',
        fields={"n": 1, "x": 2.5, "ok": True, "none": None, "list": [1, "a"]},
    )
    base.update(overrides)
    return Record(**base)


def test_json_lines_are_valid_json_with_every_field():
    """The hand-rolled encoder produces what json.loads reads back, escapes included."""
    line = JsonRenderer()(_record(trace_id="a" * 32, span_id="b" * 16, exc_text="Trace\n"))
    doc = json.loads(line)
    assert doc == {
        "ts": "2023-11-14T22:13:20.123456Z",
        "level": "warning",
        "logger": "app",
        "msg": 'quote " and \\ and ünïcode',
        "n": 1,
        "x": 2.5,
        "ok": True,
        "none": None,
        "list": [1, "a"],
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
        "exc": "Trace\n",
    }


def test_text_lines_are_readable_and_colour_only_when_asked():
    """Text output has the level and key=value pairs; ANSI colour only with color=True."""
    plain = TextRenderer(color=False)(_record(fields={"stream": "cam 1", "ms": 3.2}))
    assert "WARNING" in plain and 'stream="cam 1"' in plain and "ms=3.2" in plain
    assert "\x1b[" not in plain
    assert "\x1b[33m" in TextRenderer(color=True)(_record())


def test_render_value_bounds_depth_and_size():
    """Deep or huge values are cut, never recursed without limit."""
    deep: list = []
    node = deep
    for _ in range(50):
        node.append([])
        node = node[0]
    rendered = render_value(deep)

    def depth(value) -> int:
        return 1 + max(map(depth, value), default=0) if isinstance(value, list) else 0

    assert depth(rendered) <= 5
    assert isinstance(json.dumps(rendered), str)
    assert len(render_value(list(range(1000)))) == 100


class _Raising:
    """A value no sink should ever see (the worker renders values): its text raises."""

    def __str__(self) -> str:
        raise RuntimeError("user code on a sink thread")

    __repr__ = __str__


def test_a_record_a_renderer_cannot_write_costs_only_that_record():
    """Should a value the worker did not render reach a renderer anyway (a huge int, an
    object, a time out of range), that one record is written with placeholders instead
    of the renderer raising — which would cost the sink its whole batch."""
    odd = _record(
        fields={"n": 10**5000, "obj": _Raising(), "ok": 1},
        time_ns=10**30,
        trace_id='"quoted"',
        span_id="s",
    )
    doc = json.loads(JsonRenderer()(odd))
    assert doc["n"] == "<int: ~5001 digits>" and doc["obj"] == "<_Raising>" and doc["ok"] == 1
    assert doc["ts"].startswith("1970-01-01") and doc["trace_id"] == '"quoted"'
    text = TextRenderer()(odd)
    assert 'n="<int: ~5001 digits>"' in text and "obj=<_Raising>" in text


def test_a_trace_id_field_with_quotes_stays_valid_json():
    """The trace id comes from a span (hex) or from a ``trace_id=`` field (any text)."""
    line = JsonRenderer()(_record(trace_id='a"b\\', span_id="c\n"))
    doc = json.loads(line)
    assert (doc["trace_id"], doc["span_id"]) == ('a"b\\', "c\n")
