"""`loglog serve` under hostile clients, over real sockets: huge bodies and decompression
bombs cost bounded memory, slow-header connections are closed, and off loopback the
control plane needs the token (the server refuses to start without one)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, until

pytestmark = pytest.mark.slow

TOKEN = "0123456789abcdef0123456789abcdef"


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                data = response.read()
                return response.status, json.loads(data) if data[:1] in (b"{", b"[") else {}
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def _start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    config = tmp_path / "serve.yaml"
    if not config.exists():
        config.write_text("calibration_seconds: 0.1\nheader_timeout_s: 1.0\n")
    log = open(tmp_path / "serve.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "serve", "--port", str(port),
         "--config", str(config), *args],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    log.close()
    server = Server(proc, port)

    def ready() -> bool:
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=2) as response:
            return response.status == 200

    until(ready, 120, "loglog serve ready")
    return server


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = _start(tmp_path)
    try:
        yield started
    finally:
        _stop(started)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG of zeros: a few hundred KB that decodes to width×height×3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    row = b"\x00" * (width * 3 + 1)
    block = row * 64
    parts = [packer.compress(block) for _ in range(height // 64)]
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def test_huge_bodies_are_refused_with_413_and_bounded_memory(server):
    """A declared 200 MB body is refused from its Content-Length before any byte is read;
    a chunked 200 MB body is cut off past max_body_bytes (32 MB). The server's RSS grows by
    well under the body size (before the fix: +380 MB per request)."""
    before = _rss(server.proc.pid)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.putrequest("POST", "/v1/infer")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(200 * 1024 * 1024))
    connection.endheaders()
    connection.send(b"\x93NUMPY" + b"\x00" * 65536)  # then nothing more
    response = connection.getresponse()
    assert response.status == 413 and b"max_body_bytes" in response.read()
    connection.close()

    def chunks() -> Iterator[bytes]:
        block = b"\x00" * (1024 * 1024)
        for _ in range(200):
            yield block

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(
            "POST", "/v1/infer", body=chunks(), headers={"Content-Type": "image/png"},
            encode_chunked=True,
        )  # fmt: skip
        status = connection.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the server answered and closed before the client finished sending
    assert status == 413
    connection.close()
    growth = _rss(server.proc.pid) - before
    assert growth < 120 * 1024 * 1024, f"RSS grew {growth / 2**20:.0f} MB"
    assert server.request("GET", "/healthz")[0] == 200


def test_a_decompression_bomb_is_refused_before_decoding(server):
    """A ~750 KB PNG that decodes to 16000×16000 (768 MB) is a 413 naming the pixel limit,
    at once and without the decoder's allocation (before: 8.7 s and +2.2 GB)."""
    bomb = _png_bomb(16000, 16000)
    assert len(bomb) < 2 * 1024 * 1024
    before = _rss(server.proc.pid)
    started = time.monotonic()
    status, body = server.request("POST", "/v1/infer", bomb, {"Content-Type": "image/png"})
    assert status == 413 and "max_image_pixels" in body["detail"]
    assert time.monotonic() - started < 30  # a hang guard, not a timing claim
    growth = _rss(server.proc.pid) - before
    assert growth < 100 * 1024 * 1024, f"RSS grew {growth / 2**20:.0f} MB"
    zero = _png_bomb(0, 64)
    assert server.request("POST", "/v1/infer", zero, {"Content-Type": "image/png"})[0] == 400
    huge_npy = (
        b"\x93NUMPY\x01\x00v\x00"
        + (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }".ljust(117)
            + "\n"
        ).encode()
    )
    status, body = server.request(
        "POST", "/v1/infer", huge_npy, {"Content-Type": "application/x-npy"}
    )
    assert status == 413 and "max_tensor_elements" in body["detail"]


def test_slow_header_connections_are_closed(server):
    """A client that never finishes its headers is disconnected after header_timeout_s
    (1 s here), while normal requests go on being served (before: held forever)."""
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: incomplete
    assert server.request("GET", "/healthz")[0] == 200
    for sock in slow:
        assert sock.recv(1024) == b"", "the server closed the slow connection"
        sock.close()


def test_off_loopback_the_server_needs_a_token_and_enforces_it(tmp_path):
    """--host 0.0.0.0 without a token exits 2 with the fix; with --token-file, streams
    and drills need 'Authorization: Bearer', while /metrics, /healthz, /readyz stay open."""
    refused = subprocess.run(
        [sys.executable, "-m", "stack.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--token-file" in refused.stderr and "LOGLOG_TOKEN_FILE" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server = _start(
        tmp_path, "--host", "0.0.0.0", "--allow-drills", env={"LOGLOG_TOKEN_FILE": str(token_file)}
    )
    try:
        stream = json.dumps({"source": "synthetic://64x64@5", "id": "cam"}).encode()
        drill = json.dumps({"stage": "infer", "delay_ms": 1, "duration_s": 5}).encode()
        json_type = {"Content-Type": "application/json"}
        for method, path, body in (
            ("POST", "/v1/streams", stream),
            ("DELETE", "/v1/streams/cam", None),
            ("POST", "/v1/drills", drill),
            ("DELETE", "/v1/drills", None),
        ):
            for auth in (None, "Bearer wrong-token-wrong-token", f"Basic {TOKEN}"):
                headers = dict(json_type, **({"Authorization": auth} if auth else {}))
                status, answer = server.request(method, path, body, headers)
                assert status == 401 and TOKEN not in json.dumps(answer), (method, path, auth)
        for path in ("/metrics", "/healthz", "/readyz"):
            assert server.request("GET", path)[0] == 200
        authorized = dict(json_type, Authorization=f"Bearer {TOKEN}")
        assert server.request("POST", "/v1/streams", stream, authorized)[0] == 201
        assert server.request("DELETE", "/v1/streams/cam", None, authorized)[0] == 204
        assert server.request("POST", "/v1/drills", drill, authorized)[0] == 201
    finally:
        _stop(server)
    assert TOKEN not in (tmp_path / "serve.log").read_text()
