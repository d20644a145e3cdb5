"""A bounded fuzz of the HTTP API: whatever a client sends, the answer is never a 5xx."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from inference.config import RuntimeConfig
from inference.runtime import Runtime
from inference.server.app import create_app
from tests.inference.conftest import small_model_path

_MAGIC = [b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8\xff\xc0", b"GIF89a",
          b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00"]  # fmt: skip
_TYPES = ["", "image/png", "image/jpeg", "application/x-npy", "application/octet-stream",
          "text/plain", "image/", "application/npy; charset=utf-8"]  # fmt: skip
_SOURCES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["synthetic://64x64@5", "synthetic://0x0@0", "ftp://x/y", "file:///etc/passwd",
                     "http://169.254.169.254/", "rtsp://u:p@127.0.0.1:1/x", "..", "/dev/zero"]),
)  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@pytest.fixture(scope="module")
def client():
    runtime = Runtime(
        model=small_model_path(),
        config=RuntimeConfig(calibration_seconds=0.1, max_streams=4, record_dir="/nonexistent/x"),
        registry=CollectorRegistry(),
    )
    with TestClient(create_app(runtime, allow_drills=True)) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield test_client
        for stream in test_client.get("/v1/streams").json():
            test_client.delete(f"/v1/streams/{stream['id']}")


_FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@_FUZZ
@given(magic=st.sampled_from(_MAGIC), tail=st.binary(max_size=300), kind=st.sampled_from(_TYPES))
def test_infer_never_answers_5xx(client, magic, tail, kind):
    headers = {"content-type": kind} if kind else {}
    response = client.post("/v1/infer", content=magic + tail, headers=headers)
    assert response.status_code < 500, response.text


@_FUZZ
@given(
    source=_SOURCES,
    stream_id=st.one_of(st.none(), st.text(max_size=70)),
    record=st.one_of(st.none(), st.text(max_size=20)),
    extra=_JSON,
)
def test_stream_endpoints_never_answer_5xx(client, source, stream_id, record, extra):
    body = {"source": source, "id": stream_id, "record": record}
    for payload in (body, extra):
        response = client.post(
            "/v1/streams", content=_dumps(payload), headers={"content-type": "application/json"}
        )
        assert response.status_code < 500, response.text
        if response.status_code == 201:
            deleted = client.delete(f"/v1/streams/{response.json()['id']}")
            assert deleted.status_code == 204
    if stream_id:
        path = quote(stream_id, safe="")
        assert client.delete(f"/v1/streams/{path}").status_code < 500


@_FUZZ
@example(stage="", delay=0.0, duration=0.0, extra=float("inf"))  # was a 500: see app.py
@given(stage=st.text(max_size=12) | st.sampled_from(["infer", "decode"]), delay=st.floats(),
       duration=st.floats(), extra=_JSON)  # fmt: skip
def test_drill_endpoints_never_answer_5xx(client, stage, delay, duration, extra):
    body = {"stage": stage, "delay_ms": delay, "duration_s": duration}
    for payload in (body, extra):
        response = client.post(
            "/v1/drills", content=_dumps(payload), headers={"content-type": "application/json"}
        )
        assert response.status_code < 500, response.text
    assert client.delete("/v1/drills").status_code == 200


def _dumps(payload: object) -> bytes:
    import json

    return json.dumps(payload, allow_nan=True).encode()
