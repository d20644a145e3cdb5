"""Worker heartbeats are typed: written and read back as :class:`WorkerBeat`, and a record
that is not one (garbage, a hand-written key, wrong types) is left out, not a 500."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from fleet.api import FleetCollector, create_app
from fleet.heartbeat import WorkerBeat
from fleet.store import JobStore
from tests.fleet.harness import down_dispatcher

beats = st.builds(
    WorkerBeat,
    name=st.text(min_size=1, max_size=20),
    metrics=st.text(max_size=30),
    gpu=st.one_of(st.none(), st.integers(0, 64)),
    busy=st.booleans(),
    job=st.one_of(st.none(), st.text(max_size=20)),
    frames_per_second=st.floats(0, 1e6),
    capacity_frames_per_second=st.floats(0, 1e6),
    seen=st.floats(0, 4e9),
)


@given(beat=beats)
def test_a_beat_reads_back_equal(beat: WorkerBeat) -> None:
    """Any beat survives its JSON form unchanged."""
    assert WorkerBeat.from_json(beat.to_json()) == beat


def test_neighbouring_versions_and_bad_records() -> None:
    """Unknown fields are ignored and missing ones default (an older or newer worker);
    wrong types, a non-finite rate and non-objects are not beats."""
    assert WorkerBeat.from_json('{"name": "w", "extra": [1], "busy": true}') == WorkerBeat(
        name="w", busy=True
    )
    assert WorkerBeat.from_json('{"name": "w", "frames_per_second": 3}') == WorkerBeat(
        name="w", frames_per_second=3.0
    )
    assert WorkerBeat.from_json('{"name": "w", "frames_per_second": null}') == WorkerBeat(name="w")
    for bad in ['{"name": "w", "gpu": "0"}', '{"name": "w", "busy": 1}', '{"name": 5}',
                '{"name": "w", "gpu": true}', '{"name": "w", "frames_per_second": NaN}',
                '{"name": "w", "capacity_frames_per_second": -1}', "[]", "null", "{", ""]:  # fmt: skip
        assert WorkerBeat.from_json(bad) is None, bad


def test_a_record_that_is_not_a_beat_does_not_break_discovery_or_metrics(
    store: JobStore,
) -> None:
    """A garbage value under a worker key (written by hand, or by a broken client) is
    left out; the live workers are still listed and counted in the scrape (a
    JSONDecodeError made /v1/sd/workers and /metrics a 500 before)."""
    store.heartbeat(WorkerBeat(name="w0", metrics="10.0.0.5:9500", gpu=0, busy=True), ttl=60)
    store.client.set(store._key("worker", "junk"), "{not json", px=60_000)
    store.client.set(store._key("worker", "typed"), json.dumps({"name": "t", "gpu": "x"}))
    assert [w.name for w in store.workers()] == ["w0"]
    dispatcher = down_dispatcher(store)
    with TestClient(create_app(dispatcher, publish_interval=60)) as api:
        assert api.get("/v1/sd/workers").json() == [
            {"targets": ["10.0.0.5:9500"], "labels": {"worker": "w0", "gpu": "0"}}
        ]
    # The scrape's families up to the workers' (the broker's come last, and it is down
    # here: asking it costs a connect timeout).
    for family in FleetCollector(dispatcher).collect():
        if family.name == "fleet_workers":
            busy = {s.labels["state"]: s.value for s in family.samples}
            assert busy == {"busy": 1.0, "idle": 0.0}
            break
    else:
        raise AssertionError("no fleet_workers family")
