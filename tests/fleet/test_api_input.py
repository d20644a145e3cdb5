"""No 5xx from input on the jobs API: strict JSON, surrogate-safe strings, strict types,
and a hypothesis fuzz of every endpoint with the values the red team sent (NaN, Infinity,
1e400, "\\ud800"), each of which was a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fleet.access import SourcePolicy, check_source
from fleet.api import create_app
from fleet.errors import SourceUnreadable
from fleet.store import JobStore
from tests.fleet.harness import down_dispatcher
from tests.hostile_json import HOSTILE_TOKENS, json_object, json_values, valid_string

CLIP = "synthetic://64x48@10?seconds=1"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[TestClient]:
    """The API on a real Redis (private prefix) with its broker down, for the module."""
    store = JobStore.connect(redis_url, prefix=f"loglog-test:{uuid.uuid4().hex[:12]}")
    with TestClient(create_app(down_dispatcher(store), publish_interval=60)) as client:
        yield client
    keys = list(store.client.scan_iter(f"{store.prefix}:*", count=1000))
    if keys:
        store.client.delete(*keys)


def _post(api: TestClient, body: str | bytes) -> tuple[int, dict]:
    response = api.post("/v1/jobs", content=body, headers=JSON)
    return response.status_code, response.json()


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("field", ["priority", "id", "source"])
def test_non_finite_and_out_of_range_numbers_are_a_400_naming_them(
    api: TestClient, field: str, token: str
) -> None:
    """Each of these in any field was a 500 (FastAPI echoed NaN/inf in its 422 answer,
    which cannot be serialised); now a 400 that names the value."""
    fields = {"source": json.dumps(CLIP), "id": '"j1"', "priority": "1", field: token}
    status, body = _post(api, "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}")
    assert status == 400, body
    named = "out of range" if "e400" in token else "not a JSON number"
    assert token in body["error"] and named in body["error"]


@pytest.mark.parametrize("field", ["source", "id"])
def test_a_lone_surrogate_is_a_400_naming_the_field(api: TestClient, field: str) -> None:
    """``"\\ud800"`` in the source reached ``realpath``, which raised UnicodeEncodeError
    (a 500); in any string it is now a 400 naming where it is, without echoing it raw."""
    document = {"source": CLIP, "id": "j2", field: "cam\ud800.mp4"}
    status, body = _post(api, json.dumps(document))  # json.dumps writes \ud800 escaped
    assert status == 400, body
    assert f"body.{field}" in body["error"] and "lone surrogate (\\ud800)" in body["error"]


def test_a_source_with_a_lone_surrogate_is_refused_before_it_is_resolved() -> None:
    """The same source from any caller (not only JSON) is refused, not resolved."""
    with pytest.raises(SourceUnreadable, match="lone surrogate"):
        check_source(SourcePolicy(), "/videos/\udcff\ud800.mp4")


@pytest.mark.parametrize(
    ("priority", "problem"),
    [("true", "valid integer"), ('"5"', "valid integer"), ("2.5", "valid integer")],
)
def test_priority_is_an_integer_not_a_bool_or_a_string(
    api: TestClient, priority: str, problem: str
) -> None:
    """``true`` was accepted as priority 1: a client sending it has a bug to hear about."""
    status, body = _post(api, f'{{"source": "{CLIP}", "priority": {priority}}}')
    assert status == 422 and problem in body["error"] and "body.priority" in body["error"]


def test_bodies_that_are_not_json_name_the_problem(api: TestClient) -> None:
    """Invalid UTF-8, truncated JSON and deep nesting: a 400 saying which."""
    cases = [
        (b'{"source": "\xff"}', "not UTF-8"),
        (b'{"source": ', "not JSON"),
        (b"[" * 50_000, "nests too deeply"),
        (b'{"source": "x", "priority": ' + b"9" * 5000 + b"}", "out of range"),
    ]
    for raw, problem in cases:
        status, body = _post(api, raw)
        assert status == 400 and problem in body["error"], (raw[:30], body)


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
_SOURCES = st.sampled_from(
    [CLIP, "synthetic://7680x4320@1?seconds=1", "/etc/passwd", "rtsp://10.0.0.1/x", "file://",
     "synthetic://16x16@240?seconds=" + "9" * 400, "./x\ud800.mp4", ""]
).map(json.dumps)  # fmt: skip
_JOB = json_object(
    {
        "source": _SOURCES,
        "id": st.text(max_size=70).map(json.dumps) | valid_string("fz"),
        "priority": st.integers(-3, 12).map(str),
    }
)


@pytest.mark.slow
@_FUZZ
@example(body='{"source": "synthetic://64x48@10?seconds=1", "priority": NaN}')
@example(body='{"source": "\\ud800"}')
@example(body='{"source": 1e400, "id": Infinity}')
@given(body=_JOB)
def test_fuzz_submit_never_answers_5xx(api: TestClient, body: str) -> None:
    """POST /v1/jobs with hostile documents: a 2xx or a 4xx whose ``error`` says why."""
    status, answer = _post(api, body)
    assert status < 500, (body[:200], answer)
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"], answer


_PATH_TEXT = st.text(max_size=80) | st.sampled_from(["x:done", "..", "%ff", "\ud800", "a" * 70])


@pytest.mark.slow
@_FUZZ
@given(job_id=_PATH_TEXT, state=st.none() | _PATH_TEXT, limit=st.none() | _PATH_TEXT)
def test_fuzz_read_and_cancel_endpoints_never_answer_5xx(
    api: TestClient, job_id: str, state: str | None, limit: str | None
) -> None:
    """Every other endpoint, with hostile path and query values (unpaired surrogates
    percent-encoded as the UTF-8 bytes a client would send, and invalid bytes)."""
    path = quote(job_id.encode("utf-8", "surrogatepass"), safe="")
    query = {k: v for k, v in (("state", state), ("limit", limit)) if v is not None}
    encoded = "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in query.items())
    for method, url in (
        ("GET", f"/v1/jobs/{path}"), ("DELETE", f"/v1/jobs/{path}"),
        ("GET", f"/v1/jobs?{encoded}"), ("GET", f"/v1/sd/workers?{encoded}"),
        ("GET", f"/healthz?{encoded}"),
    ):  # fmt: skip
        response = api.request(method, url)
        assert response.status_code < 500, (method, url, response.text[:300])


@pytest.mark.slow
@settings(_FUZZ, max_examples=3)  # each scrape asks the (down) broker: ~2 s
@given(query=_PATH_TEXT)
def test_fuzz_metrics_never_answers_5xx(api: TestClient, query: str) -> None:
    """/metrics takes no input; a hostile query string changes nothing."""
    response = api.get(f"/metrics?x={quote(query.encode('utf-8', 'surrogatepass'))}")
    assert response.status_code == 200 and "fleet_broker_up 0.0" in response.text


@pytest.mark.slow
@_FUZZ
@given(value=json_values)
def test_fuzz_any_json_value_in_any_field_never_answers_5xx(api: TestClient, value: str) -> None:
    """A hostile value in each field in turn, the others valid."""
    for field in ("source", "id", "priority"):
        fields = {"source": json.dumps(CLIP), "priority": "0", field: value}
        body = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
        status, answer = _post(api, body)
        assert status < 500, (body[:200], answer)


def test_every_endpoint_is_fuzzed(api: TestClient) -> None:
    """A new endpoint fails this until it is added to the fuzz above."""
    fuzzed = {("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}"),
              ("DELETE", "/v1/jobs/{job_id}"), ("GET", "/v1/sd/workers"), ("GET", "/metrics"),
              ("GET", "/healthz")}  # fmt: skip
    served = {
        (method, path)
        for path, operations in api.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in (m.upper() for m in operations)
    }
    assert served == fuzzed
    assert len(HOSTILE_TOKENS) > 20
