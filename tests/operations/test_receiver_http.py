"""The alert receiver over HTTP: runbooks served by name only, payloads bounded."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

import pytest

from stack.receiver import MAX_PAYLOAD, RUNBOOKS, AlertReceiver


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
    for length, status in ((str(MAX_PAYLOAD + 1), 413), ("lots", 400), ("-5", 413)):
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
