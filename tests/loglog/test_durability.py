"""Crash spool, spill files and ownership: the pieces behind guarantees 3 and 12."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from loglog.batches import Batch, SpillQueue
from loglog.ownership import Owner, owner_of
from loglog.spool import Spool, recover


def test_spool_keeps_pending_slots_and_forgets_released_ones(tmp_path):
    """recover() returns exactly the records still pending, oldest first."""
    owner = Owner(tmp_path)
    spool = Spool(owner, slots=8, slot_size=1024)
    slots = [spool.write_doc(seq, {"m": f"r{seq}", "l": 30}) for seq in range(5)]
    spool.release(slots[1], 1)
    spool.release(slots[3], 3)
    spool.release(slots[4], 999)  # wrong seq: a reused slot must not be released
    assert [d["m"] for d in recover(spool.path)] == ["r0", "r2", "r4"]
    assert spool.pending() == 3


def test_spool_skips_torn_slots(tmp_path):
    """A slot whose bytes do not match its CRC (a write cut short) is skipped, not replayed."""
    owner = Owner(tmp_path)
    spool = Spool(owner, slots=4, slot_size=1024)
    spool.write_doc(1, {"m": "good"})
    index = spool.write_doc(2, {"m": "torn"})
    spool.abandon()
    data = bytearray(spool.path.read_bytes())
    data[index * 1024 + 25] ^= 0xFF
    spool.path.write_bytes(bytes(data))
    assert [d["m"] for d in recover(spool.path)] == ["good"]


def test_a_full_ring_reuses_the_oldest_slot_and_counts_it(tmp_path):
    """More pending WARNING+ records than slots: the oldest loses crash protection, counted."""
    spool = Spool(Owner(tmp_path), slots=2, slot_size=512)
    for seq in range(5):
        spool.write_doc(seq, {"m": seq})
    assert spool.overwritten.value == 3
    assert [d["m"] for d in recover(spool.path)] == [3, 4]


def test_oversized_records_are_shrunk_to_fit_a_slot(tmp_path):
    """A record bigger than a slot keeps its head (message, level) and stays valid JSON."""
    spool = Spool(Owner(tmp_path), slots=2, slot_size=512)
    spool.write_doc(1, {"m": "x" * 5000, "f": {"big": "y" * 5000}, "l": 40})
    (doc,) = recover(spool.path)
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
        queue.put(Batch(f"payload{n}".encode(), {"info": n + 1}, n, n, time.time_ns()))
    dead.abandon()  # releases the lock as process death would
    heir = Owner(tmp_path)
    adopted = SpillQueue(heir, "loki", 10**6, heir.dead_owners({dead.id}))
    assert adopted.adopted == 6
    order = []
    while (batch := adopted.head()) is not None:
        order.append(batch.payload)
        assert owner_of(batch.name) == heir.id
        adopted.pop(batch)
    assert order == [b"payload0", b"payload1", b"payload2"]
    assert list((tmp_path / "loki").iterdir()) == []
