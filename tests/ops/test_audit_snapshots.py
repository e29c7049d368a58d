"""Audit from the nearest snapshot: the work of ``replay --since`` is the window plus at most
one snapshot interval, whatever the length of the history; and the answers are the same as a
replay from offset 0."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import orjson
import pytest

from log import partition_for
from log.filelog import FileLog
from ops.admin import log_dir, snapshot_dir, store_dir
from ops.replay import add_arguments, iso, replay
from projections.audit import History
from projections.commands import encode
from projections.rocksstore import RocksStore
from projections.runner import Runner
from projections.snapshots import FileSnapshots, Snapshotter
from tests.ops.steady import Steady

PARTITIONS = 2
INTERVAL_MS = 2 * 60 * 1000
WINDOW_MS = 3 * 60 * 1000
BASE_S = 360  # seconds of log time in the 1x history (window + interval + a minute)
LONG = 4  # the long history is LONG x as long: a replay from zero would do LONG x the work


async def build(data: Path, seconds: int) -> int:
    """``seconds`` of steady load folded by a runner that snapshots; returns the last time."""
    load = Steady(PARTITIONS, body_bytes=100)
    async with FileLog(log_dir(data), PARTITIONS, durable=False) as log:
        with RocksStore(store_dir(data)) as store:
            snapper = Snapshotter(FileSnapshots(snapshot_dir(data), keep=1000), INTERVAL_MS)
            runner = Runner(log, store, range(PARTITIONS), sweep_interval=0,
                            snapshots=snapper)
            async with runner:
                for _ in range(seconds):
                    per: dict[int, list[bytes]] = {}
                    for p, cmd in load.second():
                        per.setdefault(p, []).append(encode(cmd))
                    for p, records in per.items():
                        await log.append(p, records)
                for p in range(PARTITIONS):
                    await runner.barrier(p, timeout=600)
                await snapper.drain()
    return load.now


def args_for(data: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--data", str(data), "--project", "p", "--queue", "q0",
                              "--no-progress", *extra])


async def window(data: Path, since_ms: int, *, snapshots: bool) -> tuple[list[dict], int]:
    log = FileLog(log_dir(data), read_only=True)
    await log.start()
    try:
        snaps = FileSnapshots(snapshot_dir(data)) if snapshots else None
        async with History(log, "p", "q0", snapshots=snaps) as history:
            entries = [e.as_json() async for e in history.entries(since_ms=since_ms)]
            return entries, history.replayed
    finally:
        await log.stop()


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, int]]:
    import asyncio

    out = {}
    for factor in (1, LONG):
        data = tmp_path_factory.mktemp(f"history{factor}x")
        out[factor] = data, asyncio.run(build(data, BASE_S * factor))
    return out


async def test_replay_since_costs_the_window_not_the_history(
        histories: dict[int, tuple[Path, int]]) -> None:
    replayed = {}
    for factor, (data, end) in histories.items():
        entries, replayed[factor] = await window(data, end - WINDOW_MS, snapshots=True)
        assert entries and entries[0]["time_ms"] >= end - WINDOW_MS
        async with FileLog(log_dir(data), read_only=True) as log:
            total = await log.end_offset(partition_for("p", "q0", PARTITIONS))
        # records of the queue's partition per ms of log time, times (window + one interval)
        per_ms = total / (BASE_S * 1000 * factor)
        assert replayed[factor] <= per_ms * (WINDOW_MS + INTERVAL_MS) * 1.6 + 200
    assert replayed[LONG] <= replayed[1] * 1.3 + 100  # independent of the history's length
    assert replayed[LONG] >= replayed[1] * 0.7  # and the same window


async def test_window_from_a_snapshot_equals_the_window_from_zero(
        histories: dict[int, tuple[Path, int]]) -> None:
    data, end = histories[1]
    for since in (end - WINDOW_MS, end - 150_017):
        fast, fast_work = await window(data, since, snapshots=True)
        slow, slow_work = await window(data, since, snapshots=False)
        assert fast == slow
        assert fast_work < slow_work


async def test_point_in_time_from_a_snapshot_equals_from_zero(
        histories: dict[int, tuple[Path, int]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, end = histories[1]
    at = end - 2 * 60 * 1000 + 333
    out = io.StringIO()
    assert await replay(args_for(data, "--state", "--at", iso(at), "--stats"), out) == 0
    assert "from the snapshot at offset" in capsys.readouterr().err
    # the same log with no snapshots beside it replays from offset 0
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "log").symlink_to(log_dir(data).resolve())
    slow = io.StringIO()
    assert await replay(args_for(bare, "--state", "--at", iso(at), "--stats"), slow) == 0
    assert "from offset 0" in capsys.readouterr().err
    assert orjson.loads(out.getvalue()) == orjson.loads(slow.getvalue())
    async with FileLog(log_dir(data), read_only=True) as log:
        middle = await log.end_offset(partition_for("p", "q0", PARTITIONS)) - 500
    fast, slow = io.StringIO(), io.StringIO()
    assert await replay(args_for(data, "--state", "--at-offset", str(middle)), fast) == 0
    assert await replay(args_for(bare, "--state", "--at-offset", str(middle)), slow) == 0
    assert fast.getvalue() == slow.getvalue()
