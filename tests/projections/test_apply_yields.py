"""Apply never starves reads (DESIGN §7, issue 10 item 4): while one partition folds a big
backlog — 20,000 posted messages, their purge and the garbage collection after it — the runner
commits in bounded slices and yields after each one, so a reader of another partition gets a
turn between any two slices. Counted in commits between the reader's turns, not in time."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from pathlib import Path

from log import partition_for
from log.filelog import FileLog
from projections import keys as K
from projections import queries
from projections.commands import NewMessage, PostMessages, PurgeQueue, Sweep, encode
from projections.memstore import MemoryStore
from projections.rules.state import get_queue
from projections.runner import Runner

PARTITIONS = 2
T0 = 1_900_000_000_000


class CountingStore(MemoryStore):
    """A MemoryStore that counts the commits of one partition (each is one runner slice)."""

    def __init__(self, partition: int) -> None:
        super().__init__()
        self.prefix = K.U16.pack(partition)
        self.commits = 0

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        if any(k.startswith(self.prefix) for k in changes):
            self.commits += 1
        super().commit(changes)


def queues_on_two_partitions() -> tuple[str, str]:
    names = [f"q{i}" for i in range(50)]
    big = names[0]
    other = next(n for n in names if partition_for("p", n, PARTITIONS)
                 != partition_for("p", big, PARTITIONS))
    return big, other


async def test_a_reader_of_another_partition_gets_a_turn_between_any_two_slices(
        tmp_path: Path) -> None:
    big, other = queues_on_two_partitions()
    pb, po = partition_for("p", big, PARTITIONS), partition_for("p", other, PARTITIONS)
    base = {"project": "p", "client_id": "c"}
    async with FileLog(tmp_path / "log", PARTITIONS, durable=False) as log:
        await log.append(po, [encode(PostMessages(
            id="o", queue=other, time_ms=T0, size=10, **base,
            messages=[NewMessage(id="om", body={}, ttl=3600)]))])
        records = [encode(PostMessages(
            id=f"c{i}", queue=big, time_ms=T0 + i, size=10_000, **base,
            messages=[NewMessage(id=f"m{i}-{j}", body={"pad": "x" * 100}, ttl=3600)
                      for j in range(100)])) for i in range(200)]
        records.append(encode(PurgeQueue(id="purge", queue=big, time_ms=T0 + 1000,
                                         resource_types=["messages"], **base)))
        records += [encode(Sweep(id=f"s{i}", time_ms=T0 + 2000 + i, cutoff_ms=T0 + 2000 + i,
                                 max_count=1000)) for i in range(25)]
        await log.append(pb, records)
        store = CountingStore(pb)
        runner = Runner(log, store, range(PARTITIONS), sweep_interval=0, batch_records=1000)
        turns: list[int] = []  # commits seen at each of the reader's turns
        async with runner:
            while runner.applied_offset(pb) < len(records) - 1:
                await runner.barrier(po, timeout=30)
                stats = queries.stats(store, po, "p", other, T0 + 5000)
                assert stats["total"] == 1
                turns.append(store.commits)
                await asyncio.sleep(0)
            await runner.barrier(pb, timeout=30)
        gaps = [b - a for a, b in itertools.pairwise(turns)]
        assert store.commits >= 10  # the backlog took many slices ...
        assert max(gaps) <= 2, gaps  # ... and the reader had a turn at least every other one
        left = queries.stats(store, pb, "p", big, T0 + 5000)["total"]
        assert left == 0


class TurnCounter(MemoryStore):
    """Keys each commit of one partition writes (a commit is one loop turn of its runner)."""

    def __init__(self, partition: int) -> None:
        super().__init__()
        self.prefix = K.U16.pack(partition)
        self.since_read = 0  # keys committed since the reader's last turn
        self.turns: list[int] = []  # keys of each commit

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        mine = sum(1 for k in changes if k.startswith(self.prefix))
        if mine:
            self.turns.append(mine)
            self.since_read += mine
        super().commit(changes)


async def test_an_expiry_catch_up_holds_the_loop_for_a_bounded_number_of_keys_a_turn(
        tmp_path: Path) -> None:
    """5,000 messages expire at once; the owner's Sweeps catch up. A Sweep is one record and
    a record is one loop turn, so the runner's default slice size bounds each turn's keys and
    what a reader of another partition waits behind (1,000 per Sweep: ~5,000 keys a turn)."""
    big, other = queues_on_two_partitions()
    pb, po = partition_for("p", big, PARTITIONS), partition_for("p", other, PARTITIONS)
    base = {"project": "p", "client_id": "c"}
    now = [T0]
    async with FileLog(tmp_path / "log", PARTITIONS, durable=False) as log:
        await log.append(po, [encode(PostMessages(
            id="o", queue=other, time_ms=T0, size=10, **base,
            messages=[NewMessage(id="om", body={}, ttl=3600)]))])
        await log.append(pb, [encode(PostMessages(
            id=f"c{i}", queue=big, time_ms=T0 + i, size=10_000, **base,
            messages=[NewMessage(id=f"m{i}-{j}", body={}, ttl=60) for j in range(100)]))
            for i in range(50)])
        store = TurnCounter(pb)
        runner = Runner(log, store, range(PARTITIONS), sweep_interval=0.01,
                        clock=lambda: now[0])
        between: list[int] = []  # keys the big partition committed between two reads
        async with runner:
            await runner.settled()
            await runner.barrier(pb, timeout=30)
            store.turns.clear()
            store.since_read = 0
            now[0] = T0 + 120_000  # every message has expired
            for _ in range(100_000):
                if queries.stats(store, pb, "p", big, now[0])["total"] == 0 and (
                        get_queue(store, pb, "p", big) or {"count": 0})["count"] == 0:
                    break
                await runner.barrier(po, timeout=30)
                assert queries.stats(store, po, "p", other, now[0])["total"] == 1
                between.append(store.since_read)
                store.since_read = 0
                await asyncio.sleep(0)
        assert (get_queue(store, pb, "p", big) or {"count": 0})["count"] == 0
        assert len(store.turns) >= 20  # the catch-up took many turns ...
        assert max(store.turns) <= 1_200, max(store.turns)  # ... each a bounded one
        assert max(between) <= 2 * 1_200, max(between)  # a reader between any two
