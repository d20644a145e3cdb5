"""The report's sections, in order: throughput, service level, capacity, incidents, jobs
(each built by :class:`report.builder.Builder` or a module of its own), and the queries
they asked."""

from __future__ import annotations

from alerts.config import Config
from loglog.redact import redact_url

from .builder import Builder
from .incidents import incidents
from .jobs import jobs
from .model import Report
from .prom import Prometheus


def build(prom: Prometheus, *, end: float, range_seconds: int, cfg: Config | None = None) -> Report:
    """Ask Prometheus for every section of the report over ``[end - range, end]``."""
    builder = Builder(prom, end=end, range_seconds=range_seconds, cfg=cfg or Config())
    throughput, _said = builder.throughput()
    service, said_service = builder.service_level()
    sections = (
        throughput,
        service,
        builder.capacity(said_service.state),
        incidents(builder),
        jobs(builder),
    )
    return Report(
        prometheus=redact_url(prom.url),
        start=builder.start,
        end=end,
        step=builder.step,
        sections=sections,
    )


def queries(report: Report) -> list[str]:
    """Every PromQL expression the report asked (for the declared-names check)."""
    out = []
    for section in report.sections:
        out += [f.query for f in section.figures]
        out += [q for c in section.charts for q in c.queries]
        out += section.queries
    return out
