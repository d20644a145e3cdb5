"""The jobs API and CLI pieces that need no worker: validation, errors, http_sd, metrics
with the broker down (a real closed port, not a fake)."""

from __future__ import annotations

import contextlib
import http.server
import math
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fleet.api import create_app, drain_eta
from fleet.celeryapp import settings
from fleet.cli import progress_bar
from fleet.dispatch import Dispatcher
from fleet.errors import FleetConfigError, StoreUnavailable
from fleet.heartbeat import RateWindow, WorkerBeat
from fleet.store import JobStore
from fleet.worker import WorkerConfig
from tests.conftest import http_server
from tests.fleet.harness import down_dispatcher, metric, private_redis_server, served


@pytest.fixture
def api(store: JobStore):
    """The API with a broker that is down (nothing listens on its port)."""
    with TestClient(create_app(down_dispatcher(store), publish_interval=60)) as client:
        yield client


def test_broker_down_jobs_are_accepted_pending_and_the_metrics_say_so(api: TestClient) -> None:
    """POST works without a broker: the job is queued with 0 of N segments published,
    and /metrics reports the broker down and the unpublished segments."""
    response = api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=3", "id": "p1"})
    assert response.status_code == 202
    body = response.json()
    assert (body["state"], body["segments"], body["segments_published"]) == ("pending", 3, 0)
    text = api.get("/metrics").text
    assert metric(text, "fleet_broker_up") == 0.0
    assert metric(text, "fleet_store_up") == 1.0
    assert metric(text, "fleet_segments_unpublished") == 3.0
    assert metric(text, "fleet_backlog_frames") == 30.0
    assert metric(text, "fleet_frames_submitted_total") == 30.0
    assert 'fleet_jobs{state="pending"} 1.0' in text
    assert 'fleet_job_progress_ratio{job_id="p1"} 0.0' in text


def test_errors_are_json_with_the_fix(api: TestClient) -> None:
    """422 unreadable source, 400 bad id/priority/state, 404 unknown job, 409 id reuse."""
    bad = api.post("/v1/jobs", json={"source": "rtsp://8.8.8.8/1"})
    assert bad.status_code == 422 and "not a finite source" in bad.json()["error"]
    assert (
        api.post(
            "/v1/jobs", json={"source": "synthetic://64x48@10?seconds=1", "id": "../x"}
        ).status_code
        == 400
    )
    assert (
        api.post(
            "/v1/jobs", json={"source": "synthetic://64x48@10?seconds=1", "priority": 11}
        ).status_code
        == 400
    )
    assert api.get("/v1/jobs?state=done").status_code == 400
    missing = api.get("/v1/jobs/nope")
    assert missing.status_code == 404 and "GET /v1/jobs" in missing.json()["error"]
    assert api.delete("/v1/jobs/nope").status_code == 404
    api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=1", "id": "same"})
    again = api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=2", "id": "same"})
    assert again.status_code == 409
    rejected = api.get("/metrics").text
    assert 'fleet_jobs_submitted_total{result="rejected"} 4.0' in rejected


def test_http_sd_lists_live_workers_in_the_prometheus_format(
    api: TestClient, store: JobStore
) -> None:
    """Each heartbeat with a metrics address becomes a target group with worker/gpu labels."""
    store.heartbeat(WorkerBeat(name="w0", metrics="10.0.0.5:9500", gpu=0, busy=True), ttl=60)
    store.heartbeat(WorkerBeat(name="w1", metrics="10.0.0.6:9500", gpu=None), ttl=60)
    assert api.get("/v1/sd/workers").json() == [
        {"targets": ["10.0.0.5:9500"], "labels": {"worker": "w0", "gpu": "0"}},
        {"targets": ["10.0.0.6:9500"], "labels": {"worker": "w1", "gpu": ""}},
    ]
    text = api.get("/metrics").text
    assert 'fleet_workers{state="busy"} 1.0' in text and 'fleet_workers{state="idle"} 1.0' in text


