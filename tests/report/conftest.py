"""One Prometheus for the report's golden scenarios (session-wide: started once per worker)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.report import known, scenarios


@dataclass
class Golden:
    url: str
    ends: dict[str, int]  # scenario → the end of its two-hour range


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Golden]:
    """Every scenario backfilled 40 days apart into one TSDB; lookback 30 s stands in for
    the staleness markers a backfill cannot write (see tests/report/scenarios.py)."""
    if shutil.which("prometheus") is None:
        pytest.skip("needs Debian's prometheus")
    work = tmp_path_factory.mktemp("golden")
    base = known.aligned_end()
    ends = {name: base - i * scenarios.SPACING for i, name in enumerate(scenarios.SCENARIOS)}
    texts = tuple(make(ends[name]) for name, make in scenarios.SCENARIOS.items())
    with known.prometheus(
        work / "data",
        end=None,
        log=work / "prometheus.log",
        sources=texts,
        flags=("--query.lookback-delta=30s",),
        retention="1000d",
    ) as url:
        yield Golden(url, ends)
