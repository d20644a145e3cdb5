"""The HTTP API: answers, errors with what to fix, and a server that keeps serving."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from inference.config import RuntimeConfig
from inference.media.video import encode_jpeg
from inference.runtime import Runtime
from inference.server.app import create_app
from tests.inference.conftest import small_model_path


def _client(allow_drills: bool = False) -> tuple[TestClient, Runtime]:
    runtime = Runtime(
        model=small_model_path(),
        config=RuntimeConfig(calibration_seconds=0.1, monitor_interval_s=0.2, monitor_window_s=2),
        registry=CollectorRegistry(),
    )
    return TestClient(create_app(runtime, allow_drills=allow_drills)), runtime


@pytest.fixture
def api():
    client, _ = _client(allow_drills=True)
    with client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client


def _jpeg() -> bytes:
    return encode_jpeg((np.random.default_rng(3).random((240, 320, 3)) * 255).astype(np.uint8))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_health_and_readiness_before_and_after_calibration():
    """/healthz answers at once; /readyz is 503 until the model is calibrated, then 200;
    inference before that is a 503 saying to retry."""
    client, runtime = _client()
    gate = runtime.start
    started = []

    def slow_start(progress=None):
        time.sleep(0.5)
        started.append(True)
        gate(progress)

    runtime.start = slow_start  # type: ignore[method-assign]
    with client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 503
        early = client.post("/v1/infer", content=_jpeg(), headers={"content-type": "image/jpeg"})
        assert early.status_code == 503 and "retry" in early.json()["detail"]
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").json()["status"] == "ready"


def test_infer_accepts_jpeg_png_and_npy(api):
    """Images are resized by the server; a tensor of the model's shape skips preprocess."""
    jpeg = api.post("/v1/infer", content=_jpeg(), headers={"content-type": "image/jpeg"})
    assert jpeg.status_code == 200, jpeg.text
    body = jpeg.json()
    assert len(body["outputs"]["top"]) == 5
    # The body is decoded in the pipeline's timed decode stage, not before it.
    assert set(body["stage_ms"]) == {"decode", "preprocess", "infer", "postprocess", "encode"}
    assert body["stage_ms"]["decode"] > 0
    image = api.post("/v1/infer", content=_npy(np.zeros((100, 120, 3), np.uint8)),
                     headers={"content-type": "application/x-npy"})  # fmt: skip
    assert image.status_code == 200
    tensor = api.post("/v1/infer", content=_npy(np.zeros((3, 224, 224), np.float32)),
                      headers={"content-type": "application/x-npy"})  # fmt: skip
    assert tensor.status_code == 200


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (b"\xff\xd8 not really a jpeg", "image/jpeg", 400, "not a JPEG, PNG"),
        (b"", "image/png", 400, "the request body is empty"),
        (b"\x93NUMPYgarbage", "application/x-npy", 400, ".npy"),
        (b"garbage", "application/x-npy", 400, "not a .npy array"),
        (
            _npy(np.zeros((3, 64, 64), np.float32)),
            "application/x-npy",
            422,
            "model input is 3×224×224",
        ),
        (b"{}", "application/json", 400, "unsupported Content-Type"),
        (
            _npy(np.full((3, 224, 224), np.nan, np.float32)),
            "application/x-npy",
            422,
            "NaN or infinite",
        ),
        (_npy(np.zeros((1, 1, 1, 1, 1, 1, 1, 1, 1), np.float32)), "", 422, "dimensions"),
    ],
)
def test_bad_inputs_get_a_4xx_that_says_what_to_fix_and_the_server_lives_on(
    api, content, content_type, status, message
):
    """Garbage, empty bodies, wrong shapes and types: a clear 4xx, then a good request works."""
    response = api.post("/v1/infer", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert message in response.json()["detail"]
    good = api.post("/v1/infer", content=_jpeg(), headers={"content-type": "image/jpeg"})
    assert good.status_code == 200


def test_streams_can_be_added_listed_and_deleted(api):
    """POST → 201 with its state; GET lists fps and drops; DELETE → 204; unknown → 404;
    an unreachable source → 422 naming it."""
    created = api.post("/v1/streams", json={"source": "synthetic://160x120@10", "id": "cam1"})
    assert created.status_code == 201 and created.json()["id"] == "cam1"
    time.sleep(1.2)
    (listed,) = api.get("/v1/streams").json()
    assert listed["state"] == "running" and listed["frames"] >= 5
    bad = api.post("/v1/streams", json={"source": "rtsp://127.0.0.1:1/none"})
    assert bad.status_code == 422 and "not allowed" in bad.json()["detail"]
    duplicate = api.post("/v1/streams", json={"source": "synthetic://160x120@10", "id": "cam1"})
    assert duplicate.status_code == 422 and "already exists" in duplicate.json()["detail"]
    assert api.delete("/v1/streams/cam1").status_code == 204
    missing = api.delete("/v1/streams/cam1")
    assert missing.status_code == 404 and "GET /v1/streams" in missing.json()["detail"]


def test_credentials_in_a_refused_source_are_not_echoed(api):
    """A camera URL's password and token are '***' in the error the client gets."""
    refused = api.post(
        "/v1/streams", json={"source": "rtsp://admin:hunter2@10.0.0.7/live?token=abc"}
    )
    assert refused.status_code == 422
    assert "hunter2" not in refused.text and "token=abc" not in refused.text
    assert "admin:***@10.0.0.7" in refused.json()["detail"]


def test_stream_count_is_capped():
    """Past max_streams a new stream is refused with 429 and how to proceed."""
    runtime = Runtime(
        model=small_model_path(),
        config=RuntimeConfig(calibration_seconds=0.1, max_streams=1),
        registry=CollectorRegistry(),
    )
    with TestClient(create_app(runtime)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.post("/v1/streams", json={"source": "synthetic://64x64@5"}).status_code == 201
        refused = client.post("/v1/streams", json={"source": "synthetic://64x64@5"})
        assert refused.status_code == 429 and "raise max_streams" in refused.json()["detail"]


def test_drills_need_the_flag_and_validate_their_input():
    """Without --allow-drills drills are refused (403); with it, bad stages are refused and
    a valid drill shows in the metrics until stopped."""
    client, _ = _client(allow_drills=False)
    with client:
        refused = client.post("/v1/drills", json={"stage": "infer", "delay_ms": 5})
        assert refused.status_code == 403 and "--allow-drills" in refused.json()["detail"]


def test_drills_start_show_and_stop(api):
    bad = api.post("/v1/drills", json={"stage": "warp", "delay_ms": 5})
    assert bad.status_code == 422 and "unknown stage" in bad.json()["detail"]
    assert (
        api.post("/v1/drills", json={"stage": "infer", "delay_ms": 5, "duration_s": 30}).status_code
        == 201
    )
    assert 'inference_drill_delay_seconds{stage="infer"} 0.005' in api.get("/metrics").text
    assert api.delete("/v1/drills").json() == {"stopped": 1}
    assert 'inference_drill_delay_seconds{stage="infer"} 0.0' in api.get("/metrics").text


def test_metrics_negotiate_openmetrics_and_include_the_logger(api):
    """Plain text by default; OpenMetrics (which carries exemplars) when asked."""
    plain = api.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "inference_stage_duration_seconds_bucket" in plain.text
    rich = api.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert rich.headers["content-type"].startswith("application/openmetrics-text")
    assert rich.text.rstrip().endswith("# EOF")


def test_profile_endpoint_reports_the_live_verdict(api):
    """/v1/profile returns the verdict, stage windows and the calibrated capacity."""
    report = api.get("/v1/profile").json()
    assert report["verdict"]["bottleneck"] == "input"
    assert {s["name"] for s in report["stages"]} == {
        "decode",
        "preprocess",
        "infer",
        "postprocess",
        "encode",
    }
    assert float(report["capacity_items_per_s"]["1"]) > 0


def test_limits_refuse_before_the_decode_stage_and_the_finite_check_runs_after_the_parse():
    """In the staged flow (bodies decoded in the timed ``decode`` stage), the size, pixel
    and .npy-shape limits still refuse a body before it reaches the decode stage, which
    never sees it; the NaN check needs the values, so it is the decode stage's (422)."""
    runtime = Runtime(
        model=small_model_path(),
        config=RuntimeConfig(
            calibration_seconds=0.1,
            monitor_interval_s=0.2,
            monitor_window_s=2,
            max_body_bytes=4 * 1024 * 1024,
            max_image_pixels=1_000_000,
            max_tensor_elements=200_000,
        ),
        registry=CollectorRegistry(),
    )
    with TestClient(create_app(runtime)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.pipeline is not None
        decode = runtime.pipeline.decode
        before = decode.calls
        refused = [
            (encode_jpeg(np.zeros((1000, 1200, 3), np.uint8)), "image/jpeg", "max_image_pixels"),
            (_npy(np.zeros((4, 224, 224), np.float32)), "application/x-npy", "max_tensor_elements"),
            (b"\0" * (4 * 1024 * 1024 + 1), "image/png", "max_body_bytes"),
        ]
        for content, content_type, limit in refused:
            response = client.post(
                "/v1/infer", content=content, headers={"content-type": content_type}
            )
            assert response.status_code == 413 and limit in response.json()["detail"]
        assert decode.calls == before, "a refused body never reached the decode stage"
        nan = client.post(
            "/v1/infer",
            content=_npy(np.full((3, 224, 224), np.inf, np.float32)),
            headers={"content-type": "application/x-npy"},
        )
        assert nan.status_code == 422 and "NaN or infinite" in nan.json()["detail"]
        assert decode.calls == before + 1, "the finite check runs in the decode stage"
        good = client.post("/v1/infer", content=_jpeg(), headers={"content-type": "image/jpeg"})
        assert good.status_code == 200 and good.json()["stage_ms"]["decode"] > 0


def test_a_deadline_that_cannot_be_met_is_a_503_with_retry_after_before_any_decode(api):
    """A request asking for an answer within 0.1 ms cannot get one (the engine alone
    takes longer): it is refused at once with 503, Retry-After and a body naming the
    limit, and it is never admitted. The default deadline is served (200)."""
    hurried = api.post(
        "/v1/infer",
        content=_jpeg(),
        headers={"content-type": "image/jpeg", "x-request-timeout": "0.0001"},
    )
    assert hurried.status_code == 503
    assert int(hurried.headers["retry-after"]) >= 1
    body = hurried.json()
    assert body["reason"] == "predicted_wait" and body["limit"] == "request_timeout_s"
    assert "X-Request-Timeout" in body["detail"] and body["retry_after_s"] >= 1
    served = api.post("/v1/infer", content=_jpeg(), headers={"content-type": "image/jpeg"})
    assert served.status_code == 200
    metrics = api.get("/metrics").text
    assert 'inference_requests_shed_total{reason="predicted_wait"} 1.0' in metrics
    assert "inference_requests_admitted_total 1.0" in metrics
    admission = api.get("/v1/profile").json()["admission"]
    assert admission["request_timeout_s"] == 0.8 and admission["latency_slo_s"] == 1.0


def test_a_malformed_request_timeout_is_a_400_naming_the_header(api):
    bad = api.post(
        "/v1/infer",
        content=_jpeg(),
        headers={"content-type": "image/jpeg", "x-request-timeout": "soon"},
    )
    assert bad.status_code == 400 and "X-Request-Timeout" in bad.json()["detail"]
