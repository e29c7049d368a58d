"""``marconi snapshot`` and ``marconi partitions`` on a stopped data directory: a snapshot
seeds a new store from which a runner resumes at the recorded offsets (no replay from 0),
and partitions reports applied/end/lag from the log and the store."""

from __future__ import annotations

import argparse
import asyncio
import shutil
from pathlib import Path

import orjson
import pytest

from log import partition_for
from log.filelog import FileLog
from ops import partitions as partitions_cli
from ops import snapshot as snapshot_cli
from ops.admin import log_dir, rebuild, store_dir
from projections import queries
from projections.commands import Sweep, encode
from projections.rocksstore import RocksStore
from projections.runner import Runner, digest
from tests.projections.workload import Workload

PARTITIONS = 4


async def _fill(data: Path, applied: int, pending: int) -> None:
    """A store that has applied ``applied`` commands; ``pending`` more only in the log."""
    work = Workload(seed=11)

    def part(cmd: object) -> int:
        if isinstance(cmd, Sweep):
            return 0
        return partition_for(cmd.project, cmd.queue, PARTITIONS)  # type: ignore[attr-defined]

    async with FileLog(log_dir(data), PARTITIONS) as log:
        store = RocksStore(store_dir(data))
        async with Runner(log, store, range(PARTITIONS), sweep_interval=0) as runner:
            for cmd in work.commands(applied):
                await log.append(part(cmd), [encode(cmd)])
            for p in range(PARTITIONS):
                await runner.barrier(p, timeout=30)
        store.close()
        for cmd in work.commands(pending):
            await log.append(part(cmd), [encode(cmd)])


def _snapshot_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    snapshot_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def _partition_rows(data: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    parser = argparse.ArgumentParser()
    partitions_cli.add_arguments(parser)
    assert partitions_cli.partitions_command(
        parser.parse_args(["--data", str(data), "--json"])) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_snapshot_round_trip_seeds_a_store_that_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, snap, seeded = tmp_path / "data", tmp_path / "snap", tmp_path / "seeded"
    asyncio.run(_fill(data, 600, 0))
    assert snapshot_cli.snapshot_command(
        _snapshot_args("--data", str(data), "--out", str(snap))) == 0
    info = orjson.loads((snap / "offsets.json").read_bytes())
    assert info["partitions"] == PARTITIONS
    with RocksStore(store_dir(data)) as live:
        expected = {str(p): queries.partition_state(live, p)["offset"]
                    for p in range(PARTITIONS)}
        live_digest = digest(live)
    assert info["offsets"] == expected and max(expected.values()) > 0
    # more traffic after the snapshot, then seed a new node's directory from it
    asyncio.run(_fill_more(data, 150))
    shutil.copytree(log_dir(data), log_dir(seeded))
    assert snapshot_cli.snapshot_command(
        _snapshot_args("--data", str(seeded), "--restore", str(snap))) == 0
    assert store_dir(seeded).name.startswith("store-")

    async def resume() -> tuple[dict[str, int], str]:
        async with FileLog(log_dir(seeded)) as log:
            store = RocksStore(store_dir(seeded))
            assert digest(store) == live_digest  # the checkpoint is the live state
            runner = Runner(log, store, range(PARTITIONS), sweep_interval=0)
            await runner.start()
            resumed = {str(p): runner.applied_offset(p) for p in range(PARTITIONS)}
            for p in range(PARTITIONS):
                await runner.barrier(p, timeout=30)
            await runner.stop()
            result = digest(store)
            store.close()
            return resumed, result

    resumed, seeded_digest = asyncio.run(resume())
    assert resumed == info["offsets"]  # it picked up where the snapshot was, not at 0
    rebuilt_digest, records, *_ = asyncio.run(rebuild(str(data), progress=False))
    assert records == 750 + PARTITIONS  # and one SetRules per partition
    assert seeded_digest == rebuilt_digest  # and caught up to exactly the full replay


async def _fill_more(data: Path, n: int) -> None:
    work = Workload(seed=12, start_ms=1_800_000_000_000)
    async with FileLog(log_dir(data)) as log:
        for cmd in work.commands(n):
            p = 0 if isinstance(cmd, Sweep) else partition_for(cmd.project, cmd.queue,
                                                                PARTITIONS)
            await log.append(p, [encode(cmd)])


def test_snapshot_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert snapshot_cli.snapshot_command(
        _snapshot_args("--data", str(tmp_path / "none"), "--out", str(tmp_path / "s"))) == 1
    assert "no log at" in capsys.readouterr().err
    assert snapshot_cli.snapshot_command(
        _snapshot_args("--data", str(tmp_path), "--restore", str(tmp_path))) == 1
    assert "is not a snapshot" in capsys.readouterr().err
    data = tmp_path / "data"
    asyncio.run(_fill(data, 20, 0))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert snapshot_cli.snapshot_command(
        _snapshot_args("--data", str(data), "--out", str(tmp_path / "full"))) == 1
    assert "not empty" in capsys.readouterr().err


def test_partitions_of_a_stopped_node(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_fill(tmp_path, 300, 40))

    async def ends() -> list[int]:
        async with FileLog(log_dir(tmp_path)) as log:
            return [await log.end_offset(p) for p in range(PARTITIONS)]

    end = asyncio.run(ends())
    rows = _partition_rows(tmp_path, capsys)
    assert [r["partition"] for r in rows] == list(range(PARTITIONS))
    with RocksStore(store_dir(tmp_path)) as store:
        applied = [queries.partition_state(store, p)["offset"] for p in range(PARTITIONS)]
    assert [r["applied_offset"] for r in rows] == applied
    assert [r["end_offset"] for r in rows] == end
    assert [r["lag"] for r in rows] == [e - a - 1 for e, a in zip(end, applied, strict=True)]
    assert sum(r["lag"] for r in rows) == 40
    assert all(r["owner"].endswith("(stopped)") for r in rows)
    # the table form names the columns
    parser = argparse.ArgumentParser()
    partitions_cli.add_arguments(parser)
    assert partitions_cli.partitions_command(parser.parse_args(["--data", str(tmp_path)])) == 0
    table = capsys.readouterr().out
    assert "applied offset" in table and "lag" in table
    assert partitions_cli.partitions_command(
        parser.parse_args(["--data", str(tmp_path / "missing")])) == 1
    assert "no log at" in capsys.readouterr().err
