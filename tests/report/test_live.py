"""`loglog report` against the embedded stack (`loglog up`): the real metrics, recording rules
and alerts give a report with data, an HTML and a PDF."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus"),
]


def _has(prometheus: str, expr: str) -> bool:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return bool(json.load(response)["data"]["result"])


def test_report_of_a_running_embedded_stack(loglog_up, tmp_path: Path):
    """Throughput, latency and capacity have data within a few minutes of `loglog up`; no
    job dashboard here, so the job section says so."""
    prometheus = loglog_up()["prometheus"]
    # The report reduces over 15 s-aligned subquery points: wait until one has data.
    for recorded in (
        "job:inference_delivered_items:rate5m",
        "job:inference_pipeline_efficiency:ratio",
    ):
        until(
            lambda r=recorded: _has(prometheus, f"sum_over_time(sum({r})[599s:15s])"),
            150,
            f"{recorded} on a subquery point",
        )
    result = subprocess.run(
        [sys.executable, "-m", "stack.cli", "report", "--prometheus", prometheus,
         "--range", "10m", "--out", str(tmp_path / "reports"), "--pdf"],
        capture_output=True, text=True, timeout=180, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    up_said = (tmp_path / "up.log").read_text()
    assert (
        f"loglog report --prometheus {prometheus} --out {tmp_path / 'state' / 'reports'} --pdf"
        in up_said
    )
    html = next((tmp_path / "reports").glob("*.html")).read_text()
    assert next((tmp_path / "reports").glob("*.pdf")).stat().st_size > 10_000
    sentences = dict(
        re.findall(
            r'<section id="([\w-]+)"[^>]*>\s*<h2>.*?</h2>\s*<p class="sentence">(.*?)</p>', html
        )
    )
    assert sentences["throughput"].startswith("Delivered "), sentences
    assert "of model capacity on average" in sentences["capacity"], sentences
    assert "Data starts" in sentences["throughput"]  # the stack is younger than ten minutes
    assert sentences["jobs"].startswith("No job reported progress")  # no fleet in this stack
    # Latency and capacity are drawn; throughput too once its 5-minute rate is full (a
    # younger stack's throughput is a ramp: said, not drawn).
    drawn = html.count('<figure class="chart"')
    assert drawn >= 3 or (drawn >= 2 and "Nothing to draw for “Throughput” yet" in html), html
