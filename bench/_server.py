"""Benchmark helpers: a ``loglog serve`` subprocess on a free port, and its /proc numbers.

``python -m bench._server --port P [--probed]`` serves like ``loglog serve``; with
``--probed`` the HTTP path decodes images the way it did before 2026-11-28 (``av.open``
probing the container), so one benchmark run can put before and after side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from stack.processes import die_with_parent

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A served runtime in a child process; ``url``, ``pid``, ``stop()``."""

    def __init__(
        self,
        log: Path,
        *,
        probed: bool = False,
        config: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "bench._server", "--port", str(self.port)]
        command += ["--probed"] if probed else []
        command += ["--config", config] if config else []
        self._log: IO[str] = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            # A benchmark killed by hand must not leave its server running (and loading
            # the machine for the next benchmark): SIGTERM when this process dies.
            preexec_fn=die_with_parent,
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server was not ready within 180 s; see {log}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as answer:
            return json.loads(answer.read())

    def capacity(self) -> float:
        """Model-only items/s the server calibrated at the batch size it batches to."""
        profile = self.get("/v1/profile")
        return float(max(profile["capacity_items_per_s"].values()))

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def rss_bytes(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * _PAGE

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def delete(self, path: str) -> None:
        request = urllib.request.Request(f"{self.url}{path}", method="DELETE")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config")
    parser.add_argument("--probed", action="store_true")
    args = parser.parse_args()
    if args.probed:
        # Patched before anything imports it, so every ``from .video import decode_image``
        # (the runtime's, a decode stage's) gets the probing decoder.
        from inference import video

        def probed(data: bytes, content_type: str | None = None, **_: Any) -> Any:
            return video._decode_probed(data)  # an RGB array, as before: no frame

        video.decode_image = probed
    from inference.server.main import serve

    return serve(port=args.port, config=args.config)


if __name__ == "__main__":
    sys.exit(main())
