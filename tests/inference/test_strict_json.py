"""Strict JSON on the inference server: the values the red team sent (NaN, Infinity, 1e400,
``"\\ud800"``, ``delay_ms: true``) are refused with a 4xx naming them, JSON bodies are capped
and timed, and a hypothesis fuzz of every endpoint with those values never sees a 5xx."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from inference.config import RuntimeConfig
from inference.core.drills import Drills
from inference.errors import DrillInputError
from inference.metrics import RuntimeMetrics
from inference.runtime import Runtime
from inference.server.app import create_app
from inference.server.strictjson import MAX_JSON_BYTES, InvalidBody, loads
from tests.hostile_json import json_object, json_values, valid_string

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def idle() -> TestClient:
    """The app over a runtime that is not started: bodies are refused before any handler."""
    runtime = Runtime(
        config=RuntimeConfig(calibration_seconds=0.1, body_timeout_s=0.5),
        registry=CollectorRegistry(),
    )
    return TestClient(create_app(runtime, allow_drills=True))


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        ("/v1/streams", '{"source": "\\ud800"}', "body.source: the string has a lone surrogate"),
        ("/v1/streams", '{"source": "x", "id": "\\udfff"}', "body.id: the string has a lone"),
        ("/v1/streams", '{"source": NaN}', "NaN, which is not a JSON number"),
        ("/v1/drills", '{"stage": "infer", "delay_ms": Infinity}', "Infinity, which is not"),
        ("/v1/drills", '{"stage": "infer", "delay_ms": 1e400}', "1e400 is out of range"),
        ("/v1/drills", '{"stage": "infer", "delay_ms": 5, "duration_s": -1e999}', "out of range"),
        ("/v1/streams", b'{"source": "\xc3"}', "not UTF-8"),
    ],
)
def test_hostile_json_is_a_400_naming_the_problem(
    idle: TestClient, path: str, body: str | bytes, problem: str
) -> None:
    """``POST /v1/streams {"source": "\\ud800"}`` was a 500 (realpath raised
    UnicodeEncodeError); every such body is now a 400 that says what is wrong."""
    response = idle.post(path, content=body, headers=JSON)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "InvalidJSON" and problem in answer["detail"]


@pytest.mark.parametrize("value", ["true", "false"])
def test_a_drill_delay_of_true_is_refused_not_one_millisecond(idle: TestClient, value: str) -> None:
    """``delay_ms: true`` was accepted as a 1 ms drill: a bool is not a number."""
    for field in ("delay_ms", "duration_s"):
        document = {"stage": '"infer"', "delay_ms": "5", "duration_s": "5", field: value}
        body = "{" + ",".join(f'"{k}": {v}' for k, v in document.items()) + "}"
        response = idle.post("/v1/drills", content=body, headers=JSON)
        assert response.status_code == 422, response.text
        assert f"body.{field}: Input should be a valid number" in response.json()["detail"]


def test_drills_refuse_a_bool_from_python_callers_too() -> None:
    """The same rule below the API: ``Drills.start(stage, True, …)`` is refused."""
    drills = Drills(RuntimeMetrics(CollectorRegistry()))
    with pytest.raises(DrillInputError, match="not true/false"):
        drills.start("infer", True, 5)
    assert drills.start("infer", 5, 5)["delay_ms"] == 5  # an int is a number


def test_a_json_body_over_the_cap_is_a_413_before_it_is_read(idle: TestClient) -> None:
    """A JSON body is at most 64 KiB (FastAPI buffered any size before)."""
    body = json.dumps({"source": "x" * MAX_JSON_BYTES})
    response = idle.post("/v1/streams", content=body, headers=JSON)
    assert response.status_code == 413 and "at most 65536 bytes" in response.json()["detail"]


def test_a_json_body_that_trickles_is_a_408(idle: TestClient) -> None:
    """A body still arriving after body_timeout_s (0.5 s here) is answered 408, not held
    (driven over ASGI: the test client would buffer the whole body first)."""
    sent: list[dict] = []

    async def receive() -> dict:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b'{"source": ', "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/streams", "raw_path": b"/v1/streams",
             "query_string": b"", "headers": [(b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
             "root_path": ""}  # fmt: skip
    asyncio.run(asyncio.wait_for(idle.app(scope, receive, send), 30))  # type: ignore[arg-type]
    start = next(m for m in sent if m.get("type") == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m.get("type") == "http.response.body")
    assert start["status"] == 408 and "within 0.5s" in json.loads(body)["detail"]


def test_loads_accepts_what_json_allows() -> None:
    """Strictness takes nothing valid away: unicode, escapes, big-but-finite numbers."""
    document = '{"a": "é\\u00e9\\ud83d\\ude00", "b": [1.5e308, -9223372036854775807, null]}'
    assert loads(document) == json.loads(document)
    with pytest.raises(InvalidBody):
        loads('{"a": 9223372036854775808}')


# -- the fuzz: a started runtime, every endpoint -----------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    runtime = Runtime(
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
_STREAM = json_object(
    {
        "source": st.sampled_from(["synthetic://64x64@5", "./a\ud800.mp4", "/dev/zero"]).map(
            json.dumps
        ),
        "id": st.text(max_size=70).map(json.dumps),
        "record": valid_string("x.mp4"),
    }
)
_DRILL = json_object(
    {
        "stage": st.sampled_from(["infer", "decode", ""]).map(json.dumps),
        "delay_ms": st.floats(0, 10).map(repr),
        "duration_s": st.floats(0, 2).map(repr),
    }
)
_TEXT = st.text(max_size=60) | st.sampled_from(["\ud800", "..", "%ff", "a" * 70])


def _answered(response: object) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, response.text  # type: ignore[attr-defined]
    if status >= 400:
        assert response.json()["detail"]  # type: ignore[attr-defined]


@pytest.mark.slow
@_FUZZ
@example(body='{"source": "\\ud800"}')
@example(body='{"source": "synthetic://64x64@5", "id": NaN}')
@given(body=_STREAM)
def test_fuzz_streams_never_answer_5xx(client: TestClient, body: str) -> None:
    """POST /v1/streams with hostile documents (a created stream is deleted again)."""
    response = client.post("/v1/streams", content=body, headers=JSON)
    _answered(response)
    if response.status_code == 201:
        assert client.delete(f"/v1/streams/{response.json()['id']}").status_code == 204


@pytest.mark.slow
@_FUZZ
@example(body='{"stage": "infer", "delay_ms": true}')
@example(body='{"stage": "infer", "delay_ms": 1e400, "duration_s": NaN}')
@given(body=_DRILL)
def test_fuzz_drills_never_answer_5xx(client: TestClient, body: str) -> None:
    """POST /v1/drills with hostile documents; a started drill is stopped again."""
    _answered(client.post("/v1/drills", content=body, headers=JSON))
    assert client.delete("/v1/drills").status_code == 200


@pytest.mark.slow
@_FUZZ
@given(text=_TEXT, value=json_values)
def test_fuzz_every_other_endpoint_never_answers_5xx(
    client: TestClient, text: str, value: str
) -> None:
    """Path and query values (surrogates sent as the UTF-8 bytes a client would send),
    and a hostile JSON body where none is expected."""
    quoted = quote(text.encode("utf-8", "surrogatepass"), safe="")
    for method, url in (
        ("GET", f"/v1/streams?x={quoted}"), ("DELETE", f"/v1/streams/{quoted}"),
        ("GET", f"/healthz?{quoted}"), ("GET", f"/readyz?{quoted}"),
        ("GET", f"/v1/profile?{quoted}"), ("GET", f"/v1/drills?{quoted}"),
        ("DELETE", f"/v1/drills?{quoted}"), ("GET", f"/metrics?{quoted}"),
    ):  # fmt: skip
        _answered(client.request(method, url, content=value, headers=JSON))
    _answered(client.post("/v1/infer", content=value, headers=JSON))


def test_every_endpoint_is_fuzzed(idle: TestClient) -> None:
    """A new endpoint fails this until it is added to a fuzz (this module's, or
    test_api_fuzz.py's for /v1/infer bodies)."""
    fuzzed = {("POST", "/v1/streams"), ("GET", "/v1/streams"), ("DELETE", "/v1/streams/{stream_id}"),
              ("POST", "/v1/drills"), ("GET", "/v1/drills"), ("DELETE", "/v1/drills"),
              ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/v1/profile"), ("GET", "/metrics"),
              ("POST", "/v1/infer")}  # fmt: skip
    served = {
        (method.upper(), path)
        for path, operations in idle.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in operations
    }
    assert served == fuzzed
