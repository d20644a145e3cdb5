"""Property-based: hostile values in log calls, and damaged crash-spool and spill files.

Whatever a value's dunder methods do (raise, block, recurse, return garbage, log), a log
call returns at once and every record is delivered; whatever bytes a dead process left in
the spill directory, starting up never raises, never delivers a record twice, and never
reads a damaged file again.
"""

from __future__ import annotations

import json
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loglog
from loglog.spool import META_SIZE, Spool, recover
from loglog.testing import ListSink

RELEASE = threading.Event()  # set at the end of each example: frees blocked helpers


def _behaviour(kind: str) -> object:
    class Hostile:
        def __str__(self) -> str:
            if kind == "raise":
                raise TypeError("hostile")
            if kind == "block":
                RELEASE.wait(10)
                return "unblocked"
            if kind == "recurse":
                return str(self)
            if kind == "huge":
                return "h" * 2_000_000
            if kind == "not-a-str":
                return 42  # type: ignore[return-value]
            if kind == "logs":
                loglog.get_logger("inner").warning("from __str__", v=self)
                return "logged"
            return "fine"

        __repr__ = __str__

        def __hash__(self) -> int:
            if kind == "raise":
                raise TypeError("unhashable today")
            return id(self)

    return Hostile()


def _key(kind: str) -> object:
    # a dict key must be hashable: "raise" keys fail in __str__ only
    value = _behaviour("fine" if kind == "raise" else kind)
    if kind == "raise":

        class BadKey:
            def __str__(self) -> str:
                raise ValueError("bad key")

        return BadKey()
    return value


KINDS = st.sampled_from(["raise", "block", "recurse", "huge", "not-a-str", "logs", "fine"])
HOSTILE = KINDS.map(_behaviour)
VALUES = st.recursive(
    st.one_of(st.integers(), st.text(max_size=20), st.none(), st.floats(), HOSTILE),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=5), KINDS.map(_key)), children, max_size=4),
    ),
    max_leaves=8,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    message=st.one_of(st.text(max_size=30), VALUES),
    fields=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(str.isidentifier), VALUES, max_size=4
    ),
)
def test_hostile_values_never_block_raise_or_cost_another_record(tmp_path, message, fields):
    """Each hostile record sits between two plain ones; all three are delivered, in order,
    and neither the WARNING call (crash spool on) nor the INFO call waits on user code."""
    RELEASE.clear()
    sink = ListSink()
    loglog.configure(
        console=None,
        sinks=[sink],
        spill_dir=str(tmp_path / "spill"),
        render_timeout=0.05,
        registry=None,
    )
    log = loglog.get_logger("prop")
    worst = 0.0
    for call in (log.warning, log.info):
        log.info("before")
        started = time.perf_counter()
        call(message, **fields)
        worst = max(worst, time.perf_counter() - started)
        log.info("after")
    try:
        assert loglog.flush(timeout=30)
    finally:
        RELEASE.set()
    assert worst < 0.5, "a log call waited on user code"
    mine = [r for r in sink.records if r.logger == "prop"]
    assert len(mine) == 6
    assert [r.message for r in mine][::3] == ["before", "before"]
    assert [r.message for r in mine][2::3] == ["after", "after"]
    for record in mine:
        json.dumps(record.fields, default=str)  # rendered to JSON-safe values
    stats = loglog.stats()
    assert stats["internal_errors"] == 0
    assert sum(stats["emitted"].values()) < 50, "a __str__ that logs must not multiply"
    loglog.shutdown(timeout=2)


DOCS = st.fixed_dictionaries(
    {},
    optional={
        "t": st.one_of(st.integers(min_value=-5, max_value=2**63), st.text(max_size=3)),
        "l": st.one_of(st.integers(min_value=-5, max_value=200), st.none(), st.text(max_size=3)),
        "n": st.one_of(st.text(max_size=5), st.integers()),
        "m": st.one_of(st.text(max_size=20), st.integers(), st.lists(st.integers())),
        "f": st.one_of(st.dictionaries(st.text(max_size=3), st.integers()), st.text()),
        "th": st.one_of(st.text(max_size=5), st.none(), st.integers()),
        "x": st.one_of(st.text(max_size=20), st.none(), st.integers()),
        "tr": st.one_of(st.text(max_size=8), st.none(), st.integers()),
    },
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(docs=st.lists(DOCS, min_size=1, max_size=6))
def test_every_spooled_field_is_validated_and_each_slot_replayed_or_counted(tmp_path, docs):
    """Arbitrary values in every field of spooled records: recovery replays the valid
    ones and counts the others as corrupt — exactly one or the other per pending slot."""
    directory = tmp_path / f"d{time.monotonic_ns()}"
    directory.mkdir()

    from loglog.ownership import Owner

    owner = Owner(directory)
    spool = Spool(owner, slots=8, slot_size=1024)
    for doc in docs:
        spool.write_doc(doc)
    spool.abandon()
    owner.abandon()
    found = recover(spool.path)
    assert len(found.docs) + sum(found.corrupt.values()) == len(docs)
    for doc in found.docs:
        assert type(doc["t"]) is int and type(doc["l"]) is int and isinstance(doc["m"], str)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    flips=st.lists(
        st.tuples(st.integers(0, META_SIZE + 4 * 1024 - 1), st.integers(1, 255)),
        min_size=1,
        max_size=12,
    ),
    cut=st.one_of(st.none(), st.integers(0, META_SIZE + 4 * 1024)),
    batch=st.binary(max_size=300),
)
def test_damaged_files_of_a_dead_owner_never_raise_or_come_back(tmp_path, flips, cut, batch):
    """A dead owner's spool with random bytes flipped (or cut short) and a spill batch of
    random bytes: configure() does not raise, no record is delivered twice, damaged files
    land in corrupt/, and a second start replays nothing."""
    directory = tmp_path / f"d{time.monotonic_ns()}"
    directory.mkdir()
    dead = "999999-0badc0de"
    from loglog.ownership import Owner

    owner = Owner(directory)
    spool = Spool(owner, slots=4, slot_size=1024)
    for n in range(4):
        spool.write_doc({"t": n, "l": 30, "m": f"m{n}", "f": {}, "th": "main", "n": "x"})
    spool.abandon()
    owner.close()
    data = bytearray(spool.path.read_bytes())
    for offset, xor in flips:
        data[offset] ^= xor
    if cut is not None:
        data = data[:cut]
    spool.path.unlink()
    (directory / f"{1:020d}-{dead}-1024.spool").write_bytes(bytes(data))
    (directory / "loki").mkdir()
    (directory / "loki" / f"{2:020d}-{dead}.batch").write_bytes(batch)

    def start() -> tuple[list[str], dict]:
        sink = ListSink()
        loglog.configure(
            console=None,
            sinks=[sink],
            spill_dir=str(directory),
            loki_url="http://127.0.0.1:9",
            loki_timeout=0.2,
            registry=None,
        )
        assert loglog.flush(timeout=10) or True  # Loki is down: flush may be False
        messages = [r.message for r in sink.records if r.replayed]
        stats = loglog.stats()
        loglog.shutdown(timeout=1)
        return messages, stats

    first, _stats = start()
    assert len(first) == len(set(first)), "a record replayed twice"
    assert set(first) <= {"m0", "m1", "m2", "m3"}
    leftovers = [p.name for p in directory.glob(f"*{dead}*")]
    assert leftovers == [], "a dead owner's spool is read once, then removed or moved"
    second, stats2 = start()
    assert second == []
    corrupt = sum(v for (s, _, r), v in stats2["dropped"].items() if r == "corrupt")
    assert corrupt == 0, "a damaged file was read again"
