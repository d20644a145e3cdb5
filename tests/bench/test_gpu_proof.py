"""bench/gpu_proof.py: its dry run (CPU torch, FakeNvml, tiny phases) goes through every
step the GPU run takes and writes both results; a short budget or a missing GPU stops it
with a clear outcome rather than a half-written result."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("torch", reason="the torch extra: pip install -e '.[torch]'")


def _proof(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_proof", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_the_dry_run_measures_every_phase_and_writes_json_and_markdown(tmp_path):
    done = _proof("--dry-run", "--out", str(tmp_path), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_proof.json").read_text())
    assert result["dry_run"] is True and result["skipped"] == []
    engine = result["engine"]
    assert engine["kind"] == "torch" and engine["device"] == "cpu"
    assert engine["flops_agree"] and engine["flops_per_item_torch"] == 1_333_152_768
    assert [row["batch"] for row in result["calibration"]] == [1, 2]
    for row in result["calibration"]:
        assert row["items_per_s"] > 0 and row["kernel_items_per_s"] > 0
    phases = {phase["name"]: phase for phase in result["phases"]}
    assert set(phases) == {"tensor-b1", "tensor-b2", "image-b2", "streams-1", "streams-2"}
    for phase in phases.values():
        assert phase["delivered_per_s"] > 0, phase
        assert phase["bottleneck"], phase
        assert phase["pipeline_efficiency"] is not None and phase["engine_efficiency"] is not None
    assert result["verdict_at_saturation"]["phase"] == "image-b2"
    nvml = result["nvml"]
    assert nvml["module"] == "FakeNvml" and nvml["reason"] == "ok"
    assert {"gpu_utilization_ratio", "gpu_power_watts", "gpu_tensor_active_ratio"} <= set(
        nvml["series_seen"]
    )
    assert nvml["phases"]["streams-2"]["gpu_utilization_ratio"]["n"] >= 1
    assert nvml["scrape"]["status"] == 200
    assert "gpu_utilization_ratio" in nvml["scrape"]["gpu_families"]
    tests = result["gpu_tests"]
    assert tests["returncode"] == 0 and "2 skipped" in tests["summary"], tests
    text = (tmp_path / "gpu_proof.md").read_text()
    assert "DRY RUN" in text and "| tensor-b2 | 2 |" in text and "Verdict at saturation" in text


@pytest.mark.slow
def test_a_budget_too_short_for_any_phase_says_so_and_fails(tmp_path):
    """Phases that would start past the budget are skipped and listed; with none run, the
    exit status says the proof did not happen."""
    done = _proof("--dry-run", "--budget-s", "5", "--out", str(tmp_path), timeout=240)
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_proof.json").read_text())
    assert result["phases"] == []
    assert "tensor flood at batch 2: out of time" in result["skipped"]
    assert "Skipped: tensor flood at batch 2" in (tmp_path / "gpu_proof.md").read_text()


@pytest.mark.slow
def test_without_a_gpu_the_real_run_refuses_and_points_at_the_dry_run(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    done = _proof("--out", str(tmp_path), timeout=120)
    assert done.returncode != 0
    assert "PyTorch sees no CUDA GPU" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "gpu_proof.json").exists()
