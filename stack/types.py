"""The vocabulary of ``loglog up``: a child the supervisor keeps running, and what it says
about one.

A :class:`Child` is anything the supervisor can start, look at and stop: a subprocess
(:class:`stack.processes.Process`) or the alert receiver that runs inside ``loglog up``
(:class:`stack.receiver.ReceiverChild`). The supervisor (:mod:`stack.supervisor`) only
talks to this protocol, so its tests drive a fake child with a fake clock.

A :class:`ComponentStatus` is one component as the supervisor sees it at one moment: what
the status line prints and what ``/metrics`` exports.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

#: Supervisor states (supervisord's names where they exist; systemd calls FAILED "failed").
STARTING = "starting"  # started, not ready yet
RUNNING = "running"  # ready
BACKOFF = "backoff"  # exited; waiting out the restart delay
FAILED = "failed"  # crash loop: left down until retried (SIGUSR1) or `loglog up` restarts
STATES = (STARTING, RUNNING, BACKOFF, FAILED)


class Child(Protocol):
    """One supervised component."""

    name: str

    def start(self) -> None:
        """Start it (again); raise :class:`stack.processes.StackError` if it cannot."""

    def exit_status(self) -> str | None:
        """None while it runs; once it ended, how: "killed by SIGKILL", "exited with
        status 1"."""

    def ready(self) -> bool:
        """One readiness probe, answered within a few seconds."""

    def stop(self, grace: float = 10.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after ``grace`` seconds); a no-op if ended."""

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines it wrote since its last start, indented for printing."""

    def where(self) -> str:
        """Where it runs, for a line on the console: "pid 1234"."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ComponentStatus:
    """One component as the supervisor sees it now."""

    name: str
    state: str  # one of STATES
    restarts: int  # restarts done since `loglog up` started
    last_restart: float  # Unix time of the last restart; 0 when never restarted
    detail: str  # why it is not running ("" when it runs)
    alerting: bool  # part of the alerting path: nothing pages while it is down

    @property
    def up(self) -> bool:
        return self.state == RUNNING
