"""loglog's typed vocabulary: drop reasons as a ``str`` enum, stats as a frozen dataclass,
and the compatibility of both with what loglog returned before (issue 24)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import loglog
from loglog.errors import SinkStalled
from loglog.sinks.loki_http import PushResult
from loglog.testing import ListSink

ROOT = Path(__file__).resolve().parents[2]


def test_a_drop_reason_is_its_text() -> None:
    """Equal, same hash, ``str()`` and ``format()`` the value: keys and labels unchanged."""
    reason = loglog.DropReason.QUEUE_FULL
    assert reason == "queue_full" and hash(reason) == hash("queue_full")
    assert str(reason) == f"{reason}" == "queue_full" and type(str(reason)) is str
    assert {("all", "info", reason): 1}[("all", "info", "queue_full")] == 1


def test_reasons_given_as_text_become_members_and_unknown_ones_stay_text() -> None:
    assert SinkStalled("x", 0, "disk_full").reason is loglog.DropReason.DISK_FULL
    assert SinkStalled("x", 0).reason is loglog.DropReason.SINK_TIMEOUT
    assert SinkStalled("x", 0, "my_own").reason == "my_own"  # a user sink's own reason
    assert PushResult(413).reason is loglog.DropReason.HTTP_413
    assert PushResult(418).reason is loglog.DropReason.HTTP_4XX
    assert PushResult(503).reason is loglog.DropReason.RETRIES_EXHAUSTED


def test_stats_typed_is_a_frozen_stats_whose_dict_is_stats() -> None:
    """A full caller-side queue: counted under DropReason.QUEUE_FULL; ``stats()`` is the
    plain dict it always was (reasons as plain ``str``), the exposition's label the text."""
    registry = CollectorRegistry()
    loglog.configure(console=None, sinks=[ListSink([])], registry=registry, capacity=1)
    log = loglog.get_logger("typed")
    for _ in range(5000):
        log.info("fill")
    typed = loglog.stats_typed()
    assert isinstance(typed, loglog.Stats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.queued = 0  # type: ignore[misc]
    key = ("all", "info", loglog.DropReason.QUEUE_FULL)
    assert typed.dropped[key] > 0
    plain = typed.to_dict()
    assert [type(k[2]) for k in plain["dropped"]] == [str] * len(plain["dropped"])
    assert plain["dropped"][("all", "info", "queue_full")] == typed.dropped[key]
    assert set(plain) == set(loglog.stats()) and plain["spool"] == {
        "enabled": typed.spool.enabled,
        "slots": typed.spool.slots,
        "error": typed.spool.error,
    }
    text = generate_latest(registry).decode()
    assert 'loglog_dropped_total{level="info",reason="queue_full",sink="all"}' in text
    loglog.shutdown(timeout=5)


def _imports(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module)
    return names


def test_core_and_spool_do_not_import_each_other() -> None:
    """Both need Fmt; it lives in loglog/message.py (a circle is gone, not hidden)."""
    assert "spool" not in _imports(ROOT / "loglog" / "core.py")
    assert "core" not in _imports(ROOT / "loglog" / "spool.py")
    from loglog.core import Fmt
    from loglog.message import Fmt as Home

    assert Fmt is Home
