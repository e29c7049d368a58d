"""One contract suite, run against every Log implementation (FileLog and KafkaLog)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from log import Log, Record, RecordTooLargeError, UnknownPartitionError
from log.filelog import FileLog

MakeLog = Callable[[int], Awaitable[Log]]


@pytest.fixture(params=["file", pytest.param("kafka", marks=pytest.mark.kafka)])
async def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeLog]:
    """A factory of started logs of one kind; every log it made is stopped afterwards."""
    made: list[Log] = []

    async def factory(partitions: int) -> Log:
        if request.param == "file":
            log: Log = FileLog(tmp_path / f"log-{len(made)}", partitions,
                               max_record_bytes=1024 * 1024)
        else:
            from log.kafkalog import KafkaLog

            bootstrap = request.getfixturevalue("kafka_bootstrap")
            log = KafkaLog(bootstrap, f"contract-{uuid.uuid4().hex[:12]}", partitions,
                           max_record_bytes=1024 * 1024)
        await log.start()
        made.append(log)
        return log

    yield factory
    for log in made:
        await log.stop()


async def test_offsets_start_at_zero_and_are_dense(make_log: MakeLog) -> None:
    log = await make_log(3)
    assert log.partitions == 3
    assert await log.append(1, [b"a", b"b"]) == [0, 1]
    assert await log.append(1, [b"c"]) == [2]
    assert await log.append(0, [b"x"]) == [0]
    assert await log.end_offset(1) == 3
    assert await log.end_offset(0) == 1
    assert await log.end_offset(2) == 0


async def test_read_returns_records_in_order_from_any_offset(make_log: MakeLog) -> None:
    log = await make_log(2)
    values = [f"record-{i}".encode() for i in range(50)]
    await log.append(0, values[:20])
    await log.append(0, values[20:])
    got = await log.read(0, 0, 100)
    assert got == [Record(i, v) for i, v in enumerate(values)]
    assert await log.read(0, 37, 5) == [Record(i, values[i]) for i in range(37, 42)]
    assert await log.read(0, 10, 3) == [Record(i, values[i]) for i in range(10, 13)]
    assert await log.read(0, 50, 10) == []
    assert await log.read(1, 0, 10) == []


async def test_records_are_bytes_preserved_exactly(make_log: MakeLog) -> None:
    log = await make_log(1)
    values = [b"", b"\x00" * 7, bytes(range(256)), b"x" * 100_000]
    offsets = await log.append(0, values)
    got = await log.read(0, offsets[0], len(values))
    assert [r.value for r in got] == values


async def test_concurrent_appends_get_unique_dense_offsets(make_log: MakeLog) -> None:
    log = await make_log(4)

    async def writer(w: int) -> list[tuple[int, int, bytes]]:
        out = []
        for i in range(10):
            partition = (w + i) % 4
            value = f"{w}:{i}".encode()
            (offset,) = await log.append(partition, [value])
            out.append((partition, offset, value))
        return out

    results = await asyncio.gather(*(writer(w) for w in range(20)))
    written = {(p, o): v for batch in results for p, o, v in batch}
    assert len(written) == 200
    for partition in range(4):
        end = await log.end_offset(partition)
        records = await log.read(partition, 0, 1000)
        assert [r.offset for r in records] == list(range(end))
        for r in records:
            assert written[(partition, r.offset)] == r.value
    # Per writer, its own appends to one partition keep their order.
    for batch in results:
        for partition in range(4):
            mine = [o for p, o, _ in batch if p == partition]
            assert mine == sorted(mine)


async def test_wait_returns_when_a_record_arrives(make_log: MakeLog) -> None:
    log = await make_log(2)
    waiter = asyncio.create_task(log.wait(1, 0, timeout=10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await log.append(1, [b"hello"])
    end = await asyncio.wait_for(waiter, 10)
    assert end >= 1


async def test_wait_times_out_with_the_old_end(make_log: MakeLog) -> None:
    log = await make_log(1)
    await log.append(0, [b"a"])
    assert await log.wait(0, 0, timeout=1) == 1  # already there: no waiting
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await log.wait(0, 1, timeout=0.2) == 1
    assert loop.time() - start >= 0.15


async def test_unknown_partition_is_refused(make_log: MakeLog) -> None:
    log = await make_log(2)
    with pytest.raises(UnknownPartitionError):
        await log.append(2, [b"x"])
    with pytest.raises(UnknownPartitionError):
        await log.append(-1, [b"x"])
    with pytest.raises(UnknownPartitionError):
        await log.read(5, 0, 1)
    with pytest.raises(UnknownPartitionError):
        await log.end_offset(2)


async def test_malformed_reads_are_refused(make_log: MakeLog) -> None:
    log = await make_log(1)
    with pytest.raises(ValueError):
        await log.read(0, -1, 10)
    with pytest.raises(ValueError):
        await log.read(0, 0, 0)


async def test_oversized_record_is_refused_and_nothing_is_appended(make_log: MakeLog) -> None:
    log = await make_log(1)
    with pytest.raises(RecordTooLargeError):
        await log.append(0, [b"ok", b"x" * (1024 * 1024 + 1)])
    assert await log.end_offset(0) == 0
    assert await log.append(0, [b"next"]) == [0]


async def test_non_bytes_records_are_refused(make_log: MakeLog) -> None:
    log = await make_log(1)
    with pytest.raises(TypeError):
        await log.append(0, ["text"])  # type: ignore[list-item]
    assert await log.end_offset(0) == 0


async def test_async_with_starts_and_stops(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "l", 2) as log:
        await log.append(0, [b"a"])
    async with FileLog(tmp_path / "l") as log:
        assert log.partitions == 2
        assert await log.read(0, 0, 10) == [Record(0, b"a")]


async def test_a_new_log_starts_at_zero_and_is_healthy(make_log: MakeLog) -> None:
    log = await make_log(2)
    assert await log.start_offset(0) == 0
    await log.append(1, [b"a", b"b"])
    assert await log.start_offset(1) == 0
    assert log.health().ok
    with pytest.raises(UnknownPartitionError):
        await log.start_offset(2)


async def test_retain_never_removes_at_or_above_keep_from(make_log: MakeLog) -> None:
    """Retention gives up records only below the caller's snapshot offset: with keep_from=0
    nothing may go, however old the records are (FileLog rolls 64 MiB segments here, so this
    is the 'nothing sealed yet' case; test_filelog covers removal across sealed segments)."""
    log = await make_log(1)
    await log.append(0, [f"r{i}".encode() for i in range(20)])
    far_future_ms = 2**62
    result = await log.retain(0, 0, far_future_ms)
    assert result.start_offset == 0 and result.removed_records == 0
    result = await log.retain(0, 20, 0)  # nothing is older than the epoch
    assert result.start_offset == 0 and result.removed_records == 0
    assert [r.value for r in await log.read(0, 0, 100)] == [f"r{i}".encode() for i in range(20)]
