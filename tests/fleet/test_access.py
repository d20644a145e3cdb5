"""The jobs API's control plane: the bearer token, the source allow-list and redaction
(before: POST/DELETE open on 0.0.0.0, any readable path or URL accepted as a source,
credentials echoed in errors and job records)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleet.access import SourcePolicy
from fleet.api import create_app
from fleet.model import PENDING, QUEUED, Job
from fleet.store import JobStore
from stack.cli import main
from tests.conftest import free_port
from tests.fleet.harness import down_dispatcher, served

TOKEN = "t0ken-" + "a" * 26
CLIP = "synthetic://64x48@10?seconds=1"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def secured(store: JobStore) -> Iterator[TestClient]:
    with TestClient(create_app(down_dispatcher(store), publish_interval=60, token=TOKEN)) as client:
        yield client


def test_submit_and_cancel_need_the_token_reads_and_scrapes_do_not(secured: TestClient) -> None:
    """401 without a token and with a wrong one (never echoing it), 202 with it; DELETE
    likewise; GET, /metrics, /healthz and /v1/sd/workers stay open."""
    body = {"source": CLIP, "id": "tok1"}
    missing = secured.post("/v1/jobs", json=body)
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    wrong = secured.post("/v1/jobs", json=body, headers={"authorization": "Bearer guess-123"})
    assert wrong.status_code == 401 and "guess-123" not in wrong.text
    assert secured.get("/v1/jobs/tok1").status_code == 404, "a refused POST created a job"
    good = {"authorization": f"Bearer {TOKEN}"}
    assert secured.post("/v1/jobs", json=body, headers=good).status_code == 202
    assert secured.delete("/v1/jobs/tok1").status_code == 401
    assert secured.get("/v1/jobs/tok1").json()["state"] == PENDING  # the broker is down
    assert secured.delete("/v1/jobs/tok1", headers=good).json()["state"] == "cancelled"
    for path in ("/v1/jobs", "/v1/jobs/tok1", "/metrics", "/healthz", "/v1/sd/workers"):
        assert secured.get(path).status_code == 200, path


def test_jobs_serve_refuses_a_network_bind_without_a_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 2 with the fix before connecting to anything (the store URL is a closed port);
    a short token file is refused the same way."""
    monkeypatch.delenv("LOGLOG_TOKEN_FILE", raising=False)
    store = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["jobs", "serve", "--host", "0.0.0.0", "--store", store]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 exposes the jobs API" in err and "--token-file" in err
    assert "openssl rand -hex 32" in err
    short = tmp_path / "short"
    short.write_text("abc\n")
    monkeypatch.setenv("LOGLOG_TOKEN_FILE", str(short))
    assert main(["jobs", "serve", "--host", "0.0.0.0", "--store", store]) == 2
    assert "must be one line" in capsys.readouterr().err


def test_file_sources_outside_source_dirs_are_refused_alike(
    store: JobStore, tmp_path: Path
) -> None:
    """422 saying what is allowed, the same words for a file that exists, one that does
    not, and a symlink from inside the allowed directory to outside it."""
    allowed, outside = tmp_path / "videos", tmp_path / "private"
    allowed.mkdir(), outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x" * 64)
    (allowed / "link.mp4").symlink_to(outside / "secret.mp4")
    app = create_app(down_dispatcher(store), publish_interval=60,
                     policy=SourcePolicy(file_dirs=(str(allowed),)))  # fmt: skip
    with TestClient(app) as api:
        answers = {}
        for name, source in {
            "exists": str(outside / "secret.mp4"),
            "missing": str(outside / "nope.mp4"),
            "file-url": f"file://{outside}/secret.mp4",
            "symlink": str(allowed / "link.mp4"),
            "dotdot": f"{allowed}/../private/secret.mp4",
            "etc": "/etc/passwd",
        }.items():
            response = api.post("/v1/jobs", json={"source": source})
            assert response.status_code == 422, (name, response.text)
            error = response.json()["error"]
            assert f"only from source_dirs ({allowed})" in error, error
            answers[name] = error.replace(source[:200], "SOURCE")
        assert answers["exists"] == answers["missing"] == answers["etc"], answers
        empty = api.post("/v1/jobs", json={"source": " "})  # not the API's working dir
        assert empty.status_code == 422 and "no source given" in empty.json()["error"]
        assert api.get("/v1/jobs").json()["jobs"] == []


def test_loopback_private_and_link_local_network_sources_are_refused(
    store: JobStore, redis_url: str
) -> None:
    """No request leaves the API for them, and an open port (our Redis) answers the same
    as a closed one. Schemes outside the allow-list are refused by name."""
    open_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with TestClient(create_app(down_dispatcher(store), publish_interval=60)) as api:
        answers = []
        for source in (
            f"http://127.0.0.1:{open_port}/x",
            f"http://127.0.0.1:{free_port()}/x",
            "http://169.254.169.254/latest/meta-data/",
            "rtsp://10.0.0.7:554/live",
            "https://[::1]/v.mp4",
            "http://localhost/v.mp4",
        ):
            response = api.post("/v1/jobs", json={"source": source})
            assert response.status_code == 422, (source, response.text)
            error = response.json()["error"]
            assert "not allowed" in error and "source_hosts" in error, error
            answers.append(error.replace(source, "SOURCE"))
        assert answers[0] == answers[1], "an open port must not answer differently"
        ftp = api.post("/v1/jobs", json={"source": "ftp://8.8.8.8/v.mp4"})
        assert ftp.status_code == 422 and "scheme 'ftp' is not allowed" in ftp.json()["error"]


