"""FileLog on a disk that fills up and frees again: transient write errors, not a dead log."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from log import LogError
from log.filelog import FileLog
from tests.support.tmpfs import fill, small_filesystem


@pytest.fixture
def disk(tmp_path: Path):
    with small_filesystem(tmp_path / "disk", "4m") as path:
        yield path


async def test_disk_full_fails_the_round_then_writes_resume(disk: Path) -> None:
    directory = disk / "log"
    acked: dict[tuple[int, int], bytes] = {}
    failures = 0
    async with FileLog(directory, 2, segment_bytes=256 * 1024) as log:
        filler = fill(disk, 300 * 1024)
        n = 0
        while failures == 0:
            batch = [f"{n}-{j}-".encode() + b"v" * 900 for j in range(3)]
            results = await asyncio.gather(
                *(log.append(p, batch) for p in range(2)), return_exceptions=True)
            for p, result in enumerate(results):
                if isinstance(result, LogError):
                    failures += 1
                else:
                    assert isinstance(result, list)
                    acked.update({(p, o): v for o, v in zip(result, batch, strict=True)})
            n += 1
            assert n < 5000, "the disk never filled"
        # The failed round's repair truncated what it half-wrote, which frees a little: take
        # that too, so the disk is really full now.
        more = fill(disk, 0, "filler2")
        with pytest.raises(LogError):
            await log.append(0, [b"x" * 100_000])
        again = fill(disk, 0, "filler3")  # and what the repair of that round freed
        health = log.health()
        assert not health.ok
        assert str(errno.ENOSPC) in (health.error or "") or "No space" in (health.error or "")
        ends = [await log.end_offset(p) for p in range(2)]
        await asyncio.sleep(1.5)  # the probe keeps failing while the disk is full
        assert not log.health().ok
        filler.unlink()
        more.unlink()
        again.unlink()
        for _ in range(50):  # the probe notices within about a second, with no writes
            if log.health().ok:
                break
            await asyncio.sleep(0.1)
        assert log.health().ok
        # Offsets continue densely after the durable end: no failed record left a hole.
        assert await log.append(0, [b"after"]) == [ends[0]]
        assert await log.append(1, [b"after"]) == [ends[1]]
    async with FileLog(directory) as log:
        assert log.open_stats.bytes_scanned == 0  # the clean stop wrote its recovery point
        for p in range(2):
            end = await log.end_offset(p)
            records = []
            while len(records) < end:
                records.extend(await log.read(p, len(records), 1000))
            assert [r.offset for r in records] == list(range(end))
            values = {r.offset: r.value for r in records}
            for (q, o), v in acked.items():
                if q == p:
                    assert values[o] == v, f"acknowledged record {(p, o)} lost or changed"
            assert records[-1].value == b"after"
    _crash_view = FileLog(directory)  # and the files are a valid log even without the index
    for idx in directory.glob("p*/*.idx"):
        idx.unlink()
    async with _crash_view as log:
        assert [await log.end_offset(p) for p in range(2)] == [ends[0] + 1, ends[1] + 1]