def test_drain_eta_is_zero_without_backlog_and_infinite_without_throughput() -> None:
    assert drain_eta(0, 0) == 0.0
    assert drain_eta(100, 0) == math.inf
    assert drain_eta(100, 4) == 25.0


def test_broker_settings_are_the_ones_long_gpu_segments_need() -> None:
    """acks_late, prefetch 1, confirms, durable priority queue, persistent, retry forever."""
    conf = settings("q")
    assert conf["task_acks_late"] and conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert conf["task_default_delivery_mode"] == "persistent"
    assert conf["broker_connection_max_retries"] is None
    queue = conf["task_queues"][0]
    assert queue.durable and queue.queue_arguments == {"x-max-priority": 9}


def test_worker_config_fails_at_start_up_with_the_fix() -> None:
    with pytest.raises(FleetConfigError, match="AMQP URL"):
        WorkerConfig(broker="redis://x")
    with pytest.raises(FleetConfigError, match="GPU index"):
        WorkerConfig(gpu=-1)
    with pytest.raises(FleetConfigError, match="consumer_timeout"):
        Dispatcher(None, None, queue="q", segment_seconds=3600)  # type: ignore[arg-type]


def test_rate_window_is_the_working_rate_of_the_last_window() -> None:
    """Frames/s since the oldest frame in the window (idle time before it does not count),
    zero once everything fell out of the window; on a fake clock."""
    now = [100.0]  # idle for 100 s before the first frame
    rate = RateWindow(window=10.0, clock=lambda: now[0])
    assert rate.rate() == 0.0
    for second in range(5):
        now[0] = 100.0 + second
        rate.add(10)
    now[0] = 105.0
    assert rate.rate() == 10.0  # 50 frames over the 5 s since the first
    now[0] = 120.0
    assert rate.rate() == 0.0


def test_progress_bar_shows_progress_eta_and_error() -> None:
    line = progress_bar({"progress": 0.5, "frames_done": 5, "total_frames": 10,
                         "eta_seconds": 3.2, "state": "running"}, width=10)  # fmt: skip
    assert line == "[#####.....]  50.0%  5/10 frames  ETA 3s  running"
    failed = progress_bar({"progress": 0.0, "frames_done": 0, "total_frames": 10,
                           "eta_seconds": None, "state": "failed", "error": "boom"}, width=4)  # fmt: skip
    assert failed.endswith("failed  error: boom")


def test_an_id_that_names_a_store_key_of_a_job_is_not_found_not_a_500(
    api: TestClient, store: JobStore
) -> None:
    """``x:done`` and ``x:workers`` are a job's Redis sets, not jobs: GET and DELETE say
    404 (they used to read the set as a hash: WRONGTYPE, a 500 with a traceback)."""
    assert (
        api.post(
            "/v1/jobs", json={"source": "synthetic://64x48@10?seconds=3", "id": "x"}
        ).status_code
        == 202
    )
    store.start_segment("x", "w1", 0)
    store.complete_segment("x", 0, 10)
    for path in ("/v1/jobs/x:done", "/v1/jobs/x:workers"):
        for response in (api.get(path), api.delete(path)):
            assert response.status_code == 404, response.text
            assert "GET /v1/jobs" in response.json()["error"]
    assert api.get("/v1/jobs/x").json()["state"] == "running"  # the job itself is untouched


@pytest.mark.parametrize(
    "source",
    [
        "synthetic://64x48@10?seconds=" + "9" * 400,  # float() of it is inf
        "synthetic://16x16@240?seconds=500000",  # 500 000 segments of 1 s
    ],
)
def test_a_clip_too_long_to_split_is_refused_at_once(api: TestClient, source: str) -> None:
    """An absurd length is a 422/400 with the limit, not a 500 (inf) nor the API building a
    hundred million segments in memory."""
    response = api.post("/v1/jobs", json={"source": source})
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()
    assert api.get("/v1/jobs").json()["jobs"] == []


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``status`` and ``body``; records the paths asked."""

    status, body, paths = 502, b"<html>Bad Gateway</html>", []

    def _answer(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(self.status)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[str]:
    _Impostor.paths = []
    with http_server(_Impostor) as url:
        yield url


@pytest.mark.parametrize(
    "action", [["watch", "j1"], ["ls"], ["submit", "synthetic://64x48@10?seconds=1"]]
)
def test_the_cli_says_what_to_do_when_the_api_answers_a_web_page(
    impostor: str, action: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy's 502 page (or any non-JSON answer) where the jobs API should be: exit 1 with
    a line naming the URL — not a JSONDecodeError traceback."""
    from stack.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["jobs", *action, "--api", impostor])
    assert "is `loglog jobs serve` running" in str(exited.value.code)
    assert "HTTP 502" in str(exited.value.code)


