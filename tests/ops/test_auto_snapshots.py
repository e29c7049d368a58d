"""Snapshots taken by the runner: where they fall, what they hold, and restoring from them."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from log import Log, partition_for
from log.filelog import FileLog
from projections import queries
from projections.commands import encode
from projections.memstore import MemoryStore
from projections.rocksstore import RocksStore
from projections.runner import Runner, digest, digest_partition, fold
from projections.snapshots import (
    MAGIC,
    FileSnapshots,
    LogSnapshots,
    Pacer,
    SnapshotError,
    SnapshotStore,
    Snapshotter,
    export,
    pairs_of,
    read_info,
    restore,
    restoring,
)
from tests.projections.workload import Workload

PARTITIONS = 3
INTERVAL_MS = 10 * 60 * 1000


class ReadCounter:
    """A log that counts the records its readers fetched (instrumentation, not a fake)."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self.records = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    @property
    def partitions(self) -> int:
        return self._log.partitions

    @property
    def log_id(self) -> str:
        return self._log.log_id

    async def read(self, partition: int, offset: int, max_records: int = 1000) -> Any:
        records = await self._log.read(partition, offset, max_records)
        self.records += len(records)
        return records


async def fill(log: Log, n: int, seed: int = 7) -> None:
    work = Workload(seed)
    for cmd in work.commands(n):
        await log.append(partition_for(cmd.project, cmd.queue, PARTITIONS), [encode(cmd)])


async def run_to_end(log: Log, store: Any, snapper: Snapshotter | None, *,
                     batch: int = 1000) -> Runner:
    runner = Runner(log, store, range(PARTITIONS), sweep_interval=0, batch_records=batch,
                    snapshots=snapper)
    await runner.start()
    for p in range(PARTITIONS):
        # Ready first: the owner appends its SetRules once caught up, and a run stopped before
        # that left the next run to append (and read back) it — a few records more, by timing.
        await runner.until_ready(p, timeout=30)
        await runner.barrier(p, timeout=30)
    # Quiet too: a dead-letter move left half-done in the outbox (a claim past its limit)
    # would be sent again by the next run, which then reads back records of its own.
    for _ in range(300):
        if not any(queries.outbox(store, p) for p in range(PARTITIONS)):
            break
        await asyncio.sleep(0.01)
        for p in range(PARTITIONS):
            await runner.barrier(p, timeout=30)
    else:
        raise AssertionError("the outbox never drained")
    if snapper is not None:
        await snapper.drain()
    return runner


