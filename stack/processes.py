"""Child processes of ``loglog up``: start, wait until ready, stop the whole group.

Every start appends a marker line to the child's log and remembers where it ends, so
``tail()`` shows what *this* run wrote (not start-up lines of an earlier run), and
``exit_status()`` says how it ended ("killed by SIGKILL", "exited with status 1").

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
from datetime import datetime
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


#: Bytes of a log read back for a tail: a chatty child's whole log is never loaded.
_TAIL_BYTES = 64 * 1024


def describe_exit(returncode: int) -> str:
    """ "killed by SIGKILL" for a negative return code, "exited with status N" otherwise."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Process:
    """One supervised child with a readiness URL and a log file (a :class:`stack.types.Child`)."""

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
        self.offset = 0  # where this run's output starts in the log
        self._group_cleared = False

    def start(self) -> None:
        handle = None
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.log, "ab")  # noqa: SIM115 - the child owns it; closed by the OS
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            handle.write(f"--- loglog up: {self.name} starting at {stamp} ---\n".encode())
            handle.flush()
        except OSError as exc:
            # Before, a logs directory gone or a full disk raised a bare OSError out of the
            # supervisor's loop (ending `loglog up`), or blamed the program ("cannot run").
            if handle is not None:
                with contextlib.suppress(OSError):  # the buffered marker fails again
                    handle.close()
            raise StackError(
                f"{self.name}: cannot write its log {self.log}: {exc.strerror or exc}. "
                f"Free space on that disk, or make {self.log.parent} a writable directory"
            ) from exc
        try:
            self.offset = handle.tell()
            self._group_cleared = False
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
            how = self.exit_status()
            if how is not None:
                raise StackError(
                    f"{self.name} {how} while starting; its log since it started "
                    f"({self.log}):\n{self.tail()}"
                )
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.2)
        raise StackError(
            f"{self.name} was not ready after {timeout:.0f}s ({self.ready_url}); "
            f"log: {self.log}\n{self.tail()}"
        )

    def ready(self) -> bool:
        """One probe of the readiness URL (200 within 2 s)."""
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines written since the last start, indented."""
        try:
            with open(self.log, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(self.offset, size - _TAIL_BYTES))
                text = handle.read().decode(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        if not text:
            return "    (it wrote nothing)"
        return "\n".join("    " + line[:300] for line in text[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self) -> str | None:
        """None while it runs (or before its first start); how it ended otherwise. A
        process left behind in its group is killed here, so a restart finds its port free."""
        if self.proc is None or self.proc.poll() is None:
            return None
        if not self._group_cleared:
            # Once, right after the exit is seen: later the number could be a new group's.
            self._group_cleared = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return describe_exit(self.proc.returncode)

    def where(self) -> str:
        return f"pid {self.proc.pid}" if self.proc is not None else "not started"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the child's group, SIGKILL it after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            # A stopped child (SIGSTOP, Ctrl-Z) would hold the SIGTERM pending for the whole
            # grace period: continue it so it handles it now (systemd does the same).
            os.killpg(self.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
