"""FileLog specifics: recovery after crashes, torn tails, corruption, locking, segments."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from log import LogCorruptError, LogLockedError, LogMismatchError, OffsetBelowStartError, Record
from log.filelog import FileLog

ROOT = Path(__file__).resolve().parents[2]


def _segments(directory: Path, partition: int = 0) -> list[Path]:
    return sorted((directory / f"p{partition:04d}").glob("*.seg"))


async def test_reopen_keeps_every_record(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 3) as log:
        for i in range(30):
            await log.append(i % 3, [f"r{i}".encode()])
    async with FileLog(tmp_path) as log:
        assert [await log.end_offset(p) for p in range(3)] == [10, 10, 10]
        assert (await log.read(1, 0, 100))[3] == Record(3, b"r10")
        assert await log.append(1, [b"more"]) == [10]


async def test_segments_roll_and_reads_cross_them(tmp_path: Path) -> None:
    values = [os.urandom(100) for _ in range(200)]
    async with FileLog(tmp_path, 1, segment_bytes=2000) as log:
        for v in values:
            await log.append(0, [v])
        assert [r.value for r in await log.read(0, 0, 1000)] == values
    assert len(_segments(tmp_path)) > 5
    async with FileLog(tmp_path, 1, segment_bytes=2000) as log:
        assert [r.value for r in await log.read(0, 17, 150)] == values[17:167]
        assert await log.append(0, [b"z"]) == [200]


async def test_partition_count_cannot_change(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 4):
        pass
    with pytest.raises(LogMismatchError, match="has 4 partitions, not 8"):
        await FileLog(tmp_path, 8).start()
    with pytest.raises(LogMismatchError):
        await FileLog(tmp_path / "fresh").start()  # no count and no log yet


async def test_log_id_is_stable_across_opens(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1) as log:
        first = log.log_id
    async with FileLog(tmp_path) as log:
        assert log.log_id == first
    async with FileLog(tmp_path / "other", 1) as log:
        assert log.log_id != first


@pytest.mark.parametrize("garbage", [
    b"\x00\x00",                                  # half a header
    b"\x00\x00\x00\x10\x12\x34\x56\x78abc",       # header promising more than is there
    b"\x00\x00\x00\x03\xde\xad\xbe\xefabc",       # complete frame, wrong checksum
    b"\x00" * 64,                                 # zero-filled tail (preallocated space)
])
async def test_torn_tail_is_truncated(tmp_path: Path, garbage: bytes) -> None:
    async with FileLog(tmp_path, 1) as log:
        await log.append(0, [b"one", b"two", b"three"])
    seg = _segments(tmp_path)[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as fh:
        fh.write(garbage)
    async with FileLog(tmp_path) as log:
        assert [r.value for r in await log.read(0, 0, 10)] == [b"one", b"two", b"three"]
        assert await log.append(0, [b"four"]) == [3]
    assert seg.stat().st_size > size  # truncated, then "four" appended in place


def _crashed(directory: Path) -> None:
    """Make a cleanly stopped log look like one a crash stopped: no recovery point (the
    active segment's index), so the next open scans the active segment."""
    for part in directory.glob("p*"):
        segs = sorted(part.glob("*.seg"))
        if segs:
            segs[-1].with_suffix(".idx").unlink(missing_ok=True)


async def test_flipped_byte_in_last_record_drops_only_that_record(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1) as log:
        await log.append(0, [b"keep-me", b"damaged-record"])
    _crashed(tmp_path)
    seg = _segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF
    seg.write_bytes(bytes(data))
    async with FileLog(tmp_path) as log:
        assert await log.read(0, 0, 10) == [Record(0, b"keep-me")]


async def test_damage_in_a_sealed_segment_is_an_error_never_a_skip(tmp_path: Path) -> None:
    """A bounded open does not re-read sealed segments, so damage in one is found when it is
    read (LogCorruptError); where its index is gone and the open must scan it, the open
    refuses instead."""
    async with FileLog(tmp_path, 1, segment_bytes=500) as log:
        for i in range(40):
            await log.append(0, [f"record-{i:03d}".encode() * 3])
    first = _segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0x01
    first.write_bytes(bytes(data))
    async with FileLog(tmp_path, segment_bytes=500) as log:
        assert log.open_stats.bytes_scanned == 0
        with pytest.raises(LogCorruptError, match="damaged"):
            await log.read(0, 0, 10)
        assert len(await log.read(0, 20, 10)) == 10  # later segments read fine
    first.with_suffix(".idx").unlink()
    with pytest.raises(LogCorruptError, match="sealed segment"):
        await FileLog(tmp_path, segment_bytes=500).start()


async def test_missing_segment_refuses_to_open(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1, segment_bytes=500) as log:
        for i in range(40):
            await log.append(0, [f"record-{i:03d}".encode() * 3])
    _segments(tmp_path)[1].unlink()
    with pytest.raises(LogCorruptError, match="missing segment"):
        await FileLog(tmp_path).start()


async def test_second_process_is_locked_out(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1) as log:
        await log.append(0, [b"a"])
        code = (
            "import asyncio, sys\n"
            "from log.filelog import FileLog\n"
            "from log import LogLockedError\n"
            "try:\n"
            f"    asyncio.run(FileLog({str(tmp_path)!r}).start())\n"
            "except LogLockedError as e:\n"
            "    print('LOCKED', e); sys.exit(3)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert f"pid {os.getpid()}" in proc.stdout
    # Released on stop: another opener now succeeds.
    async with FileLog(tmp_path) as log:
        assert await log.end_offset(0) == 1


async def test_same_process_second_open_is_locked_out(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1):
        with pytest.raises(LogLockedError):
            await FileLog(tmp_path).start()


async def test_non_durable_mode_appends_and_reads(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 2, durable=False) as log:
        assert await log.append(1, [b"a", b"b"]) == [0, 1]
        assert await log.end_offset(1) == 2
    async with FileLog(tmp_path) as log:
        assert await log.end_offset(1) == 2  # a clean stop still keeps them


@pytest.mark.slow
def test_kill_minus_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    """Kill a real writer process at random moments; every acknowledged record must survive."""
    rng = random.Random(0xC0FFEE)
    directory = tmp_path / "log"
    acked: dict[tuple[int, int], bytes] = {}
    kills = 8
    for round_no in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.filelog_writer", str(directory), "4", "32",
             f"k{round_no}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        # Kill after a random number of acknowledgements, not a random time: on a loaded
        # machine a timed kill can land before the writer has acknowledged anything.
        early: list[str] = []
        for _ in range(rng.randint(150, 600)):
            line = proc.stdout.readline()
            if not line:
                break
            early.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        out = "".join(early) + rest
        lines = out.splitlines()
        if lines and not out.endswith("\n"):
            lines = lines[:-1]  # the kill cut this line short
        for line in lines:
            partition, offset, value = line.split(" ", 2)
            key = (int(partition), int(offset))
            assert key not in acked, f"offset {key} acknowledged twice"
            acked[key] = value.encode()
    assert len(acked) > 1000

    async def verify() -> None:
        async with FileLog(directory) as log:
            for partition in range(4):
                end = await log.end_offset(partition)
                records = []
                offset = 0
                while offset < end:
                    batch = await log.read(partition, offset, 5000)
                    records.extend(batch)
                    offset += len(batch)
                assert [r.offset for r in records] == list(range(end))
                by_offset = {r.offset: r.value for r in records}
                for (p, o), value in acked.items():
                    if p == partition:
                        assert by_offset.get(o) == value, f"lost or changed {(p, o)}"

    asyncio.run(verify())


async def test_a_cancelled_append_does_not_fail_the_others_in_its_round(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 2) as log:
        tasks = [asyncio.create_task(log.append(i % 2, [f"r{i}".encode()])) for i in range(20)]
        await asyncio.sleep(0)  # every append is now waiting on the same commit round
        tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[3], asyncio.CancelledError)
        assert all(isinstance(r, list) for i, r in enumerate(results) if i != 3)
        assert await log.end_offset(0) + await log.end_offset(1) == 20  # it was written anyway


async def _fill(log: FileLog, partition: int, count: int, size: int = 100) -> list[bytes]:
    values = [f"{i:06d}".encode() + os.urandom(size) for i in range(count)]
    for v in values:
        await log.append(partition, [v])
    return values


async def test_retention_removes_only_old_sealed_segments_below_keep_from(tmp_path: Path) -> None:
    now = [1_000_000]
    async with FileLog(tmp_path, 2, segment_bytes=2000, clock=lambda: now[0]) as log:
        old = await _fill(log, 0, 100)  # appended at t=1,000,000
        now[0] = 2_000_000
        new = await _fill(log, 0, 50)
        await _fill(log, 1, 30)
        segments_before = len(_segments(tmp_path))
        # Below keep_from=60 but only what was appended before t=1,500,000 may go.
        result = await log.retain(0, 60, 1_500_000)
        assert 0 < result.start_offset <= 60
        assert result.removed_records == result.start_offset
        assert result.removed_segments == segments_before - len(_segments(tmp_path))
        start = await log.start_offset(0)
        assert start == result.start_offset
        with pytest.raises(OffsetBelowStartError) as err:
            await log.read(0, start - 1, 10)
        assert err.value.start_offset == start and err.value.offset == start - 1
        got = await log.read(0, start, 1000)
        assert [r.value for r in got] == (old + new)[start:]
        # keep_from beyond everything old: every sealed segment of the old records goes, but
        # never one holding a record appended at or after the cutoff.
        result = await log.retain(0, 150, 1_500_000)
        assert result.start_offset <= 100
        assert (await log.read(0, 100, 1))[0].value == new[0]
        assert await log.start_offset(1) == 0  # other partitions untouched
        start = await log.start_offset(0)
    async with FileLog(tmp_path) as log:  # the start is persisted
        assert await log.start_offset(0) == start
        with pytest.raises(OffsetBelowStartError):
            await log.read(0, 0, 1)
        assert await log.end_offset(0) == 150
        assert await log.append(0, [b"next"]) == [150]


async def test_retention_archives_segments_compressed(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    async with FileLog(tmp_path / "log", 1, segment_bytes=2000, archive_dir=archive,
                       clock=lambda: 5) as log:
        values = await _fill(log, 0, 100)
        result = await log.retain(0, 100, 10)
        assert result.archived and result.removed_segments > 0
    from log.archive import read_archive

    archived = list(read_archive(archive, 0))
    assert [r.offset for r in archived] == list(range(result.start_offset))
    assert [r.value for r in archived] == values[: result.start_offset]


async def test_interrupted_retention_is_finished_on_open(tmp_path: Path) -> None:
    """A crash after the new start was persisted but before the files were deleted."""
    async with FileLog(tmp_path, 1, segment_bytes=2000, clock=lambda: 5) as log:
        await _fill(log, 0, 100)
    segs = _segments(tmp_path)
    new_start = int(segs[2].stem)
    (tmp_path / "p0000" / "START").write_text(f'{{"start_offset": {new_start}}}')
    async with FileLog(tmp_path) as log:
        assert await log.start_offset(0) == new_start
        assert len(await log.read(0, new_start, 1000)) == 100 - new_start
    assert _segments(tmp_path) == segs[2:]


async def test_open_after_a_clean_stop_scans_nothing(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 2, segment_bytes=4000) as log:
        values = await _fill(log, 0, 300)
        await _fill(log, 1, 50)
    assert len(_segments(tmp_path)) > 5
    async with FileLog(tmp_path, segment_bytes=4000) as log:
        assert log.open_stats.bytes_scanned == 0
        assert log.open_stats.records_scanned == 0
        assert log.open_stats.indexes_rebuilt == 0
        assert await log.end_offset(0) == 300
        # Reads seek through the sparse index, from any offset, across segments.
        for start in (0, 1, 37, 150, 299):
            got = await log.read(0, start, 40)
            assert [r.value for r in got] == values[start:start + 40]
        assert await log.append(0, [b"tail"]) == [300]


async def test_open_after_a_crash_scans_only_the_active_segment(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1, segment_bytes=4000) as log:
        await _fill(log, 0, 300)
    _crashed(tmp_path)
    active = _segments(tmp_path)[-1]
    async with FileLog(tmp_path, segment_bytes=4000) as log:
        assert log.open_stats.bytes_scanned == active.stat().st_size
        assert log.open_stats.records_scanned == 300 - int(active.stem)
        assert await log.end_offset(0) == 300


async def test_a_crash_after_a_clean_restart_scans_only_the_new_tail(tmp_path: Path) -> None:
    """The recovery point of the last clean stop still covers the active segment's head."""
    async with FileLog(tmp_path, 1) as log:
        await _fill(log, 0, 100)
    covered = _segments(tmp_path)[-1].stat().st_size
    code = (
        "import asyncio, os\n"
        "from log.filelog import FileLog\n"
        "async def main():\n"
        f"    log = FileLog({str(tmp_path)!r})\n"
        "    await log.start()\n"
        "    await log.append(0, [b'x' * 100 for _ in range(20)])\n"
        "    os._exit(0)\n"  # no clean stop: like kill -9 after the acknowledgement
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    size = _segments(tmp_path)[-1].stat().st_size
    async with FileLog(tmp_path) as log:
        assert log.open_stats.bytes_scanned == size - covered
        assert log.open_stats.records_scanned == 20
        assert await log.end_offset(0) == 120
        assert (await log.read(0, 99, 2))[1].value == b"x" * 100


@pytest.mark.parametrize("damage", ["torn", "flipped", "wrong-size", "garbage"])
async def test_a_damaged_index_is_rebuilt_never_trusted(tmp_path: Path, damage: str) -> None:
    async with FileLog(tmp_path, 1, segment_bytes=4000) as log:
        values = await _fill(log, 0, 300)
    seg = _segments(tmp_path)[1]
    idx = seg.with_suffix(".idx")
    data = bytearray(idx.read_bytes())
    if damage == "torn":
        idx.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flipped":
        data[40] ^= 0x10  # inside the entries: the checksum catches it
        idx.write_bytes(bytes(data))
    elif damage == "wrong-size":
        with open(seg, "ab") as fh:  # the segment no longer matches what the index covers
            fh.write(b"\x00" * 10)
    else:
        idx.write_bytes(os.urandom(len(data)))
    if damage == "wrong-size":
        with pytest.raises(LogCorruptError, match="sealed segment"):
            await FileLog(tmp_path, segment_bytes=4000).start()
        return
    async with FileLog(tmp_path, segment_bytes=4000) as log:
        assert log.open_stats.indexes_rebuilt == 1
        assert log.open_stats.bytes_scanned == seg.stat().st_size
        assert [r.value for r in await log.read(0, 0, 1000)] == values
    async with FileLog(tmp_path, segment_bytes=4000) as log:  # rewritten: trusted again
        assert log.open_stats.bytes_scanned == 0


async def test_memory_is_per_segment_not_per_record(tmp_path: Path) -> None:
    """Index entries held in memory stay near one per interval of the segments in use,
    however many records the log holds."""
    async with FileLog(tmp_path, 1, segment_bytes=64 * 1024, index_interval=4096) as log:
        for _ in range(50):
            await log.append(0, [b"r" * 20 for _ in range(500)])  # 25,000 tiny records
        await log.read(0, 0, 10)
    async with FileLog(tmp_path, segment_bytes=64 * 1024, index_interval=4096) as log:
        for offset in range(0, 25_000, 700):  # touch every segment
            assert (await log.read(0, offset, 1))[0].offset == offset
        part = log._parts[0]
        entries = sum(len(s.index.offsets) for s in part.segments if s.index is not None)
        in_memory = sum(1 for s in part.segments if s.index is not None)
        assert in_memory <= 9  # the active one plus the few most recently read
        assert entries <= in_memory * (64 * 1024 // 4096 + 2)


async def test_a_commit_round_writes_each_partition_once(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends that share a round go to disk in one write per partition, not one each: the
    writer thread retakes the GIL after every write, which under load costs a switch
    interval each time, and every acknowledgement of the round waits for it."""
    writes = []
    real = os.pwrite

    def counting(fd: int, data: bytes, offset: int) -> int:
        writes.append(len(data))
        return real(fd, data, offset)

    async with FileLog(tmp_path / "log", 2) as log:
        await log.append(1, [b"r"])  # the first round also writes the zeros ahead of it
        monkeypatch.setattr(os, "pwrite", counting)
        results = await asyncio.gather(*(log.append(1, [f"r{i}".encode()])
                                         for i in range(1, 21)))
        monkeypatch.setattr(os, "pwrite", real)
        assert sorted(o for (o,) in results) == list(range(1, 21))
        assert len(writes) == 1
        assert [r.value for r in await log.read(1, 1, 100)] == [f"r{i}".encode()
                                                               for i in range(1, 21)]
