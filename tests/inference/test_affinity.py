"""A single-threaded CPU engine gets a core of its own; everything else the rest."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inference.config import RuntimeConfig
from inference.errors import ConfigError
from inference.runtime import Runtime
from inference.tuning.affinity import CorePlan, plan
from inference.types import EngineInfo
from tests.inference.conftest import small_model_path

CPU1 = EngineInfo("m", "onnxruntime", "x", (3, 8, 8), "float32", ("y",), "cpu", threads=1)


def test_plan_pins_only_a_single_threaded_cpu_engine_with_a_spare_core():
    assert plan(CPU1, True, {0, 1}) == CorePlan(frozenset({1}), frozenset({0}))
    assert plan(CPU1, True, {2, 5, 7}) == CorePlan(frozenset({7}), frozenset({2, 5}))
    assert plan(CPU1, False, {0, 1}) is None
    assert plan(CPU1, True, {0}) is None  # one core: nothing to give away
    assert plan(CPU1, True, None) is None  # the OS cannot pin (not Linux)
    two_threads = dataclasses.replace(CPU1, threads=2)
    assert plan(two_threads, True, {0, 1, 2}) is None
    gpu = dataclasses.replace(CPU1, device="NVIDIA H200")
    assert plan(gpu, True, {0, 1}) is None
    # Two infer workers on the engine's one core would only take turns.
    assert plan(CPU1, True, {0, 1}, infer_workers=2) is None


def test_pin_engine_is_a_yes_or_no_and_a_wrong_value_fails_at_start_up(tmp_path):
    """YAML's own booleans (``off``, ``no``) read as false; a string is refused."""
    from inference.config import load_config

    path = tmp_path / "serve.yaml"
    path.write_text("pin_engine: off\n")
    assert load_config(str(path)).pin_engine is False
    with pytest.raises(ConfigError, match="pin_engine"):
        RuntimeConfig(pin_engine="auto")  # type: ignore[arg-type]


def _allowed(thread: threading.Thread) -> set[int]:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    line = next(row for row in status.splitlines() if row.startswith("Cpus_allowed_list"))
    cores: set[int] = set()
    for part in line.split(":", 1)[1].strip().split(","):
        low, _, high = part.partition("-")
        cores.update(range(int(low), int(high or low) + 1))
    return cores


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two usable cores",
)
@pytest.mark.parametrize("pin", [True, False])
def test_the_infer_workers_run_on_the_engine_core_and_the_other_stages_do_not(pin):
    """A real runtime (default model, one engine thread): pinned, the infer thread may run
    on the last core only and the other stage threads everywhere else; unpinned, all
    where the process may run. The test process's own threads are never touched."""
    allowed = set(os.sched_getaffinity(0))
    runtime = Runtime(
        model=small_model_path(),
        config=RuntimeConfig(engine_threads=1, pin_engine=pin, calibration_seconds=0.1),
        registry=CollectorRegistry(),
    )
    runtime.start(progress=lambda message: None)
    try:
        item = runtime.infer_image(np.zeros((64, 64, 3), dtype=np.uint8))
        assert item.result["top"]
        assert runtime.pipeline is not None
        stages = {t.name: t for t in runtime.pipeline._threads if t.is_alive()}
        assert {"infer-0", "preprocess-0", "decode-0"} <= set(stages)
        # Pinned, the engine's core is the one this runtime claimed host-wide (another
        # engine on the host, a parallel test's included, may hold the last core).
        engine_core = min(runtime.cores.engine) if runtime.cores is not None else -1
        assert not pin or (runtime.cores is not None and len(runtime.cores.engine) == 1)
        for name, thread in stages.items():
            got = _allowed(thread)
            if not pin:
                assert got == allowed, name
            elif name.startswith("infer"):
                assert got == {engine_core}, name
            else:
                assert got == allowed - {engine_core}, name
        assert set(os.sched_getaffinity(0)) == allowed  # this (the caller's) thread
    finally:
        runtime.stop()


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two usable cores",
)
def test_more_infer_workers_at_run_time_get_every_core_back():
    """A live reload to workers.infer: 3 pinned all three to the engine's one core, where
    they could only take turns (found by a red-team run): now every infer thread, old and
    new, may run anywhere, while the other stages stay off the engine's core."""
    allowed = set(os.sched_getaffinity(0))
    runtime = Runtime(
        model=small_model_path(),
        config=RuntimeConfig(engine_threads=1, calibration_seconds=0.1),
        registry=CollectorRegistry(),
    )
    runtime.start(progress=lambda message: None)
    try:
        assert runtime.cores is not None and runtime.pipeline is not None
        runtime.pipeline.set_workers("infer", 3)
        item = runtime.infer_image(np.zeros((64, 64, 3), dtype=np.uint8))
        assert item.result["top"]
        mine = [t for t in runtime.pipeline._threads if t.is_alive()]
        infer = [t for t in mine if t.name.startswith("infer-")]
        assert len(infer) == 3
        for thread in infer:
            assert _allowed(thread) == allowed, thread.name
        preprocess = next(t for t in mine if t.name == "preprocess-0")
        assert _allowed(preprocess) == allowed - runtime.cores.engine
    finally:
        runtime.stop()
