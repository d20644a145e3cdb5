"""The runtime: engine, calibration, pipeline, streams, monitor and config, assembled.

This is what ``loglog serve`` wraps in HTTP, and what tests and benchmarks drive
directly::

    runtime = Runtime(config=RuntimeConfig(max_batch=8))
    runtime.start()                       # load, count FLOPs, calibrate, start workers
    runtime.streams.add("synthetic://640x480@30")
    item = runtime.infer_image(rgb_array) # blocks until the result
    runtime.stop()
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from loglog import get_logger

from .analysis.calibration import Calibration, batch_sizes, calibrate
from .analysis.calibration import export as export_calibration
from .analysis.flops import count_flops
from .analysis.tracing import Tracing
from .config import ConfigWatcher, RuntimeConfig, load_config
from .core.admission import DEADLINE_SHARE, Admission, admission_for
from .core.drills import Drills
from .core.monitor import Monitor
from .core.pipeline import Pipeline
from .core.stages import Encode
from .core.streams import StreamManager, stream_limits
from .engines import load_engine
from .engines.model import default_model_path
from .errors import OverloadedError
from .feed.claims import Claim, claim, claims_dir
from .feed.plan import feed_plan
from .metrics import RuntimeMetrics
from .tuning import gil
from .tuning.affinity import CorePlan, allowed_cores, pin_current_thread, plan
from .tuning.memory import IdleTrimmer, tune_allocator
from .types import ENGINE_STAGE, Engine, Item

if TYPE_CHECKING:
    from .feed import DecodePool


class Runtime:
    """Everything that serves one model. Build, ``start()``, use, ``stop()``."""

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        config: RuntimeConfig | None = None,
        config_path: str | os.PathLike[str] | None = None,
        registry: CollectorRegistry | None = None,
        engine: Engine | None = None,
        tracing: Tracing | None = None,
        instrumented: bool = True,
    ) -> None:
        self.log = get_logger("inference")
        self.config_path = Path(config_path) if config_path else None
        if config is None:
            config = load_config(self.config_path) if self.config_path else RuntimeConfig()
        self.config = config
        self.instrumented = instrumented
        self.registry = registry or CollectorRegistry()
        self.metrics = RuntimeMetrics(self.registry)
        self.metrics.ready.set(0)
        self.model_path = Path(model) if model else (None if engine else default_model_path())
        self.engine = engine or load_engine(self.model_path, threads=config.engine_threads)
        self.info = self.engine.describe()
        self.drills = Drills(self.metrics)
        self.tracing = tracing or Tracing(config.sampling_ratio)
        self.calibration: Calibration | None = None
        self.pipeline: Pipeline | None = None
        #: Decided here, applied by the stage threads (and by ``serve`` to its own thread).
        allowed = allowed_cores()
        self._core_claim: Claim | None = None
        self.cores: CorePlan | None = self._plan_cores(config, allowed)
        #: Streams decode in processes (inference/feed) unless decode_processes is 0.
        self.feed_plan = feed_plan(config.decode_processes, self.cores, allowed)
        self.feed: DecodePool | None = None
        self.streams: StreamManager | None = None
        self.admission: Admission | None = None
        self.monitor: Monitor | None = None
        self.trimmer: IdleTrimmer | None = None
        self._gil_held = False  # a hold on the process's GIL switch interval (gil.hold)
        self.watcher: ConfigWatcher | None = None
        self.ready = False

    def _plan_cores(self, config: RuntimeConfig, allowed: frozenset[int] | None) -> CorePlan | None:
        """The engine's core plan, with its core claimed host-wide (no two engines of
        this host's servers on one core; inference/feed/claims.py)."""
        wanted = plan(self.info, config.pin_engine, allowed, config.workers.get(ENGINE_STAGE, 1))
        folder = claims_dir(config.core_claims_dir)
        if wanted is None or folder is None or allowed is None:
            return wanted
        self._core_claim = claim(sorted(allowed, reverse=True), folder)
        if self._core_claim is not None:  # a runtime dropped without stop() gives it back
            weakref.finalize(self, self._core_claim.release)
        else:
            self.log.warning(
                "every usable core is claimed by another engine on this host: this one "
                "runs unpinned", cores=sorted(allowed), claims=folder,
            )  # fmt: skip
            return None
        return plan(
            self.info, True, allowed, config.workers.get(ENGINE_STAGE, 1), self._core_claim.core
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Count FLOPs, calibrate the engine alone, then start serving."""
        try:
            self._start(progress)
        except BaseException:
            self._release_gil()  # a failed start must not keep the process's interval
            if self._core_claim is not None:  # nor a core that no engine runs on
                self._core_claim.release()
            if self.feed is not None:
                self.feed.stop()
            raise

    def _release_gil(self) -> None:
        if self._gil_held:
            self._gil_held = False
            gil.release()

    def _start(self, progress: Callable[[str], None] | None) -> None:
        say = progress or (lambda message: self.log.info(message))
        info, config = self.info, self.config
        # Before the stage threads exist: each takes an arena the first time it allocates.
        say(tune_allocator(config.malloc_trim_threshold, config.malloc_mmap_threshold))
        if not self._gil_held:  # given back by stop(); a second start() holds nothing more
            self._gil_held, line = gil.hold(config.gil_switch_interval_ms)
            say(line)
        flops = info.flops_per_item or (
            count_flops(self.model_path)
            if self.model_path and self.model_path.suffix == ".onnx"
            else None
        )
        from hardware.peaks import peak_flops

        precision = info.precision or "fp16"
        peak = peak_flops(info.device, precision) if info.device not in ("cpu", "cuda") else None
        max_batch = info.batch_limit(config.max_batch)
        sizes = batch_sizes(max_batch)
        say(f"calibrating {info.name} on {info.device} ({info.threads} thread(s)) at {sizes}")
        # Calibrate on the core the engine will serve from (restored after): on a host
        # whose cores differ, capacity measured elsewhere would misjudge its efficiency.
        restore = allowed_cores() if self.cores is not None else None
        if self.cores is not None:
            pin_current_thread(self.cores.engine)
        try:
            self.calibration = calibrate(
                self.engine,
                sizes,
                seconds=config.calibration_seconds,
                flops_per_item=flops,
                peak_flops=peak,
                progress=lambda size, rate: say(f"  batch {size}: {rate:.1f} items/s model-only"),
            )
        finally:
            if restore is not None:
                pin_current_thread(restore)
        self._export_model_facts()
        batch = self._batch_limit(config, max_batch)
        if batch < max_batch:
            say(
                f"batching up to {batch}, not {max_batch}: larger batches are not faster on "
                f"{info.device} ({self.calibration.capacity(batch):.1f} items/s at {batch}, "
                f"{self.calibration.capacity(max_batch):.1f} at {max_batch}; batch_policy: max "
                "to always fill batches)"
            )
        if self.cores is not None:
            say(f"cores: {self.cores.describe()} (pin_engine: false to leave it to the OS)")
        self.pipeline = Pipeline(
            engine=self.engine,
            calibration=self.calibration,
            metrics=self.metrics,
            tracing=self.tracing,
            drills=self.drills,
            encode=Encode(config.results_path),
            max_batch=batch,
            max_wait=config.max_wait_ms / 1000.0,
            queue_capacity=config.queue_capacity,
            top_k=config.top_k,
            log=self.log,
            instrumented=self.instrumented,
            cores=self.cores,
        )
        for stage, count in config.workers.items():
            self.pipeline.set_workers(stage, count)
        if self.feed_plan.processes and self.pipeline.preprocess.layout:
            from .feed import DecodePool

            self.feed = DecodePool(
                plan=self.feed_plan,
                pipeline=self.pipeline,
                metrics=self.metrics,
                drills=self.drills,
                buffer=config.stream_buffer,
                rows=config.max_streams,
                claims_dir=claims_dir(config.core_claims_dir),
                log=self.log,
            )
            say(f"streams: {self.feed_plan.describe()} (decode_processes)")
        self.admission = self._admission(self.pipeline, config)
        self.streams = StreamManager(
            self.pipeline,
            self.metrics,
            self.drills,
            max_streams=config.max_streams,
            buffer=config.stream_buffer,
            log=self.log,
            feed=self.feed,
            **stream_limits(config),
        )
        self.monitor = Monitor(
            self.pipeline,
            self.metrics,
            interval=config.monitor_interval_s,
            window=config.monitor_window_s,
        )
        if self.instrumented:
            self.monitor.start()
        pipeline = self.pipeline
        self.trimmer = IdleTrimmer(lambda: pipeline.completed.value)  # memory back when idle
        self.trimmer.start()
        if self.config_path is not None:
            self.watcher = ConfigWatcher(
                self.config_path, config, self._apply_config, on_result=self._reload_result
            )
            self.watcher.start()
        self.ready = True
        self.metrics.ready.set(1)
        say("ready")

    def _admission(self, pipeline: Pipeline, config: RuntimeConfig) -> Admission:
        timeout = config.request_timeout_s or DEADLINE_SHARE * config.latency_slo_s
        return admission_for(
            pipeline,
            latency_slo=config.latency_slo_s,
            default_timeout=timeout,
            max_timeout=config.max_request_timeout_s,
            log=self.log,
        )

    def _export_model_facts(self) -> None:
        assert self.calibration is not None
        info, metrics, calibration = self.info, self.metrics, self.calibration
        shape = "x".join(map(str, info.input_shape))
        metrics.model_info.labels(info.name, info.kind, info.device, shape).set(1)
        export_calibration(calibration, metrics)
        if calibration.flops_per_item:
            metrics.model_flops_per_item.labels(info.name).set(calibration.flops_per_item)
            metrics.model_flops_total.labels(info.name).inc(0)

    def stop(self) -> None:
        self._release_gil()
        self.ready = False
        self.metrics.ready.set(0)
        if self.watcher is not None:
            self.watcher.stop()
        if self.monitor is not None:
            self.monitor.stop()
        if self.trimmer is not None:
            self.trimmer.stop()
        if self.streams is not None:
            self.streams.stop_all()
        if self.feed is not None:
            self.feed.stop()
        if self._core_claim is not None:
            self._core_claim.release()
        if self.pipeline is not None:
            self.pipeline.stop()
        self.tracing.shutdown()

    # -- configuration -------------------------------------------------------------------

    def _apply_config(self, new: RuntimeConfig, old: RuntimeConfig) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        pipeline.batcher.max_batch = self._batch_limit(new, pipeline.clamp_batch(new.max_batch))
        pipeline.batcher.max_wait = new.max_wait_ms / 1000.0
        for stage, count in new.workers.items():
            if pipeline.workers(stage) != count:
                pipeline.set_workers(stage, count)
        self.tracing.ratio = new.sampling_ratio
        self.config = new
        calibrated = max(self.calibration.seconds_per_batch) if self.calibration else 0
        if new.max_batch > calibrated:
            self.log.warning(
                "max_batch is above the calibrated sizes; capacity is extrapolated until restart",
                max_batch=new.max_batch,
                calibrated=calibrated,
            )

    def _batch_limit(self, config: RuntimeConfig, max_batch: int) -> int:
        """The batch size the batcher fills up to (see RuntimeConfig.batch_policy)."""
        if config.batch_policy == "max" or self.calibration is None:
            return max_batch
        return self.calibration.best_batch(max_batch)

    def _reload_result(self, result: str, detail: str) -> None:
        self.metrics.config_reloads_total.labels(result).inc()
        if result == "applied":
            self.log.info("config reloaded", path=str(self.config_path))
        else:
            self.log.error("config reload rejected; the running config stays", detail=detail)

    # -- requests ------------------------------------------------------------------------

    def submit(self, item: Item, timeout: float | None = None) -> Future[Item]:
        """Queue a request item (an HTTP body to decode, a picture or a tensor); the future
        resolves when it leaves the pipeline."""
        assert self.pipeline is not None
        item.future = Future()
        if not self.pipeline.submit(item, timeout=timeout, kind="request"):
            item.future.set_exception(
                OverloadedError("the server is at capacity (its queue stayed full); retry shortly")
            )
        return item.future

    def infer_image(self, image: Any, timeout: float = 30.0) -> Item:
        """Run one picture (HWC uint8 array) through the pipeline and wait (tests, tools)."""
        item = Item("http", 0, image=image)
        return self.submit(item).result(timeout)

    def report(self) -> dict[str, Any]:
        """The live profile: verdict, stage windows, calibration, config."""
        assert self.monitor is not None and self.calibration is not None
        report = self.monitor.report()
        report["model"] = dataclasses.asdict(self.info)
        report["capacity_items_per_s"] = {
            str(size): round(self.calibration.capacity(size), 2)
            for size in self.calibration.seconds_per_batch
        }
        report["flops_per_item"] = self.calibration.flops_per_item
        report["drills"] = self.drills.active()
        if self.admission is not None:
            report["admission"] = self.admission.describe()
        return report
