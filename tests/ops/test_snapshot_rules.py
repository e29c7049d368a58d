"""Snapshots carry the rules version they were taken under (it is in the partition's meta
record, so in the blob and its digest): a replay or audit resumed from a snapshot folds the
records after it under that version, and a log that switches rules between two snapshots
replays the same from either of them as from offset 0."""

from __future__ import annotations

from pathlib import Path

from log import partition_for
from log.filelog import FileLog
from ops.admin import log_dir, snapshot_dir, store_dir
from projections import queries
from projections.audit import History
from projections.commands import encode
from projections.rocksstore import RocksStore
from projections.rules import versions
from projections.runner import Runner, digest_partition
from projections.snapshots import FileSnapshots, Snapshotter, pairs_of
from tests.ops.steady import Steady

PARTITIONS = 2
INTERVAL_MS = 60 * 1000


async def run_phase(data: Path, load: Steady, seconds: int, rules: int | None) -> None:
    """``seconds`` of load folded by a runner that snapshots, configured for ``rules``
    (None: an old node that never switches)."""
    async with FileLog(log_dir(data), PARTITIONS, durable=False) as log:
        with RocksStore(store_dir(data)) as store:
            snapper = Snapshotter(FileSnapshots(snapshot_dir(data), keep=1000), INTERVAL_MS)
            runner = Runner(log, store, range(PARTITIONS), sweep_interval=0,
                            snapshots=snapper, rules_version=rules)
            async with runner:
                await runner.settled()
                for _ in range(seconds):
                    for p, cmd in load.second():
                        await log.append(p, [encode(cmd)])
                for p in range(PARTITIONS):
                    await runner.barrier(p, timeout=120)
                await snapper.drain()


def rules_of(blob: bytes, partition: int) -> int:
    from projections.memstore import MemoryStore

    return versions.in_force(queries.partition_state(MemoryStore(dict(pairs_of(blob))),
                                                     partition))


async def test_replay_from_a_snapshot_resumes_under_the_rules_it_was_taken_under(
        tmp_path: Path) -> None:
    load = Steady(PARTITIONS, body_bytes=50)
    await run_phase(tmp_path, load, 200, rules=None)  # original rules, 3 snapshots
    await run_phase(tmp_path, load, 200, rules=versions.LATEST)  # SetRules, then 3 more
    p = partition_for("p", "q0", PARTITIONS)
    snaps = FileSnapshots(snapshot_dir(tmp_path))
    infos = await snaps.list(p)
    seen = [rules_of(await snaps.load(i), p) for i in infos]
    assert versions.ORIGINAL in seen and versions.LATEST in seen
    assert seen == sorted(seen)  # one switch, never back
    log = FileLog(log_dir(tmp_path), read_only=True)
    await log.start()
    try:
        async with History(log, "p", "q0") as slow:
            want = [e.as_json() async for e in slow.entries()]
            slow_digest = digest_partition(slow.store, p)
            assert queries.partition_state(slow.store, p)["rules"] == versions.LATEST
        for info, rules in zip(infos, seen, strict=True):
            async with History(log, "p", "q0", snapshots=snaps) as fast:
                got = [e.as_json() async for e in fast.entries(after_offset=info.offset)]
                assert fast.started_from == info
                assert digest_partition(fast.store, p) == slow_digest, (info.offset, rules)
            assert got == [e for e in want if e["offset"] > info.offset]
    finally:
        await log.stop()