def test_watch_asks_for_exactly_the_id_it_was_given(
    impostor: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id with '?', '#' or '/' is quoted into one path segment: it is looked up (and not
    found), never turned into a query string or another route."""
    from stack.cli import main

    monkeypatch.setattr(_Impostor, "status", 404)
    monkeypatch.setattr(_Impostor, "body", b'{"error": "no job"}')
    assert main(["jobs", "watch", "x?state=running#y/../z", "--api", impostor]) == 1
    assert _Impostor.paths == ["/v1/jobs/x%3Fstate%3Drunning%23y%2F..%2Fz"]
    assert "no job" in capsys.readouterr().err


@pytest.fixture
def private_redis(tmp_path) -> Iterator[str]:
    """A redis-server of this test's own, so its settings can be broken (never 6379's)."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server to start (make deps installs it)")
    with private_redis_server(tmp_path) as url:
        yield url


def test_a_redis_that_refuses_writes_is_a_503_with_the_fix(private_redis: str) -> None:
    """Redis out of memory (maxmemory, noeviction) answers every write with an error reply,
    not a dropped connection: the API says 503 and what to do, not a 500 traceback."""
    store = JobStore.connect(private_redis, prefix="t")
    with TestClient(create_app(down_dispatcher(store), publish_interval=60)) as api:
        store.client.config_set("maxmemory-policy", "noeviction")
        store.client.config_set("maxmemory", 1)
        response = api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=1"})
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert "refused" in error and "maxmemory" in error
        assert api.delete("/v1/jobs/nope").status_code in (404, 503)


def test_a_resubmitted_job_is_demand_once(api: TestClient) -> None:
    """A client retrying POST with the same id and source (the idempotent retry) gets the
    same job back; the frames demanded count once, or the demand rate doubles."""
    body = {"source": "synthetic://64x48@10?seconds=3", "id": "again"}
    first, second = api.post("/v1/jobs", json=body), api.post("/v1/jobs", json=body)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["created"] == second.json()["created"]
    text = api.get("/metrics").text
    assert metric(text, "fleet_frames_submitted_total") == 30.0
    assert metric(text, "fleet_backlog_frames") == 30.0


def test_a_huge_source_is_refused_without_echoing_it(api: TestClient) -> None:
    """A 60 KB "path" (under the body cap): refused with its length, not echoed whole into
    the answer (and the log) as "no such video file '<60 KB>'"."""
    response = api.post("/v1/jobs", json={"source": "/v/" + "a" * 60_000})
    assert response.status_code == 422
    assert len(response.content) < 1000 and "4096" in response.json()["error"]


@pytest.mark.parametrize("limit", [-1, 0])
def test_a_list_limit_below_one_is_refused(api: TestClient, limit: int) -> None:
    """``limit=-1`` silently dropped the oldest job (a Python slice), 0 listed nothing."""
    api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=1", "id": "a"})
    response = api.get(f"/v1/jobs?limit={limit}")
    assert response.status_code == 400 and "limit" in response.json()["error"]


def test_a_path_with_a_too_long_name_is_a_422_not_a_500(api: TestClient) -> None:
    """A 300-character file name: the OS says ENAMETOOLONG, which Path.is_file() raises
    (it only hides "not found"); the API answered 500."""
    # Relative: inside the API's source dir (the working directory), so the policy lets it
    # through to the probe, where the OS raises ENAMETOOLONG.
    response = api.post("/v1/jobs", json={"source": "a" * 300 + ".mp4"})
    assert response.status_code == 422 and "File name too long" in response.json()["error"]


