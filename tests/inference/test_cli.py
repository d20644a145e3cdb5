"""The inference commands as users run them: `loglog serve`, `profile`, `loadgen`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import free_port, http_server, until
from tests.inference.conftest import small_model_path

pytestmark = pytest.mark.slow


def _loglog(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def server(tmp_path):
    """`loglog serve --allow-drills` with three synthetic streams, on a free port, serving
    the small model: a drilled stage must be the bottleneck however busy the host is (with
    the default CNN, a loaded 2-core host made infer the true bottleneck)."""
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "serve", "--port", str(port), "--allow-drills", "--demo-streams", "3",
         "--demo-source", "synthetic://320x240@20", "--model", str(small_model_path())],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200

    try:
        until(ready, 120, "loglog serve ready")
        until(
            lambda: len(json.load(urllib.request.urlopen(f"{url}/v1/streams"))) == 3,
            30,
            "demo streams",
        )
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


def _drill(url: str, stage: str, delay_ms: float) -> None:
    body = json.dumps({"stage": stage, "delay_ms": delay_ms, "duration_s": 60}).encode()
    request = urllib.request.Request(
        f"{url}/v1/drills", data=body, headers={"Content-Type": "application/json"}
    )
    assert urllib.request.urlopen(request, timeout=5).status == 201


def test_profile_names_a_drilled_bottleneck_in_plain_words(server):
    """With preprocess slowed by a drill, `loglog profile` prints the stage table and a
    verdict naming preprocess, with advice. 200 ms per frame: the server decodes its
    streams in decode processes, where each stream preprocesses on its own thread, so
    the drill must outlast a frame's period (50 ms) to limit throughput."""
    _drill(server, "preprocess", 200)
    result = _loglog("profile", "--url", server, "--interval", "4")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for header in ("stage", "items/s", "p50 ms", "p99 ms", "util", "queue", "wait p99 ms"):
        assert header in out
    assert "Bottleneck: preprocess" in out
    assert "Advice: A drill makes preprocess slow" in out  # the drill, not "Add preprocess workers"
    as_json = json.loads(_loglog("profile", "--url", server, "--interval", "3", "--json").stdout)
    assert as_json["verdict"]["bottleneck"] == "preprocess"
    assert {row["stage"] for row in as_json["rows"]} == {
        "decode",
        "preprocess",
        "infer",
        "postprocess",
        "encode",
    }


def test_profile_of_an_unreachable_server_says_so():
    result = _loglog("profile", "--url", f"http://127.0.0.1:{free_port()}", "--interval", "0.1")
    assert result.returncode == 2 and "cannot read metrics" in result.stderr


@pytest.fixture
def pushgateway(tmp_path):
    if shutil.which("prometheus-pushgateway") is None:
        pytest.skip("needs Debian's prometheus-pushgateway")
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    until(
        lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200, 30, "pushgateway"
    )
    yield url
    proc.terminate()
    proc.wait(10)


def test_loadgen_rps_and_streams_report_and_push_to_the_pushgateway(server, pushgateway):
    """--rps sends JPEGs on a fixed schedule and reports latency; --streams runs synthetic
    streams through the API; both push their summary to a real Pushgateway. (The demo
    streams are deleted first: they go first, and on a loaded host they alone can take the
    whole engine, when every request is refused by design.)"""
    for stream in json.load(urllib.request.urlopen(f"{server}/v1/streams")):
        request = urllib.request.Request(f"{server}/v1/streams/{stream['id']}", method="DELETE")
        assert urllib.request.urlopen(request, timeout=30).status == 204

    def streams_gone() -> bool:
        profile = json.load(urllib.request.urlopen(f"{server}/v1/profile", timeout=30))
        return profile["admission"]["stream_items_per_s"] == 0

    until(streams_gone, 30, "the streams' frames out of the admission's rates")
    rps = _loglog(
        "loadgen", "--url", server, "--rps", "5", "--duration", "3", "--pushgateway", pushgateway
    )
    assert rps.returncode == 0, rps.stderr
    summary = json.loads(rps.stdout)
    assert summary["statuses"].get("2xx", 0) >= 5 and summary["latency_ms_2xx"]["p99"] > 0
    assert summary["goodput_rps"] > 0 and summary["slo_ms"] == 1000.0
    metrics = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5).read().decode()
    assert 'loglog_loadgen_requests_total{instance="",job="loglog_loadgen",status="2xx"}' in metrics
    assert "loglog_loadgen_latency_seconds_bucket" in metrics
    streams = _loglog(
        "loadgen",
        "--url",
        server,
        "--streams",
        "2",
        "--duration",
        "3",
        "--source",
        "synthetic://160x120@10",
    )
    assert streams.returncode == 0, streams.stderr
    assert json.loads(streams.stdout)["streams"] == 2
    remaining = json.load(urllib.request.urlopen(f"{server}/v1/streams"))
    assert not [s for s in remaining if s["id"].startswith("loadgen-")], (
        "loadgen cleans up its streams"
    )


def test_profile_reads_prometheus_across_replicas(loglog_up):
    """`loglog profile --prometheus` builds the same table from PromQL (summed across
    replicas) — here against the stack's real Prometheus."""
    urls = loglog_up(model=small_model_path())  # so the drill, not CPU contention, limits
    until(
        lambda: json.load(urllib.request.urlopen(f"{urls['prometheus']}/api/v1/query?query=up%7Bjob%3D%22inference%22%7D"))["data"]["result"],
        60, "inference scraped",
    )  # fmt: skip
    _drill(urls["inference"], "postprocess", 60)
    import time

    time.sleep(20)
    result = _loglog("profile", "--prometheus", urls["prometheus"], "--window", "15s")
    assert result.returncode == 0, result.stderr
    assert "Bottleneck: postprocess" in result.stdout, result.stdout


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["agent", "--port", "1"]])
def test_a_bad_logging_url_is_reported_without_its_password(command):
    """An invalid LOGLOG_LOKI_URL exits 2 with the fix and the password hidden (before: a
    traceback whose ConfigError printed the password)."""
    result = subprocess.run(
        [sys.executable, "-m", "stack.cli", *command],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "LOGLOG_LOKI_URL": "ftp://user:hunter2@loki:3100"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "hunter2" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert "user:***@loki" in result.stderr and "http(s)://" in result.stderr


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"success","data":{"resultType":"vector","result":"oops"}}',
        b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"2"]}]}}',
        b'{"status":"success"}',
        b'["not", "an", "object"]',
    ],
)
def test_profile_of_a_prometheus_answering_the_wrong_json_says_so(body, capsys):
    """--prometheus pointing at something that answers JSON, but not Prometheus' shape:
    exit 2 naming the URL (it was a KeyError/AttributeError traceback)."""
    import http.server

    from inference.tools.profile import main

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Impostor) as url:
        code = main(url="", prometheus=url, interval=0.1, as_json=False)
    err = capsys.readouterr().err
    assert code == 2 and f"cannot read metrics from {url}" in err


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan"), float("inf")])
def test_profile_refuses_an_interval_that_is_not_a_positive_time(interval, capsys):
    """--interval 0 divides rates by a near-zero span, -1/nan crashed inside sleep() and
    were reported as "cannot read metrics", inf never returned: refused up front."""
    from inference.tools.profile import main

    code = main(url=f"http://127.0.0.1:{free_port()}", prometheus=None, interval=interval,
                as_json=False)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--interval" in err and "cannot read metrics" not in err
