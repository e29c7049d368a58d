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
