"""Prometheus and Alertmanager configuration for the embedded stack (and compose)."""

from __future__ import annotations

from typing import Any


def prometheus_config(
    *,
    jobs: dict[str, list[str]],
    rule_files: list[str],
    alertmanagers: list[str],
    scrape_interval: str = "5s",
    evaluation_interval: str = "5s",
) -> dict[str, Any]:
    """Scrape ``jobs`` (name → host:port targets), evaluate ``rule_files``, alert to
    ``alertmanagers``. The pushgateway job keeps the pushed job/instance labels."""
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "scrape_timeout": scrape_interval if _seconds(scrape_interval) < 10 else "10s",
        },
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]},
        "scrape_configs": [
            {
                "job_name": job,
                **({"honor_labels": True} if job == "pushgateway" else {}),
                "static_configs": [{"targets": targets}],
            }
            for job, targets in jobs.items()
        ],
    }


def _seconds(duration: str) -> float:
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * scale[suffix]
    return float(duration)
