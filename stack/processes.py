"""Child processes of ``loglog up``: start, wait until ready, stop the whole group.

Each child gets a session (and process group) of its own, so a Ctrl-C or a closed
terminal reaches only ``loglog up``, which then stops the children's groups in order
(SIGTERM, then SIGKILL after a grace period) and checks that none is left. Should ``loglog
up`` itself be killed outright (SIGKILL, OOM), Linux's parent-death signal still sends
each child SIGTERM, so no component outlives it holding its port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
try:  # resolved here, in the parent: the child between fork and exec should not dlopen
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; a no-op elsewhere)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class StackError(Exception):
    """A component cannot start; the message says why and what to do."""


class Process:
    """One supervised child with a readiness URL and a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready_url: str,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.argv = argv
        self.ready_url = ready_url
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it; closed by the OS
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise StackError(f"{self.name}: cannot run {self.argv[0]}: {exc.strerror}") from exc
        finally:
            handle.close()

    def wait_ready(self, timeout: float, stop: Callable[[], bool] = lambda: False) -> float:
        """Seconds until the readiness URL answers 200; StackError if the child dies first."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if stop():
                raise StackError("interrupted while starting")
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise StackError(
                    f"{self.name} exited with status {self.proc.returncode} while starting; "
                    f"its last log lines ({self.log}):\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise StackError(
            f"{self.name} was not ready after {timeout:.0f}s ({self.ready_url}); "
            f"log: {self.log}\n{self.tail()}"
        )

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line[:300] for line in text[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the child's group, SIGKILL it after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
