"""A node with an empty store taking over partitions from the broker (DESIGN.md §8): it
restores the newest snapshot from ``<topic>-snapshots`` and replays only the records after
it — fewer than one snapshot interval of log time — and ends with the state of the node
that folded the whole history. Against the real test broker (tansu)."""

from __future__ import annotations

from pathlib import Path

from log.kafkalog import KafkaLog
from projections.commands import encode
from projections.rocksstore import RocksStore
from projections.runner import Runner, digest_partition
from projections.snapshots import LogSnapshots, Snapshotter
from tests.ops.steady import Steady
from tests.ops.test_auto_snapshots import ReadCounter

PARTITIONS = 2
INTERVAL_MS = 2 * 60_000
MINUTES = 15


async def _runner(log: object, store: RocksStore, snaplog: KafkaLog, clock: object) -> tuple[
        Runner, Snapshotter]:
    snapper = Snapshotter(LogSnapshots(snaplog, keep=3), INTERVAL_MS)
    runner = Runner(log, store, [], sweep_interval=0, snapshots=snapper,  # type: ignore[arg-type]
                    clock=clock)  # type: ignore[arg-type]
    await runner.start()
    return runner, snapper


async def _ready(runner: Runner, partitions: list[int]) -> None:
    import asyncio

    for _ in range(1200):
        if all(runner.ready(p) for p in partitions):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"partitions {partitions} never became ready")


async def test_a_fresh_node_replays_only_the_records_since_the_last_snapshot(
        kafka_bootstrap: str, kafka_topic: str, tmp_path: Path) -> None:
    load = Steady(PARTITIONS, ("q0", "q5"), body_bytes=100)
    log = KafkaLog(kafka_bootstrap, kafka_topic, PARTITIONS)
    snaplog = KafkaLog(kafka_bootstrap, f"{kafka_topic}-snapshots", PARTITIONS)
    await log.start()
    await snaplog.start()
    owned = list(range(PARTITIONS))
    try:
        per_partition = dict.fromkeys(owned, 0)
        store_a = RocksStore(tmp_path / "a")
        runner_a, snapper_a = await _runner(log, store_a, snaplog, lambda: load.now)
        runner_a.assign(owned)
        for _ in range(MINUTES):
            batch: dict[int, list[bytes]] = {}
            for _ in range(60):
                for p, cmd in load.second():
                    batch.setdefault(p, []).append(encode(cmd))
            for p, records in batch.items():
                await log.append(p, records)
                per_partition[p] += len(records)
        for p in owned:
            await runner_a.barrier(p, timeout=120)
        await snapper_a.drain()
        digests = {p: digest_partition(store_a, p) for p in owned}
        await runner_a.stop()
        store_a.close()

        # the fresh node: an empty store, its own reader of the snapshot topic
        fresh_snaplog = KafkaLog(kafka_bootstrap, f"{kafka_topic}-snapshots", PARTITIONS)
        await fresh_snaplog.start()
        counted = ReadCounter(log)
        store_b = RocksStore(tmp_path / "b")
        try:
            runner_b, _ = await _runner(counted, store_b, fresh_snaplog, lambda: load.now)
            runner_b.assign(owned)
            await _ready(runner_b, owned)
            newest = {p: (await LogSnapshots(fresh_snaplog).list(p))[-1] for p in owned}
            ends = {p: await log.end_offset(p) for p in owned}
            tail = sum(ends[p] - newest[p].offset - 1 for p in owned)
            # the tail (and one record per partition for the position check), nothing more
            assert counted.records <= tail + PARTITIONS
            for p in owned:
                assert runner_b.applied_offset(p) == ends[p] - 1
                assert digest_partition(store_b, p) == digests[p]
                # bounded by one snapshot interval of this partition's records (+ slack for
                # the records of the boundary second)
                per_interval = per_partition[p] * INTERVAL_MS / (MINUTES * 60_000)
                assert ends[p] - newest[p].offset - 1 <= per_interval * 1.05 + 20, p
            assert counted.records < sum(ends.values()) / 4  # far from a replay from 0
            await runner_b.stop()
        finally:
            store_b.close()
            await fresh_snaplog.stop()
    finally:
        await snaplog.stop()
        await log.stop()
