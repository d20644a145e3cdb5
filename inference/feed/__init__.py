"""Feeding a fast engine: streams decoded and preprocessed in worker processes.

::

    decode process 0 (own core)                         engine process
    ┌────────────────────────────────┐ FRAME (112 B) ┌──────────────────────────────────┐
    │ thread/stream: PyAV decode     │──── pipe ────▶│ reader: copy slot, FREE, account │
    │   → Preprocess → ring slot ────┼── shared mem ─┼▶ decode+preprocess ledgers       │
    │ stats row: call start/end      │◀─ FREE/CREDIT │   → stream mailbox (drop-oldest, │
    │ heartbeat                      │   COMMAND     │     fairness, backpressure)      │
    └────────────────────────────────┘               │ ingest → infer → post → encode   │
    decode process 1 …                               └──────────────────────────────────┘

One interpreter lock cannot feed a fast engine: with a near-free model, decode and
preprocess on threads of the server reached 0.41 of what two decode processes do on the
same two cores (issue 25). Here they run in ``decode_processes`` processes; the engine's
process keeps the engine, the queues and everything measured. Modules:

- :mod:`.shm` — anonymous shared regions (header, stats rows, the tensor ring);
- :mod:`.protocol` — the messages on the two pipes;
- :mod:`.worker` — the decode process itself (``python -m inference.feed.worker``);
- :mod:`.process`, :mod:`.remote` — one process and one stream, on the engine's side;
- :mod:`.pool` — the processes of a runtime, and its three points of contact with it;
- :mod:`.drills` — decode/preprocess drills applied inside the processes;
- :mod:`.claims` — host-wide core claims (no two engines, no two decode processes on one
  core); :mod:`.plan` — how many processes, on which cores.
"""

from __future__ import annotations

from .pool import DecodePool

__all__ = ["DecodePool"]
