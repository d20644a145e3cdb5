"""Crash spool, spill files and ownership: the pieces behind guarantees 3 and 12."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from loglog.batches import Batch, SpillQueue
from loglog.ownership import Owner, owner_of
from loglog.spool import META_SIZE, Spool, recover


def test_spool_keeps_pending_slots_and_forgets_released_ones(tmp_path):
    """recover() returns exactly the records still pending, oldest first."""
    owner = Owner(tmp_path)
    spool = Spool(owner, slots=8, slot_size=1024)
    tokens = [spool.write_doc({"m": f"r{n}", "l": 30, "t": n}) for n in range(5)]
    spool.release(tokens[1])
    spool.release(tokens[3])
    spool.release(tokens[4] + 8)  # another token of the same slot: must not release it
    assert [d["m"] for d in recover(spool.path).docs] == ["r0", "r2", "r4"]
    assert spool.pending() == 3


def test_spool_counts_torn_slots_as_corrupt(tmp_path):
    """A pending slot whose bytes do not match its CRC is not replayed: counted corrupt."""
    owner = Owner(tmp_path)
    spool = Spool(owner, slots=4, slot_size=1024)
    spool.write_doc({"m": "good", "l": 30, "t": 1})
    token = spool.write_doc({"m": "torn", "l": 40, "t": 2})
    spool.abandon()
    data = bytearray(spool.path.read_bytes())
    data[META_SIZE + token * 1024 + 25] ^= 0xFF
    spool.path.write_bytes(bytes(data))
    found = recover(spool.path)
    assert [d["m"] for d in found.docs] == ["good"]
    assert found.corrupt == {"warning": 1} and not found.intact


def test_a_full_ring_reuses_the_oldest_slot_and_counts_it(tmp_path):
    """More pending WARNING+ records than slots: the oldest loses crash protection, counted,
    and a crash then is counted as lost_in_crash by the next reader."""
    spool = Spool(Owner(tmp_path), slots=2, slot_size=512)
    tokens = [spool.write_doc({"m": str(n), "l": 30, "t": n}) for n in range(5)]
    assert spool.overwritten.value == 3
    found = recover(spool.path)
    assert [d["m"] for d in found.docs] == ["3", "4"]
    assert found.lost_in_crash == 3
    spool.release(tokens[0])  # an overwritten record became durable after all
    assert recover(spool.path).lost_in_crash == 2


def test_oversized_records_are_shrunk_to_fit_a_slot(tmp_path):
    """A record bigger than a slot keeps its head (message, level) and stays valid JSON."""
    spool = Spool(Owner(tmp_path), slots=2, slot_size=512)
    spool.write_doc({"m": "x" * 5000, "f": {"big": "y" * 5000}, "l": 40, "t": 1})
    (doc,) = recover(spool.path).docs
    assert doc["l"] == 40 and doc["m"].startswith("xxx") and doc["f"] == {"_truncated": True}


def test_owner_of_a_dead_process_is_recognised_and_a_live_one_is_not(tmp_path):
    """A lock file whose process died (even by SIGKILL) is adoptable; ours and a live
    process's are not. POSIX locks die with their process."""
    code = (
        f"import sys, time; sys.path.insert(0, {os.getcwd()!r})\n"
        "from loglog.ownership import Owner\n"
        f"print(Owner({str(tmp_path)!r}).id, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        other = child.stdout.readline().strip()
        me = Owner(tmp_path)
        assert me.dead_owners({other}) == set(), "a live owner is not dead"
        child.kill()
        child.wait()
        assert me.dead_owners({other}) == {other}
        assert not (tmp_path / f"{other}.owner").exists()
    finally:
        child.kill()
        child.wait()
        if child.stdout:
            child.stdout.close()


def test_spill_files_of_a_dead_owner_are_adopted_oldest_first(tmp_path):
    """A new SpillQueue takes over a dead owner's batches by renaming them to itself."""
    dead = Owner(tmp_path)
    queue = SpillQueue(dead, "loki", 10**6, set())
    for n in range(3):
        queue.put(Batch(_body(n, n + 1), {"info": n + 1}, n, n, time.time_ns()))
    dead.abandon()  # releases the lock as process death would
    heir = Owner(tmp_path)
    adopted = SpillQueue(heir, "loki", 10**6, heir.dead_owners({dead.id}))
    assert adopted.adopted == 6
    order = []
    while (batch := adopted.head()) is not None:
        order.append(batch.payload)
        assert owner_of(batch.name) == heir.id
        adopted.pop(batch)
    assert order == [_body(0, 1), _body(1, 2), _body(2, 3)]
    assert list((tmp_path / "loki").iterdir()) == []


def _body(tag: int, entries: int) -> bytes:
    """A Loki push body with ``entries`` entries, told apart by ``tag``."""
    values = [[str(1_700_000_000_000_000_000 + tag), f'{{"msg":"{tag}"}}'] for _ in range(entries)]
    return json.dumps({"streams": [{"stream": {"service": "t"}, "values": values}]}).encode()
