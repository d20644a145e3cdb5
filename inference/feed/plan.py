"""How many decode processes, and on which cores — decided once, at start.

``decode_processes`` (config): 0 decodes streams on threads of the server, as before;
N > 0 in up to N processes (one per stream until there are N); ``None`` (the default)
picks :func:`default_processes`. Each process runs FFmpeg and swscale on one thread:
it has a core, and FFmpeg's own threads on top only cost CPU there (issue 25: unpinned
on 2 cores, CPU per frame rose 55 %).

Cores: where the engine has a core of its own (:mod:`inference.tuning.affinity`), decode
processes use the others, one each, claimed host-wide (:mod:`.claims`) so that the
decode processes of several servers on one host spread out too. With more processes
than such cores, they share all the usable cores (the engine's included) and the OS
balances them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Set

from ..tuning.affinity import CorePlan


def default_processes(allowed: Set[int] | None) -> int:
    """One decode process per usable core but one (that one is the engine process's)."""
    cores = len(allowed) if allowed else (os.cpu_count() or 1)
    return max(0, cores - 1)


@dataclasses.dataclass(frozen=True)
class FeedPlan:
    """Decode processes and their cores: ``cores[i]`` are process i's, in order of
    preference; ``claim``: each claims one of them (else all share them)."""

    processes: int
    cores: tuple[tuple[int, ...], ...] = ()
    claim: bool = False

    def for_process(self, index: int) -> list[int] | None:
        return list(self.cores[index % len(self.cores)]) if self.cores else None

    def describe(self) -> str:
        if not self.processes:
            return "streams decode on threads (decode_processes: 0)"
        where = (
            "a core each" if self.claim else "sharing cores " + ",".join(map(str, self.cores[0]))
        ) if self.cores else "cores left to the OS"  # fmt: skip
        return f"up to {self.processes} decode process(es), {where}"


def feed_plan(
    configured: int | None, engine: CorePlan | None, allowed: Set[int] | None
) -> FeedPlan:
    """The plan for ``decode_processes: configured`` beside the engine's plan."""
    processes = default_processes(allowed) if configured is None else configured
    if processes == 0 or allowed is None:
        return FeedPlan(processes)
    spare = sorted(engine.others if engine is not None else allowed)
    if processes <= len(spare):
        # Process i prefers the i-th spare core; a claim held elsewhere moves it on.
        rotated = tuple(tuple(spare[i:] + spare[:i]) for i in range(processes))
        return FeedPlan(processes, rotated, claim=True)
    return FeedPlan(processes, (tuple(sorted(allowed)),), claim=False)