async def test_export_and_restore_give_the_partition_back_byte_for_byte(
        tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", PARTITIONS) as log:
        await fill(log, 600)
        with RocksStore(tmp_path / "store") as store:
            for p in range(PARTITIONS):
                await fold(log, store, p, 0)
            identity = (log.log_id, log.partitions)
            for p in range(PARTITIONS):
                lo, hi = (p).to_bytes(2, "big"), (p + 1).to_bytes(2, "big")
                info, blob = export(store.scan(lo, hi), p,
                                    queries.partition_state(store, p), identity)
                assert info.digest == digest_partition(store, p)
                assert read_info(blob) == info and info.size == len(blob)
                assert info.offset == await log.end_offset(p) - 1
                for target in (MemoryStore(), RocksStore(tmp_path / f"copy{p}")):
                    target.commit({b"\x00\x00\x20junk" if p == 0 else
                                   (p).to_bytes(2, "big") + b"\x20junk": b"x"})
                    await restore(target, blob, identity=identity, batch_bytes=4096)
                    assert digest_partition(target, p) == info.digest
                    assert not restoring(target, p)
                    target.close()
                with pytest.raises(SnapshotError, match="belongs to log"):
                    await restore(MemoryStore(), blob, identity=("other", PARTITIONS))
                damaged = blob[:-40] + bytes(40)
                with pytest.raises(SnapshotError, match="damaged"):
                    list(pairs_of(damaged))


class Waits(threading.Event):
    """A real event that keeps the timeout of every wait (what a ``Pacer`` asked for)."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return super().wait(0)


async def big_partition(log: Log, store: RocksStore, p: int, megabytes: int) -> None:
    """Partition ``p`` folded from ``log``, plus ``megabytes`` MiB of pairs of a KiB under it
    (an unused kind): enough for an export of several chunks."""
    await fold(log, store, p, 0)
    prefix = (p).to_bytes(2, "big") + b"\x7f"
    store.commit({prefix + b"%08d" % i: b"%08d" % i * 128 for i in range(megabytes * 1024)})


async def test_the_export_is_the_same_from_scan_bulk_scan_and_paced(tmp_path: Path) -> None:
    """The serving node's export (bulk scan, pacing between chunks) writes the blob any
    other export of the partition writes, and its pacer waits ``ratio`` times each chunk."""
    async with FileLog(tmp_path / "log", PARTITIONS) as log:
        await fill(log, 300)
        with RocksStore(tmp_path / "store") as store:
            p = 1
            await big_partition(log, store, p, 3)
            lo, hi = (p).to_bytes(2, "big"), (p + 1).to_bytes(2, "big")
            state = queries.partition_state(store, p)
            identity = (log.log_id, log.partitions)
            ticks = iter(range(10**6))
            waits = Waits()
            pacer = Pacer(2.5, hurry=waits, clock=lambda: float(next(ticks)))
            blobs = [export(store.scan(lo, hi), p, state, identity),
                     export(store.bulk_scan(lo, hi), p, state, identity),
                     export(store.bulk_scan(lo, hi), p, state, identity, pause=pacer)]
            assert len(waits.timeouts) >= 3  # a wait after each MiB of frames
            assert set(waits.timeouts) == {2.5}  # one tick of work each: 2.5 ticks of wait
            infos = {replace(info, taken_ms=0) for info, _ in blobs}
            assert len(infos) == 1 and infos.pop().digest == digest_partition(store, p)
            bodies = {blob[len(MAGIC) + 4 + int.from_bytes(blob[len(MAGIC):len(MAGIC) + 4]):]
                      for _, blob in blobs}  # past the header (its taken_ms differs)
            assert len(bodies) == 1
            assert list(pairs_of(blobs[2][1])) == list(store.scan(lo, hi))


async def test_a_drain_ends_a_paced_export_at_once(tmp_path: Path) -> None:
    """A stopping node waits for its exports: their pacing stops then (a ratio that would
    wait for days still lets the drain finish) and the snapshot is whole."""
    async with FileLog(tmp_path / "log", PARTITIONS) as log:
        await fill(log, 300)
        with RocksStore(tmp_path / "store") as store:
            p = 2
            await big_partition(log, store, p, 4)
            snaps = FileSnapshots(tmp_path / "snaps")
            snapper = Snapshotter(snaps, INTERVAL_MS, identity=(log.log_id, log.partitions),
                                  pause=10**7)
            await snapper.take(store, p)
            await asyncio.sleep(0.2)  # the export is into its first wait by now
            await asyncio.wait_for(snapper.drain(), 60)
            (info,) = await snaps.list(p)
            assert snapper.taken == 1 and info.digest == digest_partition(store, p)
            assert not snapper._hurry.is_set()  # the next exports are paced again


@pytest.mark.parametrize("kind", ["file", "log"])
async def test_snapshot_store_contract(tmp_path: Path, kind: str) -> None:
    async with FileLog(tmp_path / "log", PARTITIONS) as log, \
            FileLog(tmp_path / "snaplog", PARTITIONS) as snaplog:
        await fill(log, 300)
        snaps: SnapshotStore = (FileSnapshots(tmp_path / "snaps", keep=3) if kind == "file"
                                else LogSnapshots(snaplog, keep=3, chunk_bytes=700))
        store = MemoryStore()
        identity = (log.log_id, log.partitions)
        p = 1
        blobs = {}
        end = await log.end_offset(p)
        for until in range(10, min(end, 60), 10):
            await fold(log, store, p, queries.partition_state(store, p)["offset"] + 1,
                       until=until)
            info, blob = export(list(store.scan(b"\x00\x01", b"\x00\x02")), p,
                                queries.partition_state(store, p), identity)
            await snaps.save(info, blob)
            await snaps.save(info, blob)  # idempotent
            blobs[info.offset] = blob
        listed = await snaps.list(p)
        assert [i.offset for i in listed] == sorted(blobs)[-3:]
        for info in listed:
            assert await snaps.load(info) == blobs[info.offset]
        assert await snaps.list(0) == []
        if kind == "file":  # a new reader of the same directory sees the same
            assert await FileSnapshots(tmp_path / "snaps").list(p) == listed
        else:
            assert await LogSnapshots(snaplog).list(p) == listed


async def test_runner_snapshots_fall_on_log_time_boundaries(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", PARTITIONS) as log:
        await fill(log, 2000)  # ≈ 3 h of log time
        found: dict[int, list[int]] = {}
        # The owner's outbox appends dead-letter moves during a run, so the log grows: compare
        # the snapshots within the log as filled.
        ends = {p: await log.end_offset(p) - 1 for p in range(PARTITIONS)}
        for batch in (1, 1000):
            snaps = FileSnapshots(tmp_path / f"snaps{batch}", keep=100)
            snapper = Snapshotter(snaps, INTERVAL_MS)
            store = MemoryStore()
            runner = await run_to_end(log, store, snapper, batch=batch)
            await runner.stop()
            found[batch] = [i.offset for p in range(PARTITIONS) for i in await snaps.list(p)
                            if i.offset < ends[p]]
        assert found[1] == found[1000]  # positions depend on the log only
        snaps = FileSnapshots(tmp_path / "snaps1000")
        total = 0
        for p in range(PARTITIONS):
            infos = await snaps.list(p)
            assert len(infos) >= 10
            total += len(infos)
            scratch = MemoryStore()
            applied = -1
            for info in infos:
                applied = await fold(log, scratch, p, applied + 1, until=info.offset + 1)
                state = queries.partition_state(scratch, p)
                assert applied == info.offset and state["crc"] == info.crc
                assert digest_partition(scratch, p) == info.digest
                # the record at the offset is the first of a new time bucket
                before = MemoryStore()
                await fold(log, before, p, 0, until=info.offset)
                prev = queries.partition_state(before, p)["time"]
                assert info.time_ms // INTERVAL_MS > prev // INTERVAL_MS
        assert total >= len(found[1000])


async def test_a_fresh_store_restores_the_newest_and_replays_only_the_tail(
        tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", PARTITIONS) as log:
        await fill(log, 1500)
        snaps = FileSnapshots(tmp_path / "snaps", keep=2)
        live = RocksStore(tmp_path / "live")
        runner = await run_to_end(log, live, Snapshotter(snaps, INTERVAL_MS))
        await runner.stop()
        # The tail past the newest snapshot there is *before* the fresh start: under load the
        # first run may skip a cut (a snapshot still being written), which the fresh run then
        # takes itself — reading the list afterwards would count from that newer one.
        tail = 0
        for p in range(PARTITIONS):
            newest = (await snaps.list(p))[-1]
            tail += await log.end_offset(p) - newest.offset - 1
        counted = ReadCounter(log)
        fresh = RocksStore(tmp_path / "fresh")
        runner = await run_to_end(counted, fresh, Snapshotter(snaps, INTERVAL_MS))  # type: ignore[arg-type]
        await runner.stop()
        # the tail, plus the one record each partition's position check reads
        assert counted.records == tail + PARTITIONS
        assert tail < sum([await log.end_offset(p) for p in range(PARTITIONS)]) // 5
        assert digest(fresh) == digest(live)
        live.close()
        fresh.close()


async def test_an_interrupted_restore_is_redone(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", PARTITIONS) as log:
        await fill(log, 800)
        snaps = FileSnapshots(tmp_path / "snaps")
        live = MemoryStore()
        runner = await run_to_end(log, live, Snapshotter(snaps, INTERVAL_MS))
        await runner.stop()
        broken = MemoryStore()
        info = (await snaps.list(0))[-1]
        blob = await snaps.load(info)
        with pytest.raises(SnapshotError):  # the blob ends early: no meta, marker stays
            await restore(broken, blob[: len(blob) // 2],
                          identity=(log.log_id, log.partitions))
        assert restoring(broken, 0)
        runner = await run_to_end(log, broken, Snapshotter(snaps, INTERVAL_MS))
        await runner.stop()
        assert not restoring(broken, 0)
        assert digest(broken) == digest(live)
