"""The GPU proof's NVML side: the agent (real ``pynvml``, or ``FakeNvml`` in the dry run)
on a registry of its own, sampled into per-phase series, and its /metrics scraped once."""

from __future__ import annotations

import statistics
import threading
from typing import Any

from prometheus_client import CollectorRegistry


class GpuWatch:
    """The agent on a registry of its own, sampled into per-phase series while phases run."""

    def __init__(self, nvml_module: Any, interval: float) -> None:
        from agent.collector import Agent

        self.registry = CollectorRegistry()
        self.agent = Agent(interval=interval, nvml_module=nvml_module, hang_timeout=10.0)
        self.registry.register(self.agent)
        self.interval = interval
        self.phase = "idle"
        self.series: dict[str, dict[str, list[float]]] = {}
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-watch", daemon=True)

    def start(self) -> None:
        from agent.server import MetricsServer

        self.agent.start()
        self._thread.start()
        # The agent's own endpoint on loopback, scraped once at the end like Prometheus would.
        self.server = MetricsServer(self.registry, "127.0.0.1", 0)
        self.server.start()

    def scrape(self) -> dict[str, Any]:
        """GET /metrics from the agent's endpoint: status, size, GPU families in it."""
        import urllib.request

        url = f"http://127.0.0.1:{self.server.port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
                status = response.status
        except OSError as exc:
            return {"url": url, "error": str(exc)}
        families = sorted(
            {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE gpu_")}
        )
        return {"url": url, "status": status, "bytes": len(text), "gpu_families": families}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.stop()
        self.agent.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        phase = self.series.setdefault(self.phase, {})
        for family in self.registry.collect():
            for sample in family.samples:
                if not sample.name.startswith("gpu_") or sample.name.endswith("_created"):
                    continue
                labels = ",".join(
                    f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("gpu", "uuid")
                )
                key = f"{sample.name}{{{labels}}}" if labels else sample.name
                self.seen.add(sample.name)
                phase.setdefault(key, []).append(float(sample.value))

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        return {
            phase: {
                key: {
                    "min": min(values),
                    "mean": statistics.fmean(values),
                    "max": max(values),
                    "n": len(values),
                }
                for key, values in sorted(series.items())
            }
            for phase, series in self.series.items()
        }

    @property
    def reason(self) -> str:
        return self.agent.nvml_reason