def test_a_store_outage_during_a_segment_puts_the_segment_back() -> None:
    """SegmentRunner raises StoreUnavailable so that the segment is not acknowledged — but
    with task_acks_on_failure_or_timeout a raised exception *is* acknowledged: the segment
    was lost and its job stayed running forever. The task rejects it with requeue instead,
    after a pause (not a hot loop while Redis is down); other errors are left to Celery."""
    from celery.exceptions import Reject

    from fleet.worker import requeue_on_store_outage

    slept: list[float] = []

    def outage() -> str:
        raise StoreUnavailable("the job store at redis://127.0.0.1:6379/0 timed out")

    with pytest.raises(Reject) as caught:
        requeue_on_store_outage(outage, sleep=slept.append)
    assert caught.value.requeue is True and slept and slept[0] > 0
    assert requeue_on_store_outage(lambda: "done", sleep=slept.append) == "done"
    with pytest.raises(ZeroDivisionError):
        requeue_on_store_outage(lambda: str(1 / 0), sleep=slept.append)
    assert len(slept) == 1


def test_a_body_over_the_cap_is_a_413_before_it_is_read_and_the_api_keeps_serving(
    api: TestClient,
) -> None:
    """The jobs API buffered any body whole before validating it (a gigabyte POST took a
    gigabyte). Declared too large: 413 at once; a length that is not a number: 400. A
    good job right after is accepted."""
    from fleet.api import MAX_JOB_BODY_BYTES

    big = api.post("/v1/jobs", content=b"x" * (MAX_JOB_BODY_BYTES + 1),
                   headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413
    assert "at most 65536 bytes" in big.json()["error"]
    bad = api.post("/v1/jobs", content=b"{}", headers={"content-length": "many"})
    assert bad.status_code == 400 and "not a number" in bad.json()["error"]
    ok = api.post("/v1/jobs", json={"source": "synthetic://64x48@10?seconds=1", "id": "after"})
    assert ok.status_code == 202, ok.text


def test_a_chunked_body_that_never_ends_gets_its_413_while_still_sending(store: JobStore) -> None:
    """A real server and a raw socket: a chunked body with no length, 4 KB chunks sent for
    as long as the server lets us. The 413 must arrive after about the cap (64 KB), not
    after the client gives up — the server holds no more than the cap."""
    import socket
    import time

    with served(create_app(down_dispatcher(store), publish_interval=60)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            conn.setblocking(False)
            sent, answer = 0, b""
            while sent < 50 * 1024 * 1024 and b"\r\n\r\n" not in answer:
                try:
                    conn.sendall(b"1000\r\n" + b"y" * 4096 + b"\r\n")
                    sent += 4096
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.01)
                with contextlib.suppress(BlockingIOError):
                    answer += conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 10 * 1024 * 1024, f"the server read {sent} bytes before answering"


def test_jobs_serve_runs_uvicorn_with_the_connection_limits(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`loglog jobs serve` passes server_options() to uvicorn: the header deadline protocol
    and the connection cap (without them a slow client held a connection forever)."""
    import uvicorn

    from fleet.api import HEADER_TIMEOUT_S, MAX_CONNECTIONS
    from stack.cli import main

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.delenv("LOGLOG_TOKEN_FILE", raising=False)
    assert main(["jobs", "serve", "--store", redis_url, "--port", "9"]) == 0
    # The cap is the inference server's guard (its 503 names the limit), not uvicorn's
    # limit_concurrency.
    assert seen["http"].max_connections == MAX_CONNECTIONS
    assert seen["http"].header_timeout == HEADER_TIMEOUT_S


def test_the_submit_line_says_one_segment_not_one_segments() -> None:
    """A new user read "150 frames in 1 segments" after submitting a short clip."""
    from fleet.cli import job_size

    assert job_size(150, 1) == "150 frames in 1 segment"
    assert job_size(1, 1) == "1 frame in 1 segment"
    assert job_size(7200, 12) == "7200 frames in 12 segments"
