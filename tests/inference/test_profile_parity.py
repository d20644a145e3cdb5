"""`loglog profile` (the CLI, from two /metrics scrapes and the node agent's) and
`GET /v1/profile` (the server's monitor) give the same verdict and the same advice on the
same numbers — CPU contention and drills included. Both run the real pipeline, monitor and
scrape collector on a fake engine and a fake clock, so the numbers are exact."""

from __future__ import annotations

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inference.core.monitor import Monitor
from inference.tools.profile import Samples, from_scrapes, judge
from tests.inference.test_core import Core

BUSY = 0.9  # the host's CPUs, as the monitor reads /proc/stat and the agent exports it


def _samples(c: Core) -> Samples:
    text = generate_latest(c.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _agent(idle: float, busy: float) -> Samples:
    """The node agent's CPU counters, by mode, as it exports them."""
    return {
        ("host_cpu_seconds_total", (("mode", "idle"),)): idle,
        ("host_cpu_seconds_total", (("mode", "user"),)): busy,
    }


@pytest.fixture
def core():
    """A core whose monitor reads the CPUs BUSY busy, with what the runtime exports at start
    (the model's device and its calibrated capacity)."""
    c = Core(per_item=0.004)
    c.monitor = Monitor(c.pipeline, c.metrics, interval=1.0, window=60.0, cpu_busy=lambda: BUSY)
    c.metrics.model_info.labels("fake", "fake", "cpu", "3x4x4").set(1)
    c.metrics.model_capacity_items_per_second.labels("fake", "8").set(
        c.pipeline.calibration.best_capacity(8)
    )
    c.start()
    c.run(5)
    yield c
    c.stop()


def _both(c: Core, items: int):
    """The monitor's verdict and the CLI's over the same window of ``items`` items."""
    started = c.clock()
    c.monitor.sample()
    first, host_first = _samples(c), _agent(idle=1000.0, busy=500.0)
    c.run(items)
    api = c.monitor.sample()
    second = _samples(c)
    spent = c.clock() - started
    host_second = _agent(idle=1000.0 + (1 - BUSY) * 100, busy=500.0 + BUSY * 100)
    cli = judge(from_scrapes(first, second, spent, (host_first, host_second)))
    assert api is not None
    return api, cli


def test_cpu_contention_is_the_same_verdict_and_advice(core: Core):
    """The engine at half its calibrated speed with the CPUs 90 % busy: both say infer and
    CPU contention, word for word (the CLI said "not contention — the device is throttled"
    before: it never had the CPU load)."""
    core.engine.per_item = 0.008
    api, cli = _both(core, 50)
    assert api.bottleneck == cli.bottleneck == "infer"
    assert (api.stalled, api.engine_starved) == (cli.stalled, cli.engine_starved)
    assert api.advice == cli.advice
    assert "with the host's CPUs 90% busy" in api.advice and "CPU contention" in api.advice
    assert api.engine_efficiency == pytest.approx(0.5)


def test_a_drill_is_named_as_the_cause_by_both(core: Core):
    """A 40 ms drill on preprocess: both name preprocess and the drill ("Add preprocess
    workers" from the CLI before: it did not see the drill)."""
    core.drills.start("preprocess", delay_ms=40, duration_s=600)
    api, cli = _both(core, 50)
    assert api.bottleneck == cli.bottleneck == "preprocess"
    assert api.advice == cli.advice
    assert api.advice.startswith("A drill makes preprocess slow (100% of its busy time")
