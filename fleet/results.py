"""One JSON-lines results file per job, written so that redelivery never duplicates lines.

A segment's lines go to their own part file, written to a temporary name and renamed
into place: a worker killed mid-segment leaves no part (only a temporary file, which the
next attempt overwrites), and a redelivered segment replaces its part with the same
lines. When every segment is done the parts are concatenated in segment order into
``{root}/{job}.jsonl`` — again by rename, so readers see the whole file or none, and
assembling twice gives the same file::

    results = Results(Path("/data/results"))
    results.write_segment("job1", 0, [{"frame": 0, "top": …}])
    path = results.assemble("job1", segments=1)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import FleetError


class Results:
    """Part files and assembled results under ``root`` (shared by API and workers)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def part(self, job_id: str, index: int) -> Path:
        return self.root / job_id / f"part-{index:06d}.jsonl"

    def path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.jsonl"

    def write_segment(self, job_id: str, index: int, lines: Iterable[dict[str, Any]]) -> Path:
        """Write segment ``index``'s lines atomically (replacing an earlier attempt)."""
        part = self.part(job_id, index)
        part.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        _atomic_write(part, body.encode())
        return part

    def assemble(self, job_id: str, segments: int) -> Path:
        """Concatenate the parts in order into the job's results file."""
        missing = [i for i in range(segments) if not self.part(job_id, i).is_file()]
        if missing:
            raise FleetError(
                f"job {job_id!r}: segment part files {missing[:5]} are missing under "
                f"{self.root}: results must be on storage every worker shares"
            )
        target = self.path(job_id)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            for index in range(segments):
                out.write(self.part(job_id, index).read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        return target


def _atomic_write(path: Path, data: bytes) -> None:
    # A per-process temporary name: two workers running the same segment (a redelivery
    # racing the original) never write into one temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
