"""Inference fixtures: a small real model for tests that need an engine but not its cost."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from inference.analysis.tracing import Tracing
from inference.config import RuntimeConfig
from inference.engines.model import SMALL_LAYERS, build_default_model
from inference.runtime import Runtime


@functools.cache
def small_model_path() -> Path:
    """The default CNN's architecture (3×224×224 in, 100 classes out) at ~0.3 MFLOP per
    image, as an ONNX file run by the real ONNX Runtime engine: calibrating it takes
    milliseconds, not the default model's seconds. Tests whose subject is the engine's
    speed (calibration, bottleneck on infer, capacity) keep the default model. Built once
    per test process (xdist workers build their own), removed at exit."""
    folder = tempfile.mkdtemp(prefix="loglog-small-model-")
    atexit.register(shutil.rmtree, folder, True)
    return build_default_model(Path(folder) / "small-cnn.onnx", layers=SMALL_LAYERS)


@pytest.fixture
def small_model() -> Path:
    """:func:`small_model_path` as a fixture."""
    return small_model_path()


#: Runtime settings that make a test's runtime ready and its verdict move in seconds.
#: Streams decode on threads unless a test asks for decode processes (starting one takes
#: a second on a loaded machine; tests of the processes pass ``decode_processes``).
FAST: dict[str, Any] = dict(
    calibration_seconds=0.1, monitor_interval_s=0.2, monitor_window_s=2.0, decode_processes=0
)


@pytest.fixture
def make_runtime() -> Iterator[Callable[..., Runtime]]:
    """``make(**config)``: a started Runtime on the small model (``model=`` another file,
    e.g. ``default_model_path()``), FAST settings under ``config``; stopped at teardown."""
    started: list[Runtime] = []

    def make(
        *,
        model: str | os.PathLike[str] | None = None,
        tracing: Tracing | None = None,
        **options: Any,
    ) -> Runtime:
        runtime = Runtime(
            model=model or small_model_path(),
            config=RuntimeConfig(**{**FAST, **options}),
            registry=CollectorRegistry(),
            tracing=tracing,
        )
        runtime.start(progress=lambda message: None)
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()
