"""Red-team finding (red26): idle connections past the open-files limit (``ulimit -n``,
often 1024) made accept() fail before the max_connections guard could see them, so
/healthz and Prometheus' scrapes timed out while max_connections was far from reached."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from tests.conftest import free_port
from tests.operations.stack_harness import wait

pytestmark = pytest.mark.slow

SERVER = textwrap.dedent(
    """
    import resource, sys
    import uvicorn
    from httpkit.connections import uvicorn_options
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    options = uvicorn_options(header_timeout=30, max_connections=512)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", **options)
    """
)


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            return int(answer.status)
    except OSError:
        return 0


def test_idle_connections_under_max_connections_never_lock_out_the_probes():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    held: list[socket.socket] = []
    try:
        wait("the server", lambda: _healthz(port) == 200, 60)
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        assert _healthz(port) == 200, "300 idle connections (max_connections 512) lock out /healthz"
    finally:
        for sock in held:
            sock.close()
        server.kill()
        server.wait(10)


def test_a_hard_limit_too_low_for_max_connections_fails_at_start_naming_both():
    script = textwrap.dedent(
        """
        import resource
        from httpkit.connections import OpenFilesError
        from httpkit.connections import uvicorn_options
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))
        try:
            uvicorn_options(header_timeout=10, max_connections=512)
        except OpenFilesError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert "max_connections 512" in out and "300" in out and "44 or less" in out


def test_loglog_serve_refuses_a_max_connections_the_hard_limit_cannot_hold(tmp_path):
    """The check runs at start-up of ``loglog serve`` (exit 2, one line naming the
    setting), not as a traceback or at the 300th connection at 3 a.m."""
    config = tmp_path / "serve.yaml"
    config.write_text("max_connections: 512\n")
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))
        from inference.server.main import serve
        from tests.inference.conftest import small_model_path
        sys.exit(serve(config={str(config)!r}, model=str(small_model_path()), port={free_port()}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "loglog serve:" in done.stderr and "max_connections 512" in done.stderr
    assert "Traceback" not in done.stderr
