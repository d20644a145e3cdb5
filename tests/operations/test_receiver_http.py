"""The alert receiver over HTTP: runbooks served by name only, payloads bounded."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

import pytest

from stack.receiver import MAX_PAYLOAD, RUNBOOKS, AlertReceiver
from tests.conftest import read_until_closed, slow_clients


@pytest.fixture
def receiver(tmp_path):
    started = AlertReceiver("127.0.0.1", 0, tmp_path / "alerts.jsonl")
    started.start()
    yield started
    started.stop()


def test_every_generated_runbook_link_answers_over_http(receiver):
    """Each alert's runbook is served at /runbooks/<Alert>.md as Markdown (before, links
    were file:// paths on the machine that ran `loglog up`)."""
    pages = sorted(p.name for p in RUNBOOKS.glob("*.md"))
    assert pages
    for name in pages:
        with urllib.request.urlopen(f"{receiver.url}/runbooks/{name}", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/markdown")
            assert response.read() == (RUNBOOKS / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    ["/runbooks/../../README.md", "/runbooks/%2e%2e/README.md", "/runbooks/Nope.md",
     "/runbooks/.hidden.md", "/runbooks/x.md/", "/runbooks//etc/passwd"],
)  # fmt: skip
def test_nothing_but_runbooks_is_served(receiver, path):
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    assert response.status == 404 and b"# " not in body
    connection.close()


def test_oversized_and_malformed_payload_lengths_are_refused(receiver):
    """Over MAX_PAYLOAD: 413, unread. A length that is no number (negative included) is
    malformed: 400, from the HTTP parser before the app (it was 413 for -5 before)."""
    for length, status in ((str(MAX_PAYLOAD + 1), 413), ("lots", 400), ("-5", 400)):
        connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
        connection.putrequest("POST", "/alerts/page")
        connection.putheader("Content-Length", length)
        connection.endheaders()
        assert connection.getresponse().status == status
        connection.close()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            urllib.request.Request(f"{receiver.url}/alerts/page", data=b"[1]"), timeout=5
        )
    assert info.value.code == 400
    info.value.close()


def test_a_chunked_payload_over_the_limit_is_refused_while_it_streams(tmp_path, monkeypatch):
    """A body without Content-Length is counted as it arrives: past MAX_PAYLOAD, a 413
    (before, a chunked body was read as empty and answered 400 "null")."""
    monkeypatch.setattr("stack.receiver.MAX_PAYLOAD", 1024)
    receiver = AlertReceiver("127.0.0.1", 0, tmp_path / "alerts.jsonl")
    receiver.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
        connection.request(
            "POST", "/alerts/page", body=iter([b"[" + b"1," * 400, b"1," * 400 + b"1]"]),
            encode_chunked=True,
        )  # fmt: skip
        response = connection.getresponse()
        assert response.status == 413 and b"at most 1024 bytes" in response.read()
        connection.close()
    finally:
        receiver.stop()
    assert not (tmp_path / "alerts.jsonl").exists()


@pytest.mark.slow
def test_slow_connections_hold_no_more_than_the_cap_and_only_until_the_deadline(
    tmp_path, monkeypatch
):
    """Twenty clients send half a request line and stop. Four (the cap here) are served
    and closed at the 1 s deadline; the rest get a 503 at once. Before, each held a
    thread, and a client sending a byte every few seconds held it forever."""
    monkeypatch.setattr("stack.receiver.MAX_CONNECTIONS", 4)
    monkeypatch.setattr("stack.receiver.REQUEST_TIMEOUT_S", 1.0)
    receiver = AlertReceiver("127.0.0.1", 0, tmp_path / "alerts.jsonl")
    receiver.start()
    sockets = slow_clients(receiver.port, 20, b"POST /ale")
    try:
        answers = [read_until_closed(sock) for sock in sockets]
        busy = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert len(busy) >= 12 and all(b"too many connections" in a for a in busy)
        assert answers.count(b"") >= 1  # the held ones: closed at the deadline, unanswered
        with urllib.request.urlopen(f"{receiver.url}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        for sock in sockets:
            sock.close()
        receiver.stop()
