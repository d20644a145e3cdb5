"""The one place for selectors, thresholds, SLOs and timings (kubernetes-mixin style).

Production timings are the default. End-to-end tests and demos render the same rules with
:data:`FAST` timings (seconds instead of minutes), so what they exercise is the real rule
logic, not a copy of it.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Timing:
    """Rate windows and ``for`` durations (PromQL duration strings)."""

    rate: str = "2m"  # short rate window for "is anything coming out"
    window: str = "5m"  # averaging window for "is input waiting", drops, efficiency
    #: A stall pages in ≤ 2 min with these (verdict ≤ 10 s, scrape and evaluation 5 s,
    #: Alertmanager group_wait 10 s): the window bridges the seconds between two items of
    #: a near-stall, so the page does not flap.
    stall_for: str = "30s"
    stall_window: str = "30s"
    collapse_window: str = "30s"  # rate window for "output collapsed against input"
    collapse_for: str = "30s"
    down_for: str = "1m"
    absent_for: str = "5m"
    saturated_for: str = "5m"
    drops_for: str = "10m"
    lag_for: str = "5m"
    efficiency_for: str = "15m"
    gpu_for: str = "5m"
    gpu_slow_for: str = "10m"
    stale_for: str = "2m"
    logs_for: str = "5m"
    page_for: str = "2m"
    ticket_for: str = "15m"


PRODUCTION = Timing()
FAST = Timing(
    rate="10s",
    window="20s",
    stall_for="5s",
    stall_window="10s",
    collapse_window="10s",
    collapse_for="5s",
    down_for="5s",
    absent_for="10s",
    saturated_for="5s",
    drops_for="10s",
    lag_for="5s",
    efficiency_for="10s",
    gpu_for="5s",
    gpu_slow_for="5s",
    stale_for="5s",
    logs_for="5s",
    page_for="5s",
    ticket_for="10s",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """Selectors, thresholds and SLOs shared by recording rules, alerts and dashboards."""

    inference_job: str = "inference"
    agent_job: str = "agent"
    #: Requests must finish within this many seconds (a bucket bound of
    #: inference_request_duration_seconds) for the latency SLO …
    latency_slo_seconds: float = 1.0
    #: … and this share of them must (99 %: a 1 % error budget). Same target for errors.
    slo_target: float = 0.99
    queue_saturation: float = 0.9
    #: A call in progress this long is hung whatever the server's verdict says (a backstop
    #: for a server whose monitor is itself stuck) …
    hung_seconds: float = 60.0
    #: … and output below this share of the frames coming in is a collapse (≥ 95 % lost).
    collapse_ratio: float = 0.05
    drop_ratio: float = 0.05
    #: Share of offered HTTP requests shed (503 + Retry-After) that makes a ticket.
    shed_ratio: float = 0.05
    lag_seconds: float = 2.0
    underfed_efficiency: float = 0.5
    engine_efficiency: float = 0.7
    gpu_temperature_celsius: float = 85.0
    gpu_memory_ratio: float = 0.95
    gpu_idle_ratio: float = 0.1
    spill_bytes: float = 10 * 1024 * 1024
    runbook_base: str = "alerts/runbooks"
    timing: Timing = PRODUCTION

    @property
    def inference(self) -> str:
        return f'job="{self.inference_job}"'

    @property
    def agent(self) -> str:
        return f'job="{self.agent_job}"'

    @property
    def older_than(self) -> str:
        """The ``older_than`` label of inference_requests_inflight at the latency SLO."""
        return f"{float(self.latency_slo_seconds):g}"

    @property
    def budget(self) -> float:
        return round(1.0 - self.slo_target, 10)


#: SLO burn-rate windows (SRE workbook): (long, short, factor, severity)
BURN_WINDOWS = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
