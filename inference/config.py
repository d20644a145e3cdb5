"""Runtime configuration: a frozen dataclass from YAML or TOML, and a reloading watcher.

::

    # serve.yaml
    max_batch: 8          # dynamic batching: at most this many items per engine call
    max_wait_ms: 5        # … or dispatch when the first item has waited this long
    workers: {preprocess: 1, postprocess: 1, encode: 1, infer: 1}
    sampling_ratio: 0.01  # share of frames/requests traced

``max_batch``, ``max_wait_ms``, ``workers`` and ``sampling_ratio`` are applied live when
the file changes. Changing anything else needs a restart: such a reload is rejected with
a message saying so, and the running configuration stays. A bad file at start-up fails
the start.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .types import STAGES

RELOADABLE = frozenset({"max_batch", "batch_policy", "max_wait_ms", "workers", "sampling_ratio"})
_STAGE_WORKERS = STAGES  # every stage has workers (decode's serve HTTP bodies)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Everything the runtime can be told; see the module docstring for the file form."""

    max_batch: int = 8
    #: "calibrated": batch only up to the calibrated size with the best capacity (≤
    #: max_batch); "max": always fill batches up to max_batch.
    batch_policy: str = "calibrated"
    max_wait_ms: float = 5.0
    workers: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(STAGES, 1))
    sampling_ratio: float = 0.01
    queue_capacity: int = 64
    max_streams: int = 16
    stream_buffer: int = 4  # frames a live stream may hold while the pipeline is busy
    engine_threads: int | None = None
    calibration_seconds: float = 1.0
    top_k: int = 5
    results_path: str | None = None
    monitor_interval_s: float = 1.0
    monitor_window_s: float = 10.0

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (1 <= self.max_batch <= 1024, "max_batch must be 1–1024"),
            (self.batch_policy in ("calibrated", "max"), 'batch_policy is "calibrated" or "max"'),
            (0 <= self.max_wait_ms <= 10_000, "max_wait_ms must be 0–10000"),
            (0.0 <= self.sampling_ratio <= 1.0, "sampling_ratio must be between 0 and 1"),
            (2 <= self.queue_capacity <= 100_000, "queue_capacity must be 2–100000"),
            (1 <= self.max_streams <= 1000, "max_streams must be 1–1000"),
            (1 <= self.stream_buffer <= 1000, "stream_buffer must be 1–1000"),
            (
                self.engine_threads is None or 1 <= self.engine_threads <= 256,
                "engine_threads must be 1–256",
            ),
            (0.05 <= self.calibration_seconds <= 60, "calibration_seconds must be 0.05–60"),
            (1 <= self.top_k <= 1000, "top_k must be 1–1000"),
            (0.05 <= self.monitor_interval_s <= 60, "monitor_interval_s must be 0.05–60"),
            (
                self.monitor_window_s >= self.monitor_interval_s,
                "monitor_window_s must be ≥ monitor_interval_s",
            ),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        unknown = set(self.workers) - set(_STAGE_WORKERS)
        if unknown:
            raise ConfigError(
                f"workers: unknown stage(s) {', '.join(sorted(unknown))}; "
                f"stages with workers are {', '.join(_STAGE_WORKERS)}"
            )
        for stage, count in self.workers.items():
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 64:
                raise ConfigError(f"workers.{stage} must be a whole number 1–64, got {count!r}")
        object.__setattr__(
            self, "workers", {stage: int(self.workers.get(stage, 1)) for stage in _STAGE_WORKERS}
        )


def load_config(path: str | os.PathLike[str], base: RuntimeConfig | None = None) -> RuntimeConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file over ``base`` (default values)."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(file)!r}: {exc.strerror}") from exc
    try:
        if file.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config {str(file)!r}: use a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {str(file)!r} does not parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(file)!r} must be a mapping of option: value")
    return build(data, base)


def build(data: Mapping[str, Any], base: RuntimeConfig | None = None) -> RuntimeConfig:
    """Apply ``data`` over ``base``; unknown keys and wrong types fail with a clear message."""
    fields = {f.name: f for f in dataclasses.fields(RuntimeConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    values = dataclasses.asdict(base) if base is not None else {}
    values.update(data)
    try:
        return RuntimeConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid config: {exc}") from exc


class ConfigWatcher:
    """Polls a config file; applies reloadable changes, rejects the rest, counts both.

    ``apply(new, old)`` is called with the new config when a change is accepted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        current: RuntimeConfig,
        apply: Callable[[RuntimeConfig, RuntimeConfig], None],
        *,
        on_result: Callable[[str, str], None],
        interval: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.current = current
        self._apply = apply
        self._on_result = on_result
        self._interval = interval
        self._stamp = self._stat()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _stat(self) -> tuple[float, int] | None:
        try:
            info = self.path.stat()
            return (info.st_mtime, info.st_size)
        except OSError:
            return None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check()

    def check(self) -> str | None:
        """Reload if the file changed; returns "applied", "rejected" or None."""
        stamp = self._stat()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = load_config(self.path)
            fixed = [
                f.name
                for f in dataclasses.fields(RuntimeConfig)
                if f.name not in RELOADABLE
                and getattr(new, f.name) != getattr(self.current, f.name)
            ]
            if fixed:
                raise ConfigError(
                    f"{', '.join(fixed)} cannot change while serving; restart to apply "
                    f"(live: {', '.join(sorted(RELOADABLE))})"
                )
            self._apply(new, self.current)
        except ConfigError as exc:
            self._on_result("rejected", str(exc))
            return "rejected"
        self.current = new
        self._on_result("applied", "")
        return "applied"
