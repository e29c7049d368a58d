"""FileLog's short write path: a round's records are read back from memory, a round of one
partition syncs with its write, and quick rounds run on the event loop. Work is counted
(reads, syncs, where each write ran), never timed."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from log import LogError, filelog
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


async def test_quick_rounds_run_on_the_loop_and_a_slow_one_sends_them_back_to_the_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where each round's write runs, seen by the write itself: the commit thread until the
    rounds are known to be quick, then the event loop; a round slower than
    ``INLINE_ROUND_S`` hands the next ones back to the thread, and records stay durable and
    in order on every path."""
    real = os.pwrite
    threads: list[str] = []
    delay = [0.0]

    def watched(fd: int, data: memoryview, pos: int) -> int:
        threads.append(threading.current_thread().name)
        time.sleep(delay[0])
        return real(fd, data, pos)

    monkeypatch.setattr(filelog, "INLINE_ROUND_S", 0.05)
    monkeypatch.setattr(os, "pwrite", watched)
    async with FileLog(tmp_path / "log", 1) as log:
        threads.clear()  # (opening writes too)
        for i in range(5):
            await log.append(0, [b"quick %d" % i])
        main = threading.current_thread().name
        assert threads[0].startswith("filelog-commit")  # not measured yet: the thread
        assert threads[-1] == main and log.inline_rounds >= 3
        delay[0] = 0.5  # one slow round (on the loop, as the average said)...
        await log.append(0, [b"slow"])
        delay[0] = 0.0
        inline = log.inline_rounds
        threads.clear()
        await log.append(0, [b"after"])
        assert threads[0].startswith("filelog-commit")  # ...the next goes to the thread
        assert log.inline_rounds == inline
        for i in range(30):  # quick again: the average comes back under, the loop takes over
            await log.append(0, [b"again %d" % i])
        assert threads[-1] == main and log.inline_rounds > inline
    monkeypatch.setattr(os, "pwrite", real)
    async with FileLog(tmp_path / "log", 1) as log:
        values = [r.value for r in await log.read(0, 0, 100)]
    assert values == ([b"quick %d" % i for i in range(5)] + [b"slow", b"after"]
                      + [b"again %d" % i for i in range(30)])


async def test_a_failed_round_on_the_loop_fails_its_appends_and_the_log_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write error in a round run on the loop is handled as one in the thread: the append
    fails with LogError, nothing of it is kept, health says so, the next append works."""
    real = os.pwrite
    failing = [False]

    def flaky(fd: int, data: memoryview, pos: int) -> int:
        if failing[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, pos)

    monkeypatch.setattr(filelog, "INLINE_ROUND_S", 10.0)
    monkeypatch.setattr(os, "pwrite", flaky)
    async with FileLog(tmp_path / "log", 1) as log:
        await log.append(0, [b"one"])
        await log.append(0, [b"two"])
        assert log.inline_rounds >= 1
        failing[0] = True
        with pytest.raises(LogError):
            await log.append(0, [b"lost"])
        assert not log.health().ok
        failing[0] = False
        await log.append(0, [b"three"])
        assert log.health().ok
        assert [r.value for r in await log.read(0, 0, 10)] == [b"one", b"two", b"three"]


@pytest.mark.parametrize(("turns", "rounds"), [(0, 2), (1, 1)])
async def test_an_append_made_ready_meanwhile_joins_the_round(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, turns: int, rounds: int) -> None:
    """``ROUND_TURNS``: a round starts a loop turn after the append that woke it, so an append
    that became ready in that turn (here one the caller schedules right after the first)
    goes in the same write and sync instead of waiting for the next round."""
    monkeypatch.setattr(filelog, "ROUND_TURNS", turns)
    async with FileLog(tmp_path / "log", 1) as log:
        await log.append(0, [b"warm"])
        before = log.rounds
        second: list[asyncio.Future[list[int]]] = []
        first = asyncio.ensure_future(log.append(0, [b"first"]))
        asyncio.get_running_loop().call_soon(
            lambda: second.append(asyncio.ensure_future(log.append(0, [b"second"]))))
        assert await first == [1]
        assert await second[0] == [2]
        assert log.rounds - before == rounds
    async with FileLog(tmp_path / "log", 1) as log:
        assert [r.value for r in await log.read(0, 0, 10)] == [b"warm", b"first", b"second"]
