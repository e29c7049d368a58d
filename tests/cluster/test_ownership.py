"""Ownership without processes: the sticky assignment, and a Runner whose partitions change.

The runner tests use FileLog and RocksDB (real parts, one process): assign starts tails from
the stored offset, revoke stops them and fails their waiters, a returning partition only
catches up, and ``ready`` is false until the partition caught up with the log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from log import partition_for
from log.filelog import FileLog
from log.membership import sticky_assignment
from projections import queries
from projections.commands import CreateQueue, NewMessage, PostMessages, encode
from projections.memstore import MemoryStore
from projections.rocksstore import RocksStore
from projections.runner import Runner, digest_partition, fold

# -- the assignment ---------------------------------------------------------------------


def members(**held: list[int]) -> dict[str, tuple[str, list[int]]]:
    return {f"id-{name}": (f"http://{name}", parts) for name, parts in held.items()}


def test_fresh_members_get_a_balanced_share() -> None:
    plan = sticky_assignment(range(16), members(a=[], b=[], c=[]))
    sizes = sorted(len(ps) for ps in plan.values())
    assert sizes == [5, 5, 6]
    assert sorted(p for ps in plan.values() for p in ps) == list(range(16))


def test_a_joining_member_takes_only_what_it_must() -> None:
    before = sticky_assignment(range(16), members(a=[], b=[]))
    after = sticky_assignment(range(16), members(a=before["id-a"], b=before["id-b"], c=[]))
    moved = [p for p in range(16) if p not in after["id-a"] and p not in after["id-b"]]
    assert sorted(moved) == after["id-c"]
    assert set(after["id-a"]) <= set(before["id-a"]) and set(after["id-b"]) <= set(before["id-b"])
    assert max(len(ps) for ps in after.values()) - min(len(ps) for ps in after.values()) <= 2


def test_a_leaving_member_hands_over_only_its_partitions() -> None:
    three = sticky_assignment(range(8), members(a=[], b=[], c=[]))
    two = sticky_assignment(range(8), members(a=three["id-a"], b=three["id-b"]))
    assert set(three["id-a"]) <= set(two["id-a"]) and set(three["id-b"]) <= set(two["id-b"])
    assert sorted(two["id-a"] + two["id-b"]) == list(range(8))
    assert abs(len(two["id-a"]) - len(two["id-b"])) <= 1


def test_conflicting_claims_and_unknown_partitions_resolve_deterministically() -> None:
    held = members(a=[0, 1, 2, 99], b=[1, 2, 3])
    plan = sticky_assignment(range(4), held)
    assert plan == sticky_assignment(range(4), dict(reversed(list(held.items()))))
    assert sorted(plan["id-a"] + plan["id-b"]) == [0, 1, 2, 3]
    assert plan["id-a"] == [0, 1] and plan["id-b"] == [2, 3]


def test_no_members_no_plan() -> None:
    assert sticky_assignment(range(4), {}) == {}


# -- a runner whose partitions change ---------------------------------------------------


async def post(log: FileLog, project: str, queue: str, n: int, tag: str) -> int:
    p = partition_for(project, queue, log.partitions)
    cmds = [CreateQueue(id=f"{tag}-q", project=project, queue=queue, time_ms=1)]
    cmds += [PostMessages(id=f"{tag}-{i}", project=project, queue=queue, time_ms=2 + i,
                          messages=[NewMessage(id=f"{tag}-m{i}", body=i)]) for i in range(n)]
    offsets = await log.append(p, [encode(c) for c in cmds])
    return offsets[-1]


async def test_assign_revoke_and_return(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", 4) as log:
        q = "queue-x"
        p = partition_for("proj", q, 4)
        last = await post(log, "proj", q, 50, "a")
        store = RocksStore(tmp_path / "store")
        runner = Runner(log, store, [], sweep_interval=0, rules_version=None)  # counts offsets
        await runner.start()
        try:
            assert runner.partitions == [] and not runner.ready(p)
            with pytest.raises(RuntimeError):
                await runner.applied(p, 0, timeout=1)
            assert runner.assign([p]) == [p]
            assert runner.assign([p]) == []  # already owned
            await runner.applied(p, last, timeout=10)
            for _ in range(100):
                if runner.ready(p):
                    break
                await asyncio.sleep(0.01)
            assert runner.ready(p)
            assert queries.stats(store, p, "proj", q, 10_000)["total"] == 50

            # a waiter on a revoked partition fails (the gateway answers 503), state stays
            waiter = asyncio.ensure_future(runner.applied(p, last + 1000, timeout=10))
            await asyncio.sleep(0)
            assert runner.revoke([p]) == [p]
            with pytest.raises(RuntimeError):
                await waiter
            assert not runner.ready(p) and runner.partitions == []
            assert queries.partition_state(store, p)["offset"] == last

            # records appended meanwhile are caught up from the stored offset on return
            last = await post(log, "proj", q, 20, "b")
            runner.assign([p])
            await runner.applied(p, last, timeout=10)
            assert queries.stats(store, p, "proj", q, 10_000)["total"] == 70
            # revoke then assign at once: the old tail is gone before the new one applies
            runner.revoke([p])
            runner.assign([p])
            last = await post(log, "proj", q, 5, "c")
            await runner.applied(p, last, timeout=10)
        finally:
            await runner.stop()
        scratch = MemoryStore()
        await fold(log, scratch, p, 0)
        assert digest_partition(store, p) == digest_partition(scratch, p)
        store.close()


async def test_ready_waits_for_the_catch_up(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", 2) as log:
        p = partition_for("proj", "big", 2)
        last = await post(log, "proj", "big", 3000, "big")
        store = RocksStore(tmp_path / "store")
        runner = Runner(log, store, [], sweep_interval=0, batch_records=100, slice_ms=0.1,
                        rules_version=None)  # counts offsets
        await runner.start()
        try:
            runner.assign([p])
            seen_unready_progress = False
            while not runner.ready(p):
                if -1 < runner.applied_offset(p) < last:
                    seen_unready_progress = True
                await asyncio.sleep(0)
            assert seen_unready_progress  # restoring: applied some, not ready yet
            assert runner.applied_offset(p) == last
            assert runner.ready_partitions == [p]
        finally:
            await runner.stop()
            store.close()
