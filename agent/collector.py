"""The agent: background sampling, a watchdog for hung NVML calls, and /metrics snapshots.

Each GPU has a sampler thread of its own, so one GPU that hangs or is lost stales only
its own series. A supervisor thread, every ``interval``: samples the host and watched
processes, notices a sampler stuck in an NVML call for longer than ``hang_timeout``
(marks that GPU stale, abandons the stuck thread — it is a daemon — and starts a fresh
one, a bounded number of times), and retries NVML when it was unavailable. ``collect()``
only renders the latest snapshots: a scrape never waits on NVML.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from hardware.peaks import peak_flops
from loglog import get_logger
from loglog.counters import WriterHistogram

from .host import HostReader
from .metrics import AGENT_METRICS, COLLECT_BUCKETS, GPU_LABELS, GPU_METRICS, HOST_METRICS
from .nvml import Device, GpuLost, Nvml, NvmlUnavailable, load_module
from .sampling import GpmState, Values, sample_device
from .xid import XidWatcher

MAX_REPLACEMENTS = 3  # per GPU: a GPU that hangs again and again is left stale


class _Sampler:
    """Samples one GPU in a loop on its own thread."""

    def __init__(self, agent: Agent, device: Device, generation: int = 0) -> None:
        self.agent = agent
        self.device = device
        self.generation = generation
        self.values: Values = {}
        self.sampled_at = 0.0  # monotonic time of the last completed sample
        self.busy_since: float | None = None
        self.lost = False
        self.abandoned = False
        self.gpm = GpmState(agent.nvml.gpm_supported(device.handle))
        self._thread = threading.Thread(
            target=self._run, name=f"gpu{device.index}-sampler-{generation}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        agent = self.agent
        while not agent.stopping.is_set() and not self.abandoned:
            started = agent.clock()
            self.busy_since = started
            try:
                values = sample_device(agent.nvml, self.device, self.gpm, agent.count_error)
            except GpuLost as exc:
                if not self.lost:
                    agent.log.error(
                        "GPU lost: its data is stale", gpu=self.device.index, detail=str(exc)
                    )
                self.lost = True
            except Exception as exc:  # a bug or an unexpected NVML failure: keep going
                agent.count_error(f"sample:{type(exc).__name__}")
            else:
                if self.abandoned:
                    return  # a replacement owns this GPU now
                self.values = values
                self.sampled_at = agent.clock()
                self.lost = False
                agent.observe_duration(self.sampled_at - started)
            finally:
                self.busy_since = None
            agent.stopping.wait(agent.interval)


class Agent(Collector):
    """Collects GPU, host and process metrics; register it on a registry and start it."""

    def __init__(
        self,
        *,
        interval: float = 1.0,
        hang_timeout: float = 5.0,
        nvml_module: Any = None,
        proc: str = "/proc",
        watch_pids: Sequence[int] = (),
        watch_names: Sequence[str] = (),
        nvml_retry: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.hang_timeout = hang_timeout
        self.clock = clock
        self.log = get_logger("agent")
        self.host = HostReader(proc)
        self.watch_pids = list(watch_pids)
        if any(not name.strip() for name in watch_names):
            raise ValueError(
                "watch_names: a blank pattern matches every process on the host; give part "
                "of a command line"
            )
        self.watch_names = list(watch_names)
        self._module = nvml_module
        self.nvml = Nvml(nvml_module) if nvml_module is not None else Nvml(None)
        self._nvml_retry = nvml_retry
        self.nvml_reason = "not_started"
        self.driver = ""
        self.samplers: dict[int, _Sampler] = {}
        self.replacements: dict[int, int] = {}
        self.hung = 0
        self.xid: XidWatcher | None = None
        self.errors: dict[str, int] = {}
        self.durations = WriterHistogram(COLLECT_BUCKETS)
        self._lock = threading.Lock()  # several sampler threads count into these
        self.host_values: Values = {}
        self.last_success = 0.0
        self.stopping = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, name="agent-supervisor", daemon=True
        )
        self._next_nvml_try = 0.0
        self._warned: set[str] = set()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._try_nvml()
        self._sample_host()
        self._supervisor.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.xid is not None:
            self.xid.stop()
        if self.nvml_reason == "ok":
            self.nvml.shutdown()

    def _try_nvml(self) -> None:
        """Initialise NVML and start a sampler per GPU; on failure say why, once."""
        self._next_nvml_try = self.clock() + self._nvml_retry
        try:
            if self.nvml.module is None:
                self.nvml = Nvml(load_module())
            self.nvml.init()
            self.driver = self.nvml.driver_version()
            devices = self.nvml.devices()
        except NvmlUnavailable as exc:
            if self.nvml_reason != exc.reason:
                self.log.warning(
                    "no GPU data; exporting host metrics only",
                    reason=exc.reason,
                    detail=str(exc),
                )
            self.nvml_reason = exc.reason
            return
        except Exception as exc:
            self.nvml_reason = "error"
            self.log.error("NVML failed while listing GPUs", detail=f"{type(exc).__name__}: {exc}")
            return
        self.nvml_reason = "ok"
        for device in devices:
            self.samplers[device.index] = _Sampler(self, device)
            self.samplers[device.index].start()
        self.xid = XidWatcher(self.nvml, devices, self.log)
        self.log.info("NVML ready", gpus=len(devices), driver=self.driver)

    def _supervise(self) -> None:
        # This thread also runs the GPU-hang watchdog: if it died, stale GPUs would go
        # unnoticed. Every step is guarded; a failure is counted and the loop goes on.
        while not self.stopping.wait(self.interval):
            for step in (self._sample_host, self._retry_nvml, self._watchdog):
                try:
                    step()
                except Exception as exc:
                    self.count_error(f"supervisor:{type(exc).__name__}")
                    self._warn_once(step.__name__, exc)

    def _retry_nvml(self) -> None:
        if self.nvml_reason != "ok" and self.clock() >= self._next_nvml_try:
            self._try_nvml()

    def _warn_once(self, where: str, exc: Exception) -> None:
        key = f"{where}:{type(exc).__name__}"
        if key not in self._warned:
            self._warned.add(key)
            self.log.error("agent step failed; it is retried", step=where, detail=str(exc)[:300])

    def _watchdog(self) -> None:
        now = self.clock()
        for index, sampler in list(self.samplers.items()):
            if sampler.busy_since is None or now - sampler.busy_since < self.hang_timeout:
                continue
            used = self.replacements.get(index, 0)
            if used >= MAX_REPLACEMENTS or sampler.abandoned:
                continue
            sampler.abandoned = True
            self.hung += 1
            self.replacements[index] = used + 1
            self.log.error(
                "an NVML call hangs; GPU data marked stale, starting a new sampler",
                gpu=index,
                stuck_for_s=round(now - sampler.busy_since, 1),
            )
            replacement = _Sampler(self, sampler.device, sampler.generation + 1)
            replacement.values = sampler.values
            replacement.sampled_at = sampler.sampled_at
            self.samplers[index] = replacement
            replacement.start()

    def _sample_host(self) -> None:
        values: Values = {}
        try:
            for mode, seconds in self.host.cpu_seconds().items():
                values[("host_cpu_seconds_total", (mode,))] = seconds
            values[("host_cpus", ())] = float(self.host.cpus())
            values[("host_load1", ())] = self.host.load1()
            total, available = self.host.memory()
            values[("host_memory_total_bytes", ())] = total
            values[("host_memory_available_bytes", ())] = available
        except (OSError, ValueError, IndexError, KeyError) as exc:
            self.count_error(f"host:{type(exc).__name__}")
        pids = list(self.watch_pids)
        for pattern in self.watch_names:
            try:
                pids += self.host.find(pattern)
            except (OSError, ValueError) as exc:
                self.count_error(f"find:{type(exc).__name__}")
        for pid in dict.fromkeys(pids):
            try:
                reading = self.host.process(pid)
            except (OSError, ValueError, IndexError) as exc:
                # Unreadable (permissions, hidepid) or malformed /proc/<pid>/stat: this
                # process is skipped this round, nothing else is.
                self.count_error(f"process:{type(exc).__name__}")
                continue
            name = reading.name if reading else "gone"
            values[("watched_process_up", (str(pid), name))] = 1.0 if reading else 0.0
            if reading is not None:
                values[("watched_process_cpu_seconds_total", (str(pid), name))] = (
                    reading.cpu_seconds
                )
                values[("watched_process_resident_memory_bytes", (str(pid), name))] = (
                    reading.rss_bytes
                )
        self.host_values = values
        if all(not self.stale(index) for index in self.samplers):
            self.last_success = time.time()

    def observe_duration(self, seconds: float) -> None:
        with self._lock:
            self.durations.observe(seconds)

    def count_error(self, call: str) -> None:
        with self._lock:
            self.errors[call] = self.errors.get(call, 0) + 1

    def stale(self, index: int) -> bool:
        sampler = self.samplers[index]
        return sampler.lost or self.clock() - sampler.sampled_at > self.hang_timeout

    # -- exposition ---------------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        families: dict[str, Any] = {}

        def family(name: str, labels: Sequence[str]) -> Any:
            if name not in families:
                spec = {**GPU_METRICS, **HOST_METRICS, **AGENT_METRICS}[name]
                kind = CounterMetricFamily if spec[0] == "counter" else GaugeMetricFamily
                families[name] = kind(name, spec[2], labels=list(labels))
            return families[name]

        for index, sampler in sorted(self.samplers.items()):
            base = (str(index), sampler.device.uuid)
            family("gpu_info", (*GPU_LABELS, "name", "driver")).add_metric(
                [*base, sampler.device.name, self.driver], 1
            )
            family("gpu_data_stale", GPU_LABELS).add_metric(
                list(base), 1 if self.stale(index) else 0
            )
            for (name, extra), value in sorted(sampler.values.items()):
                family(name, (*GPU_LABELS, *GPU_METRICS[name][1])).add_metric(
                    [*base, *extra], value
                )
            for dtype in ("fp16", "bf16"):
                peak = peak_flops(sampler.device.name, dtype)
                if peak is not None:
                    family("gpu_peak_flops", (*GPU_LABELS, "dtype")).add_metric(
                        [*base, dtype], peak
                    )
        if self.xid is not None:
            for (index, xid), count in sorted(self.xid.counts.items()):
                uuid = self.samplers[index].device.uuid if index in self.samplers else ""
                family("gpu_xid_errors_total", (*GPU_LABELS, "xid")).add_metric(
                    [str(index), uuid, str(xid)], count
                )
        for (name, extra), value in sorted(self.host_values.items()):
            family(name, HOST_METRICS[name][1]).add_metric(list(extra), value)
        family("agent_nvml_up", ("reason",)).add_metric(
            [self.nvml_reason], 1 if self.nvml_reason == "ok" else 0
        )
        family("agent_gpus", ()).add_metric([], len(self.samplers))
        family("agent_hung_samplers", ()).add_metric([], self.hung)
        for call, count in sorted(self.errors.items()):
            family("agent_collect_errors_total", ("call",)).add_metric([call], count)
        family("agent_collect_errors_total", ("call",))
        if self.last_success:
            family("agent_last_success_timestamp_seconds", ()).add_metric([], self.last_success)
        yield from families.values()
        histogram = HistogramMetricFamily(
            "agent_collect_duration_seconds", AGENT_METRICS["agent_collect_duration_seconds"][2]
        )
        buckets, total = self.durations.cumulative()
        histogram.add_metric([], buckets, total)
        yield histogram
