"""Every metric ``loglog up`` itself exports, declared here and nowhere else.

The supervisor's view of each component (``component`` label: inference, agent,
pushgateway, alertmanager, prometheus, alert receiver, and under ``--workers`` rabbitmq,
jobs api, worker-N), computed at scrape time from :meth:`stack.supervisor.Supervisor.status`
and served on the alert receiver's ``/metrics`` (Prometheus job ``loglog-up``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .types import FAILED, ComponentStatus

#: name → (type, labels, help)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "loglog_up_component_up": ("gauge", ("component",), "1 while the component of `loglog up` runs and answers its readiness check; 0 while it starts, waits out its restart delay, or is left down."),
    "loglog_up_component_restarts_total": ("counter", ("component",), "Restarts of the component by `loglog up`'s supervisor after it exited or was not ready in time."),
    "loglog_up_component_last_restart_timestamp_seconds": ("gauge", ("component",), "Unix time of the component's last restart by the supervisor (0: never). Alerts use it, not the counter's increase: a sample right after a Prometheus restart is enough."),
    "loglog_up_component_failed": ("gauge", ("component",), "1 when the component crash-looped (5 exits within 2 min by default) and is left down until retried (SIGUSR1) or `loglog up` restarts."),
}  # fmt: skip


class SupervisorCollector(Collector):
    """The table above, read from ``status()`` at each scrape."""

    def __init__(self, status: Callable[[], Sequence[ComponentStatus]]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        families = {
            name: (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, help_, labels=list(labels)
            )
            for name, (kind, labels, help_) in METRICS.items()
        }
        for component in self.status():
            labels = [component.name]
            families["loglog_up_component_up"].add_metric(labels, float(component.up))
            families["loglog_up_component_restarts_total"].add_metric(
                labels, float(component.restarts)
            )
            families["loglog_up_component_last_restart_timestamp_seconds"].add_metric(
                labels, component.last_restart
            )
            families["loglog_up_component_failed"].add_metric(
                labels, float(component.state == FAILED)
            )
        yield from families.values()
