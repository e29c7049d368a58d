"""The runner against real parts: RocksDB, FileLog and KafkaLog (on the test broker)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from log import Log, partition_for
from log.filelog import FileLog
from projections import queries
from projections.commands import (
    Command,
    CreateClaim,
    CreateQueue,
    NewMessage,
    PostMessages,
    SetRules,
    Sweep,
    decode,
    encode,
)
from projections.rocksstore import RocksStore
from projections.rules import versions
from projections.runner import (
    Runner,
    StoreMismatchError,
    check_identity,
    digest,
    fold,
    wall_ms,
)
from tests.projections.workload import Workload

PARTITIONS = 4
MakeLog = Callable[[], Awaitable[Log]]


@pytest.fixture(params=["file", pytest.param("kafka", marks=pytest.mark.kafka)])
async def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeLog]:
    """Opens (and re-opens) one log of one kind; every opened instance is stopped after."""
    opened: list[Log] = []
    topic = f"runner-{uuid.uuid4().hex[:10]}"

    async def factory() -> Log:
        if request.param == "file":
            log: Log = FileLog(tmp_path / "log", PARTITIONS)
        else:
            from log.kafkalog import KafkaLog

            log = KafkaLog(request.getfixturevalue("kafka_bootstrap"), topic, PARTITIONS)
        await log.start()
        opened.append(log)
        return log

    yield factory
    for log in opened:
        await log.stop()


class Clock:
    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


async def execute(log: Log, runner: Runner, store: RocksStore, cmd: Command) -> dict:
    """The write path: append, wait until applied, read the outcome by command id."""
    partition = partition_for(cmd.project, cmd.queue, log.partitions)
    (offset,) = await log.append(partition, [encode(cmd)])
    await runner.applied(partition, offset, timeout=10)
    out = queries.outcome(store, partition, cmd.id)
    assert out is not None
    return out


async def test_commands_apply_and_restart_resumes_exactly(make_log: MakeLog,
                                                          tmp_path: Path) -> None:
    log = await make_log()
    store = RocksStore(tmp_path / "store")
    clock = Clock()
    async with Runner(log, store, range(PARTITIONS), sweep_interval=0, clock=clock) as runner:
        assert await execute(log, runner, store, CreateQueue(
            id="c1", project="p", queue="q", time_ms=clock())) == {"created": True}
        out = await execute(log, runner, store, PostMessages(
            id="c2", project="p", queue="q", time_ms=clock(),
            messages=[NewMessage(id=f"m{i}", body=i) for i in range(5)]))
        assert out["ids"] == [f"m{i}" for i in range(5)]
        before = digest(store)
    store.close()
    # Records appended while no runner runs are applied on restart, once.
    p = partition_for("p", "q", PARTITIONS)
    claim = CreateClaim(id="c3", project="p", queue="q", claim_id="k", limit=2, time_ms=clock())
    await log.append(p, [encode(claim), encode(claim)])  # a producer retry landed twice
    store = RocksStore(tmp_path / "store")
    assert digest(store) == before
    async with Runner(log, store, range(PARTITIONS), sweep_interval=0, clock=clock) as runner:
        await runner.barrier(p, timeout=10)
        assert queries.stats(store, p, "p", "q", clock())["claimed"] == 2
        assert queries.outcome(store, p, "c3")["claim_id"] == "k"
    store.close()


async def test_store_of_another_log_is_refused(make_log: MakeLog, tmp_path: Path) -> None:
    log = await make_log()
    await log.append(0, [encode(CreateQueue(id="x", project="p", queue="q"))])
    store = RocksStore(tmp_path / "store")
    async with FileLog(tmp_path / "other", PARTITIONS) as other:
        check_identity(store, other)  # the store now belongs to "other"
    with pytest.raises(StoreMismatchError, match="belongs to log"):
        await Runner(log, store, range(PARTITIONS)).start()
    store.close()


async def test_store_ahead_of_its_log_is_refused(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", 1) as log:
        await log.append(0, [encode(CreateQueue(id=f"c{i}", project="p", queue=f"q{i}"))
                             for i in range(3)])
        store = RocksStore(tmp_path / "store")
        async with Runner(log, store, [0], sweep_interval=0, rules_version=None) as runner:
            await runner.barrier(0, timeout=10)
    # Lose the last record of the log (as if a torn tail had been cut off).
    seg = sorted((tmp_path / "log" / "p0000").glob("*.seg"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])
    async with FileLog(tmp_path / "log") as log:
        with pytest.raises(StoreMismatchError, match="ahead of its log"):
            await Runner(log, store, [0]).start()
    store.close()


async def test_runner_appends_sweeps_when_something_expires(tmp_path: Path) -> None:
    clock = Clock()
    async with FileLog(tmp_path / "log", 1) as log:
        store = RocksStore(tmp_path / "store")
        # rules_version=None: this test counts records, and the owner's SetRules is one
        async with Runner(log, store, [0], sweep_interval=0.05, clock=clock,
                          rules_version=None) as runner:
            await execute(log, runner, store, PostMessages(
                id="p", project="p", queue="q", time_ms=clock(),
                messages=[NewMessage(id="m", body=1, ttl=60)]))
            await asyncio.sleep(0.2)
            assert await log.end_offset(0) == 1  # nothing due: no Sweep appended
            clock.ms += 61_000
            for _ in range(600):  # up to 30 s: a loaded machine may starve the sweep duty
                if queries.queue_metadata(store, 0, "p", "q") is not None and queries.stats(
                        store, 0, "p", "q", clock())["total"] == 0 and await log.end_offset(0) > 1:
                    break
                await asyncio.sleep(0.05)
            records = await log.read(0, 1, 10)
            assert records, "a Sweep was appended"
            assert b'"sweep"' in records[0].value
            assert queries.get_message(store, 0, "p", "q", "m", clock()) is None
        store.close()


async def test_dead_letters_cross_partitions_exactly_once(tmp_path: Path) -> None:
    clock = Clock()
    # Find a DLQ name living in another partition than the source queue.
    source = partition_for("p", "work", PARTITIONS)
    dlq = next(f"dead{i}" for i in range(100) if partition_for("p", f"dead{i}", PARTITIONS)
               != source)
    async with FileLog(tmp_path / "log", PARTITIONS) as log:
        store = RocksStore(tmp_path / "store")
        async with Runner(log, store, range(PARTITIONS), sweep_interval=0,
                          clock=clock) as runner:
            await execute(log, runner, store, CreateQueue(
                id="c", project="p", queue="work", time_ms=clock(),
                metadata={"_max_claim_count": 1, "_dead_letter_queue": dlq}))
            await execute(log, runner, store, PostMessages(
                id="m", project="p", queue="work", time_ms=clock(),
                messages=[NewMessage(id="poison", body="x")]))
            first = await execute(log, runner, store, CreateClaim(
                id="k1", project="p", queue="work", claim_id="a", ttl=60, time_ms=clock()))
            assert [m["id"] for m in first["messages"]] == ["poison"]
            clock.ms += 61_000
            second = await execute(log, runner, store, CreateClaim(
                id="k2", project="p", queue="work", claim_id="b", time_ms=clock()))
            assert second == {"messages": []}
            target = partition_for("p", dlq, PARTITIONS)
            for _ in range(200):
                if queries.get_message(store, target, "p", dlq, "poison", clock()):
                    break
                await asyncio.sleep(0.02)
            assert queries.get_message(store, target, "p", dlq, "poison", clock()) is not None
            for _ in range(200):
                if not queries.outbox(store, source):
                    break
                await asyncio.sleep(0.02)
            assert queries.outbox(store, source) == []
        store.close()


async def test_live_and_rebuilt_digest_equal_after_random_workload(make_log: MakeLog,
                                                                   tmp_path: Path) -> None:
    """Commands appended concurrently to every partition; live store == rebuilt store."""
    log = await make_log()
    live = RocksStore(tmp_path / "live")
    work = Workload(seed=11)
    rng = random.Random(3)
    rounds = 34 if isinstance(log, FileLog) else 10  # 10,200 commands; tansu keeps all in RAM
    async with Runner(log, live, range(PARTITIONS), sweep_interval=0, batch_records=300):
        for _ in range(rounds):
            batch: dict[int, list[bytes]] = {}
            for cmd in work.commands(300):
                p = (rng.randrange(PARTITIONS) if isinstance(cmd, Sweep)
                     else partition_for(cmd.project, cmd.queue, PARTITIONS))
                batch.setdefault(p, []).append(encode(cmd))
            await asyncio.gather(*(log.append(p, recs) for p, recs in batch.items()))
        runner_barriers = [log.end_offset(p) for p in range(PARTITIONS)]
        ends = await asyncio.gather(*runner_barriers)
        for p, end in enumerate(ends):
            for _ in range(500):
                if queries.partition_state(live, p)["offset"] == end - 1:
                    break
                await asyncio.sleep(0.02)
        # The dead-letter outbox may still be moving messages; let it settle.
        await asyncio.sleep(0.3)
    for p in range(PARTITIONS):  # anything the outbox appended at the last moment
        await fold(log, live, p, queries.partition_state(live, p)["offset"] + 1)
    rebuilt = RocksStore(tmp_path / "rebuilt")
    check_identity(rebuilt, log)
    for p in range(PARTITIONS):
        await fold(log, rebuilt, p, 0, batch=700)
    assert sum(queries.partition_state(live, p)["offset"] + 1 for p in range(PARTITIONS)) >= 3000
    assert digest(live) == digest(rebuilt)
    live.close()
    rebuilt.close()


class FlakyLog:
    """A real FileLog whose first reads fail, as a log does while its broker restarts."""

    def __init__(self, log: FileLog, failures: int) -> None:
        self._log = log
        self.failures = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self._log, name)

    async def read(self, partition: int, offset: int, max_records: int = 1000) -> list:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        return await self._log.read(partition, offset, max_records)


async def test_a_log_outage_delays_the_runner_but_does_not_kill_it(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", 1) as log:
        flaky = FlakyLog(log, failures=5)
        store = RocksStore(tmp_path / "store")
        async with Runner(flaky, store, [0], sweep_interval=0) as runner:  # type: ignore[arg-type]
            out = await execute(log, runner, store, CreateQueue(id="c", project="p", queue="q",
                                                                time_ms=wall_ms()))
            assert out == {"created": True}
            assert flaky.failures == 0
        store.close()


async def test_the_owner_switches_to_the_latest_rules_once(tmp_path: Path) -> None:
    """Caught up, the owner appends one SetRules; a restart (or a second owner) adds none."""
    async with FileLog(tmp_path / "log", 2) as log:
        store = RocksStore(tmp_path / "store")
        for _ in range(2):
            async with Runner(log, store, [0, 1], sweep_interval=0) as runner:
                for p in (0, 1):
                    for _ in range(200):
                        if queries.partition_state(store, p).get("rules") == versions.LATEST:
                            break
                        await asyncio.sleep(0.02)
                    await runner.barrier(p, timeout=10)
                    assert not await runner.upgrade_rules(p)  # already in force
        assert [await log.end_offset(p) for p in (0, 1)] == [1, 1]
        (record,) = await log.read(0, 0, 1)
        assert decode(record.value) == SetRules(id=decode(record.value).id,
                                                time_ms=decode(record.value).time_ms,
                                                version=versions.LATEST)
        store.close()


def test_changed_kinds_names_each_kind_a_batch_touches() -> None:
    from projections import keys as K
    from projections.runner import changed_kinds

    changes: dict[bytes, bytes | None] = {
        K.meta(3): b"m", K.kind_prefix(3, K.OUTBOX) + b"\x00" * 8: None,
        K.kind_prefix(3, K.MSG) + b"x": b"1", K.kind_prefix(3, K.MSG) + b"y": b"2"}
    assert changed_kinds(changes) == {K.META, K.OUTBOX, K.MSG}
    assert changed_kinds({}) == set()
