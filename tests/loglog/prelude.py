"""Imported by scenario scripts: report results back to the test as JSON."""

from __future__ import annotations

import json
import os
from typing import Any


def flat_stats() -> dict[str, Any]:
    """loglog.stats() with tuple keys joined by '|', JSON-ready."""
    import loglog

    stats = loglog.stats()
    return {
        "emitted": stats["emitted"],
        "dropped": {"|".join(k): v for k, v in stats["dropped"].items()},
        "delivered": {"|".join(k): v for k, v in stats["delivered"].items()},
        "sink_errors": stats["sink_errors"],
        "replayed": stats["replayed"],
        "internal_errors": stats["internal_errors"],
        "truncated": stats["truncated"],
    }


def total(table: dict[str, int], **match: str) -> int:
    """Sum entries of a flattened table whose key parts match, e.g. sink='file'."""
    order = {"sink": 0, "level": 1, "reason": 2}
    result = 0
    for key, value in table.items():
        parts = key.split("|")
        if all(parts[order[name]] == want for name, want in match.items()):
            result += value
    return result


def report(**values: Any) -> None:
    with open(os.environ["RESULT"], "w") as handle:
        json.dump(values, handle)
