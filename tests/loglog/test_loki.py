"""The Loki sink against the API-faithful double: batching, labels, order, validation."""

from __future__ import annotations

import base64
import time

import pytest

import loglog
from loglog.core import CORE
from tests.conftest import free_port
from tests.doubles.loki import LokiServer


def _configure(url: str, **options) -> None:
    options.setdefault("loki_batch_wait", 0.1)
    loglog.configure(console=None, loki_url=url, registry=None, **options)


def test_batches_are_bounded_by_bytes():
    """With a 4 KiB batch limit, 300 records of ~100 bytes go out in several requests."""
    with LokiServer() as loki:
        _configure(loki.url, loki_batch_bytes=4096, loki_batch_wait=5)
        log = loglog.get_logger("b")
        for i in range(300):
            log.info("x" * 60, i=i)
        assert loglog.flush(timeout=10)
        assert len(loki.state.requests) >= 5
        assert all(r["bytes"] < 4096 for r in loki.state.requests), "gzip'd bodies stay small"
        assert sorted(e.json()["i"] for e in loki.state.entries) == list(range(300))


def test_a_lone_record_is_shipped_after_the_batch_wait_without_flush():
    """Time bounds a batch too: one record arrives within about loki_batch_wait."""
    with LokiServer() as loki:
        _configure(loki.url, loki_batch_wait=0.2)
        loglog.get_logger("t").warning("alone")
        assert loki.wait_for(lambda s: len(s.entries) == 1, timeout=5)


def test_labels_are_static_plus_low_cardinality_dynamic_ones():
    """Streams are labelled by the configured labels plus level and host; fields stay in
    the JSON line, where they cannot explode Loki's index."""
    with LokiServer() as loki:
        _configure(
            loki.url,
            loki_labels={"service": "inference", "env": "test"},
            loki_dynamic_labels=("level", "host", "logger"),
        )
        log = loglog.get_logger("decoder")
        log.info("a", stream="cam1", frame=1)
        log.error("b", stream="cam2", frame=2)
        assert loglog.flush(timeout=10)
        labels = {e.labels["level"]: e.labels for e in loki.state.entries}
        assert set(labels) == {"info", "error"}
        assert labels["info"]["service"] == "inference" and labels["info"]["env"] == "test"
        assert labels["info"]["logger"] == "decoder" and labels["info"]["host"]
        assert "stream" not in labels["info"]
        assert loki.state.entries[0].json()["stream"] == "cam1"


def test_entries_of_a_stream_are_sent_in_time_order():
    """Records stamped out of order (e.g. from the stdlib bridge) are sorted per stream."""
    with LokiServer() as loki:
        _configure(loki.url)
        now = time.time_ns()
        for offset in (3, 1, 2):
            CORE.emit(20, "order", f"t{offset}", {}, None, None, now + offset * 1000)
        assert loglog.flush(timeout=10)
        body_order = [e.line for e in loki.state.entries]
        assert [line.split('"msg":"')[1][:2] for line in body_order] == ["t1", "t2", "t3"]


def test_oversized_lines_are_truncated_and_counted_so_loki_accepts_them():
    """A line over the limit would make Loki answer 400; it is cut and counted instead."""
    with LokiServer() as loki:
        loki.state.max_line_bytes = 2048
        _configure(loki.url, loki_max_line_bytes=2048)
        loglog.get_logger("big").error("x" * 100_000, detail="y" * 50_000)
        assert loglog.flush(timeout=10)
        (entry,) = loki.state.entries
        assert len(entry.line.encode()) <= 2048
        assert entry.json()["truncated_from_bytes"] > 100_000
        assert loglog.stats()["truncated"]["loki"] == 1
        assert all(r["path"] == "/loki/api/v1/push" for r in loki.state.requests)


def test_records_older_than_lokis_limit_are_dropped_before_sending():
    """An entry Loki would reject as too old is never sent (it would turn the batch into
    a 400); it is counted as too_old."""
    with LokiServer() as loki:
        _configure(loki.url)
        eight_days_ago = time.time_ns() - 8 * 24 * 3600 * 10**9
        CORE.emit(30, "old", "ancient", {}, None, None, eight_days_ago)
        loglog.get_logger("old").warning("fresh")
        assert loglog.flush(timeout=10)
        assert [e.json()["msg"] for e in loki.state.entries] == ["fresh"]
        assert loglog.stats()["dropped"][("loki", "warning", "too_old")] == 1


def test_tenant_auth_and_gzip_headers():
    """X-Scope-OrgID carries the tenant, user:password in the URL becomes Basic auth, and
    bodies are gzip'd JSON."""
    with LokiServer() as loki:
        url = f"http://alice:s%3Acret@127.0.0.1:{loki.port}"
        _configure(url, loki_tenant="team-a")
        loglog.get_logger("h").info("hi")
        assert loglog.flush(timeout=10)
        headers = loki.state.requests[0]["headers"]
        assert headers["X-Scope-OrgID"] == "team-a"
        assert headers["Content-Encoding"] == "gzip"
        assert headers["Content-Type"] == "application/json"
        assert base64.b64decode(headers["Authorization"].split()[1]) == b"alice:s:cret"


def test_trace_ids_go_to_structured_metadata_when_enabled():
    """With loki_structured_metadata, trace/span ids travel as the entry's third element."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    with LokiServer() as loki:
        _configure(loki.url, loki_structured_metadata=True)
        with tracer.start_as_current_span("req"):
            loglog.get_logger("m").info("traced")
        assert loglog.flush(timeout=10)
        (entry,) = loki.state.entries
        assert entry.metadata is not None and len(entry.metadata["trace_id"]) == 32


@pytest.mark.slow
def test_rate_limited_pushes_are_retried_until_everything_is_stored():
    """Loki's per-tenant rate limit answers 429 (nothing stored); the sink backs off and
    retries, and every record ends up stored exactly once."""
    with LokiServer() as loki:
        loki.state.rate_bytes_per_s = 20_000
        loki.state.burst_bytes = 20_000
        _configure(loki.url, loki_batch_bytes=16384, loki_backoff_min=0.05, loki_backoff_max=1)
        log = loglog.get_logger("rate")
        for i in range(600):
            log.info("y" * 80, i=i)
        assert loglog.flush(timeout=30)
        assert sorted(e.json()["i"] for e in loki.state.entries) == list(range(600))
        assert any(r for r in loki.state.requests), "requests were made"


@pytest.mark.slow
def test_a_full_spill_sheds_debug_and_info_first(tmp_path):
    """Past 80 % of spill_max_bytes DEBUG/INFO stop being spilled (counted as spill_full);
    the last fifth keeps taking WARNING+."""
    port = free_port()  # nothing listens: Loki is down
    _configure(
        f"http://127.0.0.1:{port}",
        spill_dir=str(tmp_path),
        spill_max_bytes=100_000,
        loki_batch_bytes=4096,
        loki_backoff_min=5,
        loki_backoff_max=5,
    )
    log = loglog.get_logger("spill")
    for i in range(2000):
        log.info("i" * 50, i=i)
        if i % 20 == 0:
            log.warning("w", i=i)
        if i % 100 == 0:
            loglog.flush(timeout=0.2)
    loglog.flush(timeout=1)
    dropped = loglog.stats()["dropped"]
    assert dropped.get(("loki", "info", "spill_full"), 0) > 0
    assert dropped.get(("loki", "warning", "spill_full"), 0) == 0
