"""FileLog writes zeros ahead of the active segment's records, so commit rounds overwrite
blocks the file has instead of growing it (issue 15); the zeros never outlive a seal or a clean
stop, and after a crash they are cut like a torn tail."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from log.filelog import PREALLOCATE_MIN, FileLog
from log.framing import HEADER_SIZE

ROOT = Path(__file__).resolve().parents[2]


def _segments(directory: Path, partition: int = 0) -> list[Path]:
    return sorted((directory / f"p{partition:04d}").glob("*.seg"))


def _framed(values: list[bytes]) -> int:
    return sum(HEADER_SIZE + len(v) for v in values)


async def test_rounds_overwrite_zeros_the_file_already_has(tmp_path: Path) -> None:
    values = [f"record-{i}".encode() * 4 for i in range(200)]
    async with FileLog(tmp_path, 1) as log:
        await log.append(0, values[:1])
        (seg,) = _segments(tmp_path)
        zeroed = seg.stat().st_size
        assert zeroed >= _framed(values[:1]) + PREALLOCATE_MIN  # the zeros ahead
        for v in values[1:]:
            await log.append(0, [v])
        assert seg.stat().st_size == zeroed  # 199 rounds, and the file never grew
        data = seg.read_bytes()
        assert data[_framed(values):].count(0) == zeroed - _framed(values)
        assert [r.value for r in await log.read(0, 0, 1000)] == values


async def test_the_zeros_step_ahead_as_the_records_reach_them(tmp_path: Path) -> None:
    big = [os.urandom(10_000) for _ in range(40)]  # 400 KB: past several steps
    async with FileLog(tmp_path, 1) as log:
        for v in big:
            await log.append(0, [v])
        (seg,) = _segments(tmp_path)
        assert seg.stat().st_size > _framed(big)
        assert [r.value for r in await log.read(0, 0, 100)] == big


async def test_a_clean_stop_and_a_seal_leave_exactly_the_records(tmp_path: Path) -> None:
    values = [os.urandom(100) for _ in range(120)]
    async with FileLog(tmp_path, 1, segment_bytes=4000) as log:
        for v in values:
            await log.append(0, [v])
    segs = _segments(tmp_path)
    assert len(segs) > 2
    sizes = [s.stat().st_size for s in segs]
    assert sum(sizes) == _framed(values)  # no zeros left in any segment, sealed or active
    async with FileLog(tmp_path, segment_bytes=4000) as log:
        assert log.open_stats.bytes_scanned == 0  # every index agrees with its segment
        assert [r.value for r in await log.read(0, 0, 1000)] == values
        assert await log.append(0, [b"next"]) == [120]


def _crash_after(directory: Path, values: list[bytes]) -> None:
    """Append ``values`` one round each in a real process that then exits without a clean
    stop (like kill -9 after the acknowledgements)."""
    code = (
        "import asyncio, os, sys\n"
        "from log.filelog import FileLog\n"
        "async def main():\n"
        f"    log = FileLog({str(directory)!r}, 1)\n"
        "    await log.start()\n"
        f"    for v in {values!r}:\n"
        "        await log.append(0, [v])\n"
        "    os._exit(0)\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


async def test_a_crash_cuts_the_zeros_and_keeps_every_record(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = [b"%d" % i * 20 for i in range(50)]
    _crash_after(tmp_path, expected)
    (seg,) = _segments(tmp_path)
    assert seg.stat().st_size > _framed(expected)  # the crash left the zeros behind
    with caplog.at_level(logging.INFO, logger="log.filelog"):
        async with FileLog(tmp_path) as log:
            assert [r.value for r in await log.read(0, 0, 100)] == expected
            assert await log.append(0, [b"after"]) == [50]
    assert "zero bytes written ahead" in caplog.text
    assert "torn tail" not in caplog.text
    assert seg.stat().st_size == _framed([*expected, b"after"])


async def test_a_torn_record_before_the_zeros_is_still_a_torn_tail(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _crash_after(tmp_path, [b"keep", b"torn"])
    (seg,) = _segments(tmp_path)
    with open(seg, "r+b") as fh:  # the last record's bytes go bad; the zeros follow them
        fh.seek(_framed([b"keep"]) + HEADER_SIZE)
        fh.write(b"XXXX")
    with caplog.at_level(logging.INFO, logger="log.filelog"):
        async with FileLog(tmp_path) as log:
            assert [r.value for r in await log.read(0, 0, 10)] == [b"keep"]
    assert "torn tail" in caplog.text


async def test_a_reader_beside_the_writer_sees_the_records_not_the_zeros(
        tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1) as log:
        await log.append(0, [b"one", b"two"])
        (seg,) = _segments(tmp_path)
        assert seg.stat().st_size > _framed([b"one", b"two"])
        async with FileLog(tmp_path, read_only=True) as reader:
            assert [r.value for r in await reader.read(0, 0, 10)] == [b"one", b"two"]
            assert await reader.end_offset(0) == 2
        assert seg.stat().st_size > _framed([b"one", b"two"])  # the reader cut nothing


async def test_no_zeros_ahead_when_turned_off(tmp_path: Path) -> None:
    async with FileLog(tmp_path, 1, preallocate_bytes=0) as log:
        for i in range(10):
            await log.append(0, [b"v%d" % i])
            (seg,) = _segments(tmp_path)
            assert seg.stat().st_size == _framed([b"v%d" % j for j in range(i + 1)])
    with pytest.raises(ValueError, match="preallocate_bytes"):
        FileLog(tmp_path, 1, preallocate_bytes=-1)