def test_credentials_are_redacted_in_errors_and_job_records(
    store: JobStore, secured: TestClient
) -> None:
    """A refused source's error and a failed job's record show ``***``, never the
    password or token, in the store itself and in every API answer."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    for source in (
        "https://admin:hunter2@8.8.8.8/v.mp4?token=s3cr3t",  # allowed host, not finite
        "http://admin:hunter2@127.0.0.1/v.mp4?token=s3cr3t",  # refused host
    ):
        response = secured.post("/v1/jobs", json={"source": source}, headers=auth)
        assert response.status_code == 422
        assert "hunter2" not in response.text and "s3cr3t" not in response.text
        assert "admin:***@" in response.json()["error"]
    store.create(Job(id="old1", source="https://admin:hunter2@cam.example/v.mp4", state=QUEUED,
                     priority=0, total_frames=10, fps=10.0, segment_frames=10, segments=1,
                     created=time.time()))  # fmt: skip
    store.fail("old1", "segment 0: cannot open rtsp://admin:hunter2@10.0.0.7/live?token=s3cr3t")
    assert "hunter2" not in (store.get("old1").error or "")
    for answer in (secured.get("/v1/jobs/old1").text, secured.get("/v1/jobs").text):
        assert "hunter2" not in answer and "s3cr3t" not in answer
        assert "rtsp://admin:***@10.0.0.7/live?token=***" in answer


def test_the_cli_sends_the_token_from_the_file_or_the_environment(
    store: JobStore, token_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`loglog jobs submit/ls/watch` against a real server with a token: rejected
    without it, accepted with --token-file or LOGLOG_TOKEN_FILE."""
    monkeypatch.delenv("LOGLOG_TOKEN_FILE", raising=False)
    app = create_app(down_dispatcher(store), publish_interval=60, token=TOKEN)
    with served(app) as api:
        assert main(["jobs", "submit", CLIP, "--api", api]) == 1
        assert "Bearer" in capsys.readouterr().err
        assert main(["jobs", "submit", CLIP, "--api", api, "--token-file", str(token_file)]) == 0
        monkeypatch.setenv("LOGLOG_TOKEN_FILE", str(token_file))
        assert main(["jobs", "submit", CLIP, "--api", api]) == 0
        # Each submit echoes its source (in clear: a synthetic source holds no credential).
        assert capsys.readouterr().out.count(CLIP) == 2
        assert main(["jobs", "ls", "--api", api, "--json"]) == 0
        assert capsys.readouterr().out.count(CLIP) == 2
        monkeypatch.setenv("LOGLOG_TOKEN_FILE", os.devnull)
        with pytest.raises(SystemExit) as exited:
            main(["jobs", "ls", "--api", api])
        assert exited.value.code == 2
        assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "ls", "--api", "http://127.0.0.1:9"],
        ["jobs", "submit", "x.mp4", "--api", "http://127.0.0.1:9"],
        ["jobs", "serve", "--port", "9"],
        ["serve", "--port", "9"],
    ],
)
def test_a_token_file_that_is_a_directory_is_one_line_and_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``--token-file DIR`` ended in an IsADirectoryError traceback (exit 1); now every
    command that reads a token says so in one line and exits 2, before connecting."""
    monkeypatch.delenv("LOGLOG_TOKEN_FILE", raising=False)
    try:
        code = main([*argv, "--token-file", str(tmp_path)])
    except SystemExit as exited:
        code = exited.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the token file '{tmp_path}' is not a regular file" in err


@pytest.mark.slow
def test_submit_of_a_relative_path_that_does_not_exist_says_so(
    store: JobStore, tmp_path: Path
) -> None:
    """`loglog jobs submit archive/missing.mp4` from inside source_dirs, the API started in
    another directory: "no such video file" (before: the unresolved relative path was
    resolved by the API in its own directory, outside source_dirs, "is not allowed")."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    videos = tmp_path / "videos"
    (videos / "archive").mkdir(parents=True)
    app = create_app(down_dispatcher(store), publish_interval=60,
                     policy=SourcePolicy(file_dirs=(str(videos),)))  # fmt: skip
    with served(app) as api:
        result = subprocess.run(
            [sys.executable, "-m", "stack.cli", "jobs", "submit", "archive/missing.mp4",
             "--api", api],
            cwd=videos, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(root), "LOGLOG_TOKEN_FILE": ""},
        )  # fmt: skip
    assert result.returncode == 1, result
    assert "no such video file" in result.stderr, result.stderr
    assert str(videos / "archive" / "missing.mp4") in result.stderr
    assert "not allowed" not in result.stderr


def test_watch_of_an_unknown_job_names_the_command_that_lists_jobs(
    store: JobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API's 404 says "list jobs with GET /v1/jobs"; the CLI says `loglog jobs ls`."""
    with served(create_app(down_dispatcher(store), publish_interval=60)) as api:
        assert main(["jobs", "watch", "nosuchjob", "--api", api]) == 1
    err = capsys.readouterr().err
    assert "no job 'nosuchjob'" in err and "`loglog jobs ls`" in err, err
    assert "GET /v1/jobs" not in err
