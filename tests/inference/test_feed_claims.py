"""Host-wide core claims and the decode processes' plan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry

from inference.feed.claims import claim, claims_dir, holders
from inference.feed.plan import FeedPlan, default_processes, feed_plan
from inference.tuning.affinity import CorePlan
from tests.conftest import ROOT

linux_two_cores = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two usable cores",
)


def test_two_claimants_never_get_one_core_and_a_release_frees_it(tmp_path):
    """Claims are exclusive even inside one process (each is its own open file); when
    every core is held the next claimant gets None, and a released core is claimable."""
    folder = str(tmp_path / "cores")
    first = claim([1, 0], folder)
    second = claim([1, 0], folder)
    assert first is not None and second is not None
    assert (first.core, second.core) == (1, 0)
    assert claim([1, 0], folder) is None
    assert holders(folder, [0, 1, 2]) == {0, 1}
    first.release()
    third = claim([1, 0], folder)
    assert third is not None and third.core == 1
    second.release()
    third.release()
    assert holders(folder, [0, 1]) == set()


def test_no_folder_means_no_claims_and_auto_means_the_host_default():
    assert claims_dir("") is None
    assert claims_dir(None) == claims_dir("auto") != ""
    assert claims_dir("/somewhere") == "/somewhere"
    assert claim([0], None) is None


@pytest.mark.slow
def test_a_claim_of_a_killed_process_is_released_by_the_kernel(tmp_path):
    """SIGKILL leaves no stale claim: the lock dies with the process (no cleanup step
    exists that a crash could skip)."""
    folder = str(tmp_path / "cores")
    code = textwrap.dedent(
        f"""
        import sys, time
        from inference.feed.claims import claim
        held = claim([3], {folder!r})
        print(held.core, flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "3"
            assert holders(folder, [3]) == {3} and claim([3], folder) is None
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
    again = claim([3], folder)
    assert again is not None and again.core == 3
    again.release()


def test_the_default_is_one_decode_process_per_core_but_one():
    assert default_processes({0}) == 0
    assert default_processes({0, 1}) == 1
    assert default_processes(set(range(16))) == 15


def test_decode_processes_take_the_cores_the_engine_left_one_each():
    """Engine on core 3: three processes prefer cores 0, 1, 2 in turn and claim one
    each; a fourth would share, so all four share every usable core instead."""
    engine = CorePlan(frozenset({3}), frozenset({0, 1, 2}))
    plan = feed_plan(3, engine, {0, 1, 2, 3})
    assert plan.claim and [plan.for_process(i)[0] for i in range(3)] == [0, 1, 2]
    assert sorted(plan.for_process(1)) == [0, 1, 2]
    crowded = feed_plan(4, engine, {0, 1, 2, 3})
    assert not crowded.claim and crowded.for_process(3) == [0, 1, 2, 3]
    assert feed_plan(0, engine, {0, 1, 2, 3}) == FeedPlan(0)
    assert feed_plan(2, None, None).for_process(0) is None  # the OS cannot pin
    assert "decode process" in feed_plan(2, None, {0, 1, 2}).describe()


@pytest.mark.slow
@linux_two_cores
def test_two_engines_in_one_host_never_share_a_core(tmp_path):
    """Two runtimes with a one-thread CPU engine each (two servers, or two fleet workers,
    on one host): the second claims the next core instead of the first one's — before,
    both pinned to the highest core. A third, with every core claimed, runs unpinned."""
    from inference.config import RuntimeConfig
    from inference.runtime import Runtime
    from tests.inference.conftest import small_model_path

    allowed = sorted(os.sched_getaffinity(0))
    folder = str(tmp_path / "cores")
    made = []
    try:
        for _ in range(len(allowed) + 1):
            runtime = Runtime(
                model=small_model_path(),
                config=RuntimeConfig(
                    engine_threads=1,
                    calibration_seconds=0.1,
                    core_claims_dir=folder,
                    decode_processes=0,
                ),
                registry=CollectorRegistry(),
            )
            made.append(runtime)
        engines = [r.cores.engine for r in made[:-1] if r.cores is not None]
        assert len(engines) == len(allowed)
        assert len({core for cores in engines for core in cores}) == len(engines)
        assert engines[0] == frozenset({allowed[-1]})
        assert made[-1].cores is None
    finally:
        for runtime in made:
            runtime.stop()
    assert holders(folder, allowed) == set()


@pytest.mark.parametrize("bad", [-1, 65, 2.5, True, "2"])
def test_a_wrong_decode_processes_fails_at_start_up_saying_what_is_accepted(bad):
    from inference.config import RuntimeConfig
    from inference.errors import ConfigError

    with pytest.raises(ConfigError, match="decode_processes"):
        RuntimeConfig(decode_processes=bad)
    assert RuntimeConfig(decode_processes=None).decode_processes is None
    assert RuntimeConfig(decode_processes=0).decode_processes == 0
