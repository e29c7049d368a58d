"""KafkaLog against a real Kafka-protocol broker: what the shared contract suite cannot see."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from log import Log, LogError, LogMismatchError, Record
from log.kafkalog import KEEP_FOREVER, KafkaLog
from tests.support.broker import start_tansu

pytestmark = pytest.mark.kafka

OpenLog = Callable[..., Awaitable[KafkaLog]]


@pytest.fixture
async def open_log(kafka_bootstrap: str, kafka_topic: str) -> AsyncIterator[OpenLog]:
    """Starts KafkaLogs (default: the test's topic) and stops them all afterwards."""
    made: list[KafkaLog] = []

    async def factory(partitions: int | None = None, topic: str | None = None,
                      **kwargs: Any) -> KafkaLog:
        log = KafkaLog(kafka_bootstrap, topic or kafka_topic, partitions, **kwargs)
        await log.start()
        made.append(log)
        return log

    yield factory
    for log in made:
        await log.stop()


async def _topic_facts(bootstrap: str, topic: str) -> tuple[int, dict[str, str]]:
    """Partition count and configs of a topic, asked of the broker directly."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    finally:
        await admin.close()
    configs = {e[0]: e[1] for resource in response.resources for e in resource[4]}
    return len(described["partitions"]), configs


async def test_topic_is_created_with_the_partition_count(
    open_log: OpenLog, kafka_bootstrap: str, kafka_topic: str
) -> None:
    log = await open_log(3)
    assert isinstance(log, Log)
    assert log.partitions == 3
    assert log.log_id.startswith("kafka:") and log.log_id.endswith(kafka_topic)
    count, configs = await _topic_facts(kafka_bootstrap, kafka_topic)
    assert count == 3
    assert configs["retention.ms"] == "-1"


async def test_reopening_without_a_count_uses_the_existing_one(open_log: OpenLog) -> None:
    first = await open_log(4)
    await first.append(3, [b"kept"])
    await first.stop()
    again = await open_log(None)
    assert again.partitions == 4
    assert again.log_id == first.log_id
    assert await again.read(3, 0, 10) == [Record(0, b"kept")]


async def test_a_mismatched_partition_count_is_refused(
    open_log: OpenLog, kafka_bootstrap: str, kafka_topic: str
) -> None:
    await open_log(2)
    log = KafkaLog(kafka_bootstrap, kafka_topic, 3)
    with pytest.raises(LogMismatchError, match="has 2 partitions, not 3"):
        await log.start()
    await log.stop()  # stopping a log that never started is harmless


async def test_a_missing_topic_without_a_count_is_refused_and_not_created(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    for _ in range(2):  # the first attempt must not have auto-created it
        log = KafkaLog(kafka_bootstrap, kafka_topic)
        with pytest.raises(LogMismatchError, match="does not exist"):
            await log.start()


async def test_concurrent_creation_of_one_topic_agrees(open_log: OpenLog) -> None:
    logs = await asyncio.gather(*(open_log(5) for _ in range(4)))
    assert {log.partitions for log in logs} == {5}
    assert len({log.log_id for log in logs}) == 1


async def test_a_topic_that_deletes_records_is_refused(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(kafka_topic, 1, 1, topic_configs={"retention.ms": "60000"})]
        )
    finally:
        await admin.close()
    log = KafkaLog(kafka_bootstrap, kafka_topic, 1, retention_ms=3_600_000)  # wants 1 h
    with pytest.raises(LogMismatchError, match=r"retention\.ms=60000"):
        await log.start()


async def test_topic_retention_follows_log_retention(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Created with retention.ms = log_retention; an existing topic may keep records longer
    (or forever) but never shorter than the setting."""
    week_ms = 7 * 24 * 3600 * 1000
    log = KafkaLog(kafka_bootstrap, kafka_topic, 1, retention_ms=week_ms)
    await log.start()
    await log.stop()
    _, configs = await _topic_facts(kafka_bootstrap, kafka_topic)
    assert configs["retention.ms"] == str(week_ms)
    longer = KafkaLog(kafka_bootstrap, kafka_topic, 1, retention_ms=week_ms // 7)
    await longer.start()  # keeps 7 d where 1 d is needed: fine
    await longer.stop()
    shorter = KafkaLog(kafka_bootstrap, kafka_topic, 1, retention_ms=week_ms * 2)
    with pytest.raises(LogMismatchError, match=rf"retention\.ms={week_ms}\b"):
        await shorter.start()
    forever = KafkaLog(kafka_bootstrap, kafka_topic, 1, retention_ms=KEEP_FOREVER)
    with pytest.raises(LogMismatchError, match="log_retention is forever"):
        await forever.start()
    reader = KafkaLog(kafka_bootstrap, kafka_topic, 1)  # a tool that configures no retention
    await reader.start()
    await reader.stop()


async def test_concurrent_appends_get_dense_offsets_and_read_back_in_order(
    open_log: OpenLog,
) -> None:
    log = await open_log(3)

    async def writer(w: int) -> list[tuple[int, list[int], list[bytes]]]:
        calls = []
        for i in range(15):
            partition = (w * 7 + i) % 3
            values = [f"{w}:{i}:{k}".encode() for k in range(1 + (w + i) % 3)]
            offsets = await log.append(partition, values)
            calls.append((partition, offsets, values))
        return calls

    results = await asyncio.gather(*(writer(w) for w in range(40)))
    written: dict[tuple[int, int], bytes] = {}
    for calls in results:
        last: dict[int, int] = {}
        for partition, offsets, values in calls:
            # One call's records are consecutive, and a writer's calls keep their order.
            assert offsets == list(range(offsets[0], offsets[0] + len(values)))
            assert offsets[0] > last.get(partition, -1)
            last[partition] = offsets[-1]
            for offset, value in zip(offsets, values, strict=True):
                assert (partition, offset) not in written
                written[(partition, offset)] = value
    for partition in range(3):
        end = await log.end_offset(partition)
        mine = sorted(o for p, o in written if p == partition)
        assert mine == list(range(end))
        got: list[Record] = []
        while len(got) < end:
            got += await log.read(partition, len(got), 100)
        assert got == [Record(o, written[(partition, o)]) for o in range(end)]


async def test_reads_cross_fetch_boundaries_and_seek_backwards(open_log: OpenLog) -> None:
    # ~1 KB records and a 64 KiB read buffer: 3000 records span ~50 buffer fills.
    log = await open_log(1, max_record_bytes=64 * 1024, read_buffer_bytes=64 * 1024)
    values = [f"{i:05d}".encode() * 200 for i in range(3000)]
    for start in range(0, len(values), 500):
        await log.append(0, values[start : start + 500])
    assert await log.end_offset(0) == 3000

    got: list[Record] = []
    while len(got) < 3000:
        chunk = await log.read(0, len(got), 7)
        assert chunk and len(chunk) <= 7
        assert chunk[0].offset == len(got)
        got += chunk
    assert got == [Record(i, v) for i, v in enumerate(values)]
    assert await log.read(0, 3000, 10) == []

    for offset in (2999, 5, 1500, 0, 2400, 2401, 17):  # backwards and forwards, any order
        assert await log.read(0, offset, 3) == [
            Record(o, values[o]) for o in range(offset, min(offset + 3, 3000))
        ]
    big = await log.read(0, 100, 5000)  # more than the buffer holds: a prefix, in order
    assert 0 < len(big) < 3000 - 100
    assert big == [Record(100 + i, values[100 + i]) for i in range(len(big))]
    assert await log.read(0, 100 + len(big), 1) == [Record(100 + len(big),
                                                          values[100 + len(big)])]
    # The buffer stays within its budget although the broker sent more per fetch.
    assert sum(len(r.value) for r in log._parts[0].buffer) <= 64 * 1024


async def test_end_offset_counts_every_record_of_multi_record_batches(
    open_log: OpenLog,
) -> None:
    # tansu 0.6.0 answers ListOffsets(latest) with "last batch's base offset + 1";
    # a fresh instance (nothing cached) must still see the true end.
    writer = await open_log(2)
    await writer.append(1, [b"a", b"b", b"c", b"d", b"e"])
    reader = await open_log(None)
    assert await reader.end_offset(1) == 5
    await writer.append(1, [b"f", b"g", b"h"])
    assert await reader.end_offset(1) == 8
    assert await reader.end_offset(0) == 0


async def test_a_record_at_the_size_limit_round_trips(open_log: OpenLog) -> None:
    limit = 2 * 1024 * 1024
    log = await open_log(1, max_record_bytes=limit)
    value = bytes(range(256)) * (limit // 256)
    assert await log.append(0, [b"small", value, b"after"]) == [0, 1, 2]
    got: list[Record] = []
    while len(got) < 3:  # a fetch may stop before the big record; never skips it
        got += await log.read(0, len(got), 10)
    assert got == [Record(0, b"small"), Record(1, value), Record(2, b"after")]
    assert await log.read(0, 1, 1) == [Record(1, value)]
    assert await log.read(0, 2, 1) == [Record(2, b"after")]


async def test_wait_wakes_promptly_when_a_record_arrives(open_log: OpenLog) -> None:
    log = await open_log(2)
    await log.append(0, [b"old"])
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(log.wait(0, 1, timeout=10))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    appended = loop.time()
    await log.append(0, [b"new"])
    assert await asyncio.wait_for(waiter, 5) >= 2
    assert loop.time() - appended < 0.5
    # What the wait fetched is served to the next read.
    assert await log.read(0, 1, 10) == [Record(1, b"new")]


async def test_wait_times_out_with_the_old_end(open_log: OpenLog) -> None:
    log = await open_log(1)
    await log.append(0, [b"a", b"b"])
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await log.wait(0, 2, timeout=0.3) == 2
    assert 0.25 <= loop.time() - start < 2
    assert await log.wait(0, 0, timeout=5) == 2  # already there: at once
    assert await log.wait(0, 5, timeout=0) == 2


async def test_a_read_is_not_stuck_behind_a_long_wait(open_log: OpenLog) -> None:
    log = await open_log(1)
    await log.append(0, [b"x", b"y"])
    waiter = asyncio.create_task(log.wait(0, 2, timeout=5))
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await log.read(0, 0, 10) == [Record(0, b"x"), Record(1, b"y")]
    assert loop.time() - start < 0.5
    await log.append(0, [b"z"])
    assert await asyncio.wait_for(waiter, 5) == 3


async def test_another_instance_sees_what_the_first_appended(open_log: OpenLog) -> None:
    writer = await open_log(2)
    reader = await open_log(None)  # as another process would open it
    assert reader.log_id == writer.log_id
    await writer.append(1, [b"one", b"two"])
    assert await reader.end_offset(1) == 2
    assert await reader.read(1, 0, 10) == [Record(0, b"one"), Record(1, b"two")]

    waiter = asyncio.create_task(reader.wait(1, 2, timeout=10))
    await asyncio.sleep(0.05)
    await writer.append(1, [b"three"])
    assert await asyncio.wait_for(waiter, 5) == 3
    assert await reader.read(1, 2, 10) == [Record(2, b"three")]
    assert await reader.read(0, 0, 10) == []


async def test_stop_ends_pending_waits_and_is_idempotent(open_log: OpenLog) -> None:
    log = await open_log(1)
    waiter = asyncio.create_task(log.wait(0, 0))
    await asyncio.sleep(0.1)
    await log.stop()
    assert await asyncio.wait_for(waiter, 5) == 0
    await log.stop()
    with pytest.raises(LogError, match="not started"):
        await log.append(0, [b"late"])
    await log.start()  # a stopped log can start again
    assert await log.append(0, [b"again"]) == [0]


async def test_a_restarted_memory_broker_is_another_log() -> None:
    # tansu keeps records in RAM only: after a restart the topic is empty, and the log id
    # (which carries the cluster id, fresh per start) tells a store it is not its log.
    broker = start_tansu()
    try:
        async with KafkaLog(broker.bootstrap, "restarted", 1) as log:
            await log.append(0, [b"gone"])
            before = log.log_id
    finally:
        broker.kill()
    assert not broker.alive()
    broker.stop()  # already dead: only removes its log file
    again = start_tansu(broker.port)
    try:
        async with KafkaLog(again.bootstrap, "restarted", 1) as log:
            assert log.log_id != before
            assert await log.end_offset(0) == 0
    finally:
        again.stop()
