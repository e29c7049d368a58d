"""FileLog's short write path: a round's records are read back from memory, and a round of one
partition syncs with its write. Work is counted (reads, syncs), never timed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from log.filelog import RECENT_BYTES, FileLog


async def test_records_just_made_durable_are_read_from_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real(fd, n, offset)

    values = [f"record-{i}".encode() * 10 for i in range(50)]
    async with FileLog(tmp_path / "log", 2) as log:
        monkeypatch.setattr(os, "pread", counting)
        await asyncio.gather(*(log.append(1, [v]) for v in values[:20]))
        for v in values[20:]:
            await log.append(1, [v])
        got = [r.value for r in await log.read(1, 0, 100)]
        assert [r.offset for r in await log.read(1, 30, 5)] == list(range(30, 35))
        monkeypatch.setattr(os, "pread", real)
    assert reads == []
    assert sorted(got) == sorted(values) and got[20:] == values[20:]
    async with FileLog(tmp_path / "log") as log:  # the files say the same
        assert [r.value for r in await log.read(1, 0, 100)] == got


async def test_memory_is_bounded_and_older_records_come_from_disk(tmp_path: Path) -> None:
    value = b"v" * 10_000
    count = 3 * RECENT_BYTES // len(value)
    async with FileLog(tmp_path / "log", 1) as log:
        for i in range(count):
            await log.append(0, [b"%06d" % i + value])
        part = log._parts[0]
        assert 0 < part.recent_bytes <= 2 * RECENT_BYTES
        assert part.recent_base > 0
        records = await log.read(0, 0, count)
        assert [r.value[:6] for r in records] == [b"%06d" % i for i in range(count)]


async def test_a_round_of_one_partition_syncs_with_its_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    async with FileLog(tmp_path / "log", 4, sync_strategy="fdatasync") as log:
        await log.append(0, [b"first"])  # the segment file exists now
        await log.append(1, [b"first"])
        monkeypatch.setattr(os, "fdatasync", counting)
        await asyncio.gather(*(log.append(0, [b"r%d" % i]) for i in range(10)))
        assert syncs == []  # written O_DSYNC
        await asyncio.gather(log.append(0, [b"a"]), log.append(1, [b"b"]))
        assert len(syncs) == 2  # two partitions: written, then both synced
        monkeypatch.setattr(os, "fdatasync", real)
