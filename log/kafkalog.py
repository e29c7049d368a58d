"""KafkaLog: the scaled-out log — one Kafka topic, one Kafka partition per log partition.

Writes go through one shared producer with ``acks="all"`` (a record is acknowledged only once
every in-sync replica has it, so it is below the high watermark) and without idempotence or
transactions (both fail at ``start()`` on the tansu test broker; exactly-once comes from the
projection instead, DESIGN.md §2.4).

Reads use one consumer per partition, created on first use, with a manual ``assign()`` and
explicit ``seek()``: no group, no committed offsets, no auto-commit and
``auto_offset_reset="none"``, so an offset below the log start is an error, never a silent jump.
Fetched records are kept in a per-partition buffer (at most ``read_buffer_bytes``; tansu
ignores fetch size limits and sends ≈ 5 MB per fetch), so a reader tailing the log reads from
memory and the consumer only fetches what is new. Between calls the consumer's partition is
paused: an idle aiokafka consumer otherwise keeps a fetch in flight all the time (≈ 85
fetches/s per partition on tansu). ``wait()`` long-polls on that consumer in short slices, so a
concurrent ``read()`` of the same partition waits at most one slice.

The end offset is read with a Fetch request (not ListOffsets) on a separate idle client: the
high watermark in a Fetch response is right on every broker, while tansu 0.6.0 answers
ListOffsets(latest) with "base offset of the last batch + 1" (too small whenever the last
produce request carried several records), which would break read barriers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest

from log.types import (
    LogError,
    LogHealth,
    LogMismatchError,
    OffsetBelowStartError,
    Record,
    Retention,
    UnknownPartitionError,
    checked_records,
)

logger = logging.getLogger(__name__)

# Room for record and batch headers on top of the largest record we accept.
_OVERHEAD_BYTES = 64 * 1024
# What one buffered record costs beyond its value (the Record tuple, list slot, int).
_RECORD_COST = 96
# How long wait() holds a partition's lock per fetch round, so concurrent reads get a turn.
_WAIT_SLICE_S = 0.05
# A read of records the broker says exist gives up (LogError) after this long.
_READ_DEADLINE_S = 30.0
# tansu answers a Fetch with max_wait_time=0 with no partitions at all, so probe with 1 ms.
_PROBE_MAX_WAIT_MS = 1
_METADATA_DEADLINE_S = 15.0
_READ_UNCOMMITTED = 0
_EARLIEST = -2  # ListOffsets timestamp meaning "the log start offset"
KEEP_FOREVER = -1  # retention_ms for log_retention=forever: the topic must keep every record
_TOPIC_ALREADY_EXISTS = 36
_RETRIABLE = (
    kerr.NotLeaderForPartitionError,
    kerr.UnknownTopicOrPartitionError,
    kerr.LeaderNotAvailableError,
    kerr.KafkaConnectionError,
    kerr.RequestTimedOutError,
    kerr.NodeNotReadyError,
)


@dataclass
class _Partition:
    """Read state of one partition: its consumer, lock and buffer of fetched records."""

    tp: TopicPartition
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    append_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    consumer: AIOKafkaConsumer | None = None
    position: int = 0  # the offset the consumer delivers next
    buffer: list[Record] = field(default_factory=list)  # consecutive offsets
    buffer_bytes: int = 0
    end: int = 0  # the highest end seen (watermark or acknowledged append): a lower bound

    def cached(self, offset: int, max_records: int) -> list[Record]:
        """Records from the buffer starting exactly at ``offset`` (empty on a miss)."""
        if not self.buffer:
            return []
        index = offset - self.buffer[0].offset
        if not 0 <= index < len(self.buffer):
            return []
        return self.buffer[index : index + max_records]

    def keep(self, records: list[Record], limit: int) -> int:
        """Add freshly fetched records (they continue the buffer or replace it).

        Older records go first when the buffer exceeds ``limit`` bytes; if the new records
        alone exceed it, only a prefix of them (at least one) is kept. Returns how many new
        records were kept: the caller moves the consumer to just after them.
        """
        kept = 0
        size = 0
        for record in records:
            cost = len(record.value) + _RECORD_COST
            if kept and size + cost > limit:
                break
            size += cost
            kept += 1
        fresh = records[:kept]
        if self.buffer and self.buffer[-1].offset + 1 == fresh[0].offset:
            self.buffer.extend(fresh)
            self.buffer_bytes += size
        else:
            self.buffer = fresh
            self.buffer_bytes = size
        drop = 0
        while self.buffer_bytes > limit and drop < len(self.buffer) - kept:
            self.buffer_bytes -= len(self.buffer[drop].value) + _RECORD_COST
            drop += 1
        if drop:
            del self.buffer[:drop]
        return kept


class KafkaLog:
    """The Kafka-backed log. See the module docstring for how reads, writes and ends work."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        partitions: int | None = None,
        *,
        max_record_bytes: int = 4 * 1024 * 1024,
        fetch_max_wait_ms: int = 10,
        replication_factor: int = 1,
        client_id: str = "marconi",
        read_buffer_bytes: int = 16 * 1024 * 1024,
        retention_ms: int | None = None,
    ) -> None:
        if partitions is not None and partitions <= 0:
            raise ValueError(f"partitions must be positive, got {partitions}")
        if max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes must be positive, got {max_record_bytes}")
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._requested_partitions = partitions
        self._max_record_bytes = max_record_bytes
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._replication_factor = replication_factor
        self._client_id = client_id
        self._read_buffer_bytes = read_buffer_bytes
        if retention_ms is not None and retention_ms <= 0 and retention_ms != KEEP_FOREVER:
            raise ValueError(f"retention_ms must be positive, KEEP_FOREVER or None, "
                             f"got {retention_ms}")
        # None: a tool or reader that does not configure retention (creates -1, accepts any
        # time retention); KEEP_FOREVER: log_retention=forever (requires -1).
        self._retention_ms = retention_ms
        # One request may carry a whole record of max_record_bytes plus its headers.
        self._request_bytes = max(1024 * 1024, max_record_bytes + _OVERHEAD_BYTES)
        self._parts: list[_Partition] = []
        self._log_id = ""
        self._cluster_id = ""
        self._client: AIOKafkaClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._health = LogHealth(True)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return len(self._parts)

    @property
    def log_id(self) -> str:
        return self._log_id

    @property
    def topic(self) -> str:
        return self._topic

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            return
        client = AIOKafkaClient(bootstrap_servers=self._bootstrap,
                                client_id=f"{self._client_id}-meta")
        producer: AIOKafkaProducer | None = None
        try:
            await client.bootstrap()
            count = await self._ensure_topic(client)
            await client.add_topic(self._topic)
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-producer",
                acks="all",
                enable_idempotence=False,
                linger_ms=1,
                max_request_size=self._request_bytes,
            )
            await producer.start()
        except BaseException:
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
            with contextlib.suppress(Exception):
                await client.close()
            raise
        self._client = client
        self._producer = producer
        self._parts = [_Partition(TopicPartition(self._topic, n)) for n in range(count)]
        cluster = f"{self._cluster_id}/" if self._cluster_id else ""
        self._log_id = f"kafka:{cluster}{self._topic}"
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for part in self._parts:
            consumer, part.consumer = part.consumer, None
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()  # sends what is pending first
            self._producer = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    async def _describe(self, client: AIOKafkaClient) -> int | None:
        """The topic's partition count, or None if it does not exist.

        Asks without auto-creation: a plain metadata request would make the broker create a
        missing topic with its default partition count (tansu does).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _METADATA_DEADLINE_S
        while True:
            request = MetadataRequest([self._topic], allow_auto_topic_creation=False)
            response = (await client.send(client.get_random_node(), request)).to_object()
            self._cluster_id = response.get("cluster_id") or ""
            error: type[kerr.KafkaError] = kerr.UnknownTopicOrPartitionError
            for topic in response["topics"]:
                if topic["topic"] != self._topic:
                    continue
                error = kerr.for_code(topic["error_code"])
                if error is kerr.NoError and topic["partitions"]:
                    return len(topic["partitions"])
            if error is kerr.UnknownTopicOrPartitionError:
                return None
            if loop.time() > deadline:
                raise LogError(f"metadata of topic {self._topic!r} unavailable: {error.__name__}")
            await asyncio.sleep(0.1)  # just created: leaders are still being elected

    async def _ensure_topic(self, client: AIOKafkaClient) -> int:
        wanted = self._requested_partitions
        count = await self._describe(client)
        if count is None and wanted is None:
            raise LogMismatchError(
                f"Kafka topic {self._topic!r} does not exist; give a partition count to create it"
            )
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap,
                                    client_id=f"{self._client_id}-admin")
        await admin.start()
        try:
            if count is None:
                assert wanted is not None
                await self._create_topic(admin, wanted)
                count = await self._describe(client)
                if count is None:
                    raise LogError(f"Kafka topic {self._topic!r} vanished right after creation")
            if wanted is not None and count != wanted:
                raise LogMismatchError(
                    f"Kafka topic {self._topic!r} has {count} partitions, not {wanted}; "
                    "the partition count of a log never changes"
                )
            await self._check_retention(admin)
        finally:
            await admin.close()
        return count

    async def _create_topic(self, admin: AIOKafkaAdminClient, partitions: int) -> None:
        """Create the topic with ``retention.ms`` = ``log_retention`` (-1 for ``forever``)."""
        retention = str(KEEP_FOREVER if self._retention_ms is None else self._retention_ms)
        topic = NewTopic(
            self._topic, partitions, self._replication_factor,
            topic_configs={"retention.ms": retention,
                           "max.message.bytes": str(self._request_bytes)},
        )
        response = await admin.create_topics([topic])
        for name, code, *rest in response.topic_errors:
            if name != self._topic or code == 0:
                continue
            if code == _TOPIC_ALREADY_EXISTS:  # lost a creation race: the count is re-checked
                logger.info("topic %s was created concurrently", self._topic)
                continue
            message = rest[0] if rest and rest[0] else kerr.for_code(code).__name__
            raise LogError(f"cannot create Kafka topic {self._topic!r}: {message}")

    async def _check_retention(self, admin: AIOKafkaAdminClient) -> None:
        """Refuse a topic that deletes records sooner than ``log_retention`` (by time or by
        size) or compacts them: snapshots plus the retained window must replay to the state."""
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, self._topic)]
        )
        configs: dict[str, Any] = {}
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    configs[entry[0]] = entry[1]
        bad = []
        if configs.get("retention.bytes") not in (None, "-1"):
            bad.append(f"retention.bytes={configs['retention.bytes']}")
        retention = configs.get("retention.ms")
        if retention not in (None, "-1"):
            try:
                kept_ms = int(str(retention))
            except ValueError:
                kept_ms = 0
            wanted_ms = self._retention_ms
            if wanted_ms == KEEP_FOREVER or (wanted_ms is not None and kept_ms < wanted_ms):
                bad.append(f"retention.ms={retention}")
        if "compact" in str(configs.get("cleanup.policy") or ""):
            bad.append(f"cleanup.policy={configs['cleanup.policy']}")
        if bad:
            wanted = ("retention.ms=-1 (log_retention is forever)"
                      if self._retention_ms in (None, KEEP_FOREVER)
                      else f"retention.ms=-1 or >= {self._retention_ms} (log_retention)")
            raise LogMismatchError(
                f"Kafka topic {self._topic!r} would lose records ({', '.join(bad)}); "
                f"a log topic needs {wanted}, retention.bytes=-1 and cleanup.policy=delete"
            )

    def _partition(self, partition: int) -> _Partition:
        if not self._started:
            raise LogError("log is not started")
        if not 0 <= partition < len(self._parts):
            raise UnknownPartitionError(
                f"partition {partition} does not exist (log has {len(self._parts)})"
            )
        return self._parts[partition]

    # -- writing ---------------------------------------------------------------------------

    async def append(self, partition: int, records: Sequence[bytes]) -> list[int]:
        part = self._partition(partition)
        values = checked_records(records, self._max_record_bytes)
        if not values:
            return []
        producer = self._producer
        assert producer is not None
        futures: list[asyncio.Future[Any]] = []
        try:
            # Queue one call's records back to back, so its offsets are consecutive.
            async with part.append_lock:
                for value in values:
                    futures.append(
                        await producer.send(self._topic, value=value, partition=partition)
                    )
            metadata = await asyncio.gather(*futures)
        except kerr.KafkaError as exc:
            await asyncio.gather(*futures, return_exceptions=True)
            if self._health.ok:
                self._health = LogHealth(False, repr(exc), time.time())
            else:
                self._health = self._health._replace(error=repr(exc))
            raise LogError(
                f"append of {len(values)} records to partition {partition} failed; "
                f"some may have been written: {exc!r}"
            ) from exc
        offsets = [m.offset for m in metadata]
        if not self._health.ok:
            logger.info("appends succeed again after: %s", self._health.error)
            self._health = LogHealth(True)
        # acks=all: the high watermark has passed every acknowledged record.
        part.end = max(part.end, offsets[-1] + 1)
        return offsets

    # -- retention -------------------------------------------------------------------------

    def health(self) -> LogHealth:
        return self._health

    async def start_offset(self, partition: int) -> int:
        """The partition's log start, by ListOffsets(earliest) on the idle client."""
        part = self._partition(partition)
        client = self._client
        if client is None:
            raise LogError("log is not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _METADATA_DEADLINE_S
        request = OffsetRequest(-1, _READ_UNCOMMITTED,
                                [(self._topic, [(part.tp.partition, _EARLIEST)])])
        while True:
            error: type[kerr.KafkaError] | None = None
            try:
                node = client.cluster.leader_for_partition(part.tp)
                if node is None or node < 0:
                    raise kerr.LeaderNotAvailableError()
                response = await client.send(node, request)
            except _RETRIABLE as exc:
                error = type(exc)
            except kerr.KafkaError as exc:
                raise LogError(f"start offset of partition {partition}: {exc!r}") from exc
            else:
                for _topic, partitions in response.topics:
                    for number, code, *rest in partitions:
                        if number != part.tp.partition:
                            continue
                        error = kerr.for_code(code)
                        if error is kerr.NoError:
                            offset = rest[-1]
                            if isinstance(offset, list):  # v0: a list of offsets
                                offset = offset[0] if offset else 0
                            return max(int(offset), 0)
            if error is not None and not issubclass(error, _RETRIABLE):
                raise LogError(f"start offset of partition {partition}: {error.__name__}")
            if loop.time() > deadline:
                raise LogError(f"start offset of partition {partition} unavailable: {error}")
            client.force_metadata_update()
            await asyncio.sleep(0.05)

    async def retain(self, partition: int, keep_from: int, older_than_ms: int) -> Retention:
        """Nothing to remove here: the broker deletes by the topic's ``retention.ms`` (checked
        at start to be at least ``log_retention``), which is why snapshots must reach Kafka
        too. Reports the current start."""
        return Retention(await self.start_offset(partition))

    # -- reading ---------------------------------------------------------------------------

    async def end_offset(self, partition: int) -> int:
        part = self._partition(partition)
        return await self._probe_end(part)

    async def _probe_end(self, part: _Partition) -> int:
        """The high watermark now (never below one seen before), from a Fetch on the idle client.

        Fetches at the last offset known to exist, so the broker answers at once (tansu holds
        a fetch that finds no data for its whole max wait) and sends back at most one batch.
        """
        client = self._client
        if client is None:
            raise LogError("log is not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _METADATA_DEADLINE_S
        fetch_offset = max(part.end - 1, 0)
        request = FetchRequest(
            _PROBE_MAX_WAIT_MS, 0, 1, _READ_UNCOMMITTED,
            [(self._topic, [(part.tp.partition, fetch_offset, 1)])],
        )
        while True:
            error: type[kerr.KafkaError] | None = None
            try:
                node = client.cluster.leader_for_partition(part.tp)
                if node is None or node < 0:
                    raise kerr.LeaderNotAvailableError()
                response = await client.send(node, request)
            except _RETRIABLE as exc:
                error = type(exc)
            except kerr.KafkaError as exc:
                raise LogError(f"end offset of partition {part.tp.partition}: {exc!r}") from exc
            else:
                for _topic, partitions in response.topics:
                    for number, code, highwater, *_ in partitions:
                        if number != part.tp.partition:
                            continue
                        error = kerr.for_code(code)
                        if error is kerr.NoError:
                            # Monotone: every offset below part.end was acknowledged or seen
                            # below a high watermark, and a new leader's watermark can lag.
                            part.end = max(part.end, highwater)
                            return part.end
                        if error is kerr.OffsetOutOfRangeError:
                            raise LogError(
                                f"partition {part.tp.partition}: offset {fetch_offset}, seen "
                                "earlier, is out of range now; the log lost or deleted records"
                            )
            if error is not None and not issubclass(error, _RETRIABLE):
                raise LogError(f"end offset of partition {part.tp.partition}: {error.__name__}")
            if loop.time() > deadline:
                raise LogError(
                    f"end offset of partition {part.tp.partition} unavailable: {error}"
                )
            if error is not None:
                client.force_metadata_update()
            await asyncio.sleep(0.05)

    async def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        part = self._partition(partition)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if max_records <= 0:
            raise ValueError(f"max_records must be positive, got {max_records}")
        async with part.lock:
            hit = part.cached(offset, max_records)
            if hit:
                return hit
            if offset >= part.end and offset >= await self._probe_end(part):
                return []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _READ_DEADLINE_S
            if part.position != offset:
                await self._seek(part, offset)
            while not await self._fetch(part, 1.0):
                if loop.time() > deadline:  # the broker said they exist: it lost them
                    raise LogError(
                        f"partition {partition}: no record at offset {offset} after "
                        f"{_READ_DEADLINE_S:.0f} s although the end is {part.end}"
                    )
            return part.cached(offset, max_records)

    async def wait(
        self, partition: int, offset: int, timeout: float | None = None
    ) -> int:
        part = self._partition(partition)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if part.end > offset:
            return part.end
        if await self._probe_end(part) > offset:
            return part.end
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._started and part.end <= offset:
            remaining = _WAIT_SLICE_S if deadline is None else deadline - loop.time()
            if remaining <= 0:
                break
            # Long-poll from the known end; what arrives goes into the buffer for read().
            async with part.lock:
                if part.end > offset:
                    break
                if part.position != part.end:
                    await self._seek(part, part.end)
                try:
                    await self._fetch(part, min(remaining, _WAIT_SLICE_S))
                except LogError:
                    if not self._started:
                        break
                    raise
        return part.end

    async def _consumer(self, part: _Partition) -> AIOKafkaConsumer:
        """The partition's consumer, created on first use (a writer never needs one)."""
        if part.consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-reader-{part.tp.partition}",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="none",
                fetch_max_wait_ms=self._fetch_max_wait_ms,
                max_partition_fetch_bytes=self._request_bytes,
                fetch_max_bytes=max(52428800, self._request_bytes),
                isolation_level="read_uncommitted",
            )
            await consumer.start()
            if not self._started:
                await consumer.stop()
                raise LogError("log is not started")
            # No await between these three: the fetcher must never see a position-less
            # partition (it would try a reset, which "none" turns into an error).
            consumer.assign([part.tp])
            consumer.seek(part.tp, 0)
            consumer.pause(part.tp)
            part.consumer = consumer
            part.position = 0
        return part.consumer

    async def _seek(self, part: _Partition, offset: int) -> None:
        consumer = await self._consumer(part)
        consumer.seek(part.tp, offset)
        part.position = offset

    async def _fetch(self, part: _Partition, max_wait: float) -> int:
        """Fetch from ``part.position`` for up to ``max_wait`` seconds; returns records kept.

        Checks that the records continue exactly at the position: a gap (deleted or
        compacted records) is an error, never skipped over.
        """
        consumer = await self._consumer(part)
        consumer.resume(part.tp)
        try:
            batches = await consumer.getmany(part.tp, timeout_ms=max(1, int(max_wait * 1000)))
        except kerr.OffsetOutOfRangeError as exc:
            start = await self.start_offset(part.tp.partition)
            if part.position < start:
                raise OffsetBelowStartError(part.tp.partition, part.position, start) from exc
            raise LogError(
                f"partition {part.tp.partition}: offset {part.position} is outside the log "
                f"(its start is {start})"
            ) from exc
        except kerr.KafkaError as exc:
            raise LogError(f"read from partition {part.tp.partition} failed: {exc!r}") from exc
        finally:
            if consumer is not None and part.consumer is consumer and self._started:
                consumer.pause(part.tp)
        highwater = consumer.highwater(part.tp)
        if highwater is not None:
            part.end = max(part.end, highwater)
        messages = batches.get(part.tp, [])
        if not messages:
            return 0
        records: list[Record] = []
        expected = part.position
        for message in messages:
            if message.offset != expected:
                consumer.seek(part.tp, part.position)
                raise LogError(
                    f"partition {part.tp.partition}: expected offset {expected}, the broker "
                    f"returned {message.offset}; records are missing (deleted or compacted)"
                )
            records.append(Record(message.offset, message.value or b""))
            expected += 1
        part.end = max(part.end, expected)
        kept = part.keep(records, self._read_buffer_bytes)
        part.position = records[kept - 1].offset + 1
        if kept < len(records):  # bounded memory: fetch the rest again when it is read
            consumer.seek(part.tp, part.position)
        return kept


__all__ = ["KEEP_FOREVER", "KafkaLog"]
