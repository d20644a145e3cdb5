"""Benchmark helpers: a ``loglog serve`` subprocess on a free port, and its /proc numbers.

``python -m bench._server --port P [--probed]`` serves like ``loglog serve``; with
``--probed`` the HTTP path decodes images the way it did before 2026-11-28 (``av.open``
probing the container), so one benchmark run can put before and after side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
        root: str | None = None,
    ) -> None:
        """``root``: serve the code of another checkout (e.g. an export of main, for a
        before/after run in one benchmark) instead of this one."""
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
            env={**os.environ, **(env or {}), **({"PYTHONPATH": root} if root else {})},
            cwd=root,
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

    def rss_breakdown(self) -> dict[str, int]:
        """Resident bytes by kind of mapping (``/proc/PID/smaps``): glibc's main heap, the
        64 MiB-reserved per-thread arenas, other anonymous mappings (Python's arenas,
        large mmaps, thread stacks), and file-backed pages (code, shared libraries)."""
        return rss_by_mapping(Path(f"/proc/{self.pid}/smaps").read_text())

    def python_memory(self, path: Path) -> bool:
        """Ask a child started with ``LOGLOG_BENCH_TRACEMALLOC`` to write tracemalloc's top
        allocation sites to ``path`` (SIGUSR1); False when it did not within 30 s."""
        path.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.exists():
                return True
            time.sleep(0.2)
        return False

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


_ARENA_SPAN = 64 * 1024 * 1024  # glibc's HEAP_MAX_SIZE on 64-bit: each thread arena's reservation


def rss_by_mapping(smaps: str) -> dict[str, int]:
    """Sum ``Rss`` of each mapping in an smaps text into heap / arenas / anon / file."""
    totals = {"heap": 0, "arenas": 0, "anon": 0, "file": 0}
    kind = "anon"
    for line in smaps.splitlines():
        head = line.split(maxsplit=1)[0] if line else ""
        if "-" in head and not head.endswith(":"):  # a mapping's header line
            fields = line.split()
            start, end = (int(part, 16) for part in fields[0].split("-"))
            name = fields[5] if len(fields) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("/"):
                kind = "file"
            elif not name and start % _ARENA_SPAN == 0 and end - start <= _ARENA_SPAN:
                kind = "arenas"  # a thread arena's first part (the rest is PROT_NONE)
            else:
                kind = "anon"
        elif head == "Rss:":
            totals[kind] += int(line.split()[1]) * 1024
    return totals


def malloc_summary() -> str:
    """glibc's ``malloc_info`` per arena: mapped, free in bins (fast + rest), in use."""
    import ctypes
    import re
    import tempfile

    libc = ctypes.CDLL(None)
    with tempfile.NamedTemporaryFile("rb") as target:
        libc.fopen.restype = ctypes.c_void_p
        stream = libc.fopen(target.name.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(stream))
        libc.fclose(ctypes.c_void_p(stream))
        xml = target.read().decode()
    lines = []
    for heap in re.findall(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
        number, body = heap
        free = sum(
            int(size)
            for size in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', body)
        )
        mapped = int(re.search(r'<system type="current" size="(\d+)"', body).group(1))  # type: ignore[union-attr]
        lines.append(
            f"arena {number}: mapped {mapped / 2**20:.1f} MiB, free {free / 2**20:.1f} MiB, "
            f"in use {(mapped - free) / 2**20:.1f} MiB"
        )
    return "\n".join(lines)


def _trace_python_memory() -> None:
    """With ``LOGLOG_BENCH_TRACEMALLOC=FRAMES`` set, trace Python allocations, and on
    SIGUSR1 write the top sites (and the diff against the previous signal) to
    ``LOGLOG_BENCH_TRACEMALLOC_OUT``: what the soak bench uses to find what stays."""
    frames = os.environ.get("LOGLOG_BENCH_TRACEMALLOC")
    if not frames:
        return
    import threading
    import tracemalloc

    if int(frames) > 0:
        tracemalloc.start(int(frames))
    out = Path(os.environ.get("LOGLOG_BENCH_TRACEMALLOC_OUT", "tracemalloc.txt"))
    previous: list[Any] = []

    def dump() -> None:
        lines = ["glibc arenas:", malloc_summary()]
        if not tracemalloc.is_tracing():
            tmp = out.with_suffix(".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.rename(out)
            return
        snapshot = tracemalloc.take_snapshot()
        lines += [f"traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB"]
        lines += ["top by size:"]
        for stat in snapshot.statistics("traceback")[:12]:
            lines += [f"{stat.size / 2**20:.2f} MiB in {stat.count} blocks"]
            lines += stat.traceback.format(limit=int(frames))
        if previous:
            lines += ["grown since the previous dump:"]
            lines += [str(s) for s in snapshot.compare_to(previous[0], "lineno")[:25]]
        previous[:] = [snapshot]
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(out)

    # The handler only starts a thread: a snapshot takes seconds, and the signal may land
    # in the middle of anything on the main thread.
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=dump).start())


def main() -> int:
    _trace_python_memory()
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config")
    parser.add_argument("--probed", action="store_true")
    args = parser.parse_args()
    if args.probed:
        # Patched before anything imports it, so every ``from .video import decode_image``
        # (the runtime's, a decode stage's) gets the probing decoder.
        from inference.media import video

        def probed(data: bytes, content_type: str | None = None, **_: Any) -> Any:
            return video._decode_probed(data)  # an RGB array, as before: no frame

        video.decode_image = probed
    from inference.server.main import serve

    return serve(port=args.port, config=args.config)


if __name__ == "__main__":
    sys.exit(main())
