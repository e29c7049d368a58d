"""The core of ``serve --workers N`` executes the commands of one loop turn as a batch
(``CoreServer.submit``): per partition one stamp, one ``log.append``, one wait for apply.
Frames are written to the core's socket in one write, as a busy front does, and the answers
and the log are checked; the parts are real (FileLog with fsync, runner, MemoryStore)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from log.filelog import FileLog
from ops.core import CoreServer
from projections import queries
from projections.commands import NewMessage, PostMessages, decode, encode
from projections.memstore import MemoryStore
from projections.runner import Runner
from service import corewire as W
from service.gateway import LocalGateway

PROJECT = "proj"
PARTITIONS = 4
MAX_RECORD = 4096


@dataclass
class Core:
    log: FileLog
    runner: Runner
    store: MemoryStore
    gateway: LocalGateway
    server: CoreServer
    socket: Path

    async def send(self, records: Sequence[bytes]) -> list[tuple[int, bytes]]:
        """Send every record as an ``E`` frame in one write; their answers, in order."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        try:
            writer.write(b"".join(W.frame(rid, W.EXECUTE, rec)
                                  for rid, rec in enumerate(records, 1)))
            await writer.drain()
            frames = W.FrameReader()
            answers: dict[int, tuple[int, bytes]] = {}
            while len(answers) < len(records):
                data = await asyncio.wait_for(reader.read(65536), 10)
                assert data, "the core closed the connection"
                answers.update((rid, (kind, payload)) for rid, kind, payload in frames.feed(data))
            return [answers[rid] for rid in range(1, len(records) + 1)]
        finally:
            writer.close()

    async def records(self, partition: int, since: int) -> list[dict[str, Any]]:
        return [orjson.loads(rec.value)
                for rec in await self.log.read(partition, since, 1000)]


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    log = FileLog(tmp_path / "log", PARTITIONS, max_record_bytes=MAX_RECORD)
    await log.start()
    store = MemoryStore()
    runner = Runner(log, store, range(PARTITIONS), sweep_interval=0)
    await runner.start()
    await runner.settled()
    gateway = LocalGateway(log, runner, store, timeout=5.0)
    app = SimpleNamespace(state=SimpleNamespace(gateway=gateway))
    server = CoreServer(app, tmp_path / "core.sock")
    await server.start()
    yield Core(log, runner, store, gateway, server, tmp_path / "core.sock")
    await server.stop()
    await runner.stop()
    await log.stop()


def post(queue: str, body: Any = 1) -> bytes:
    """A front's encoded post of one message (time 0: the core stamps it)."""
    return encode(PostMessages(id=uuid.uuid4().hex, project=PROJECT, queue=queue,
                               client_id="c", time_ms=0,
                               messages=[NewMessage(id=uuid.uuid4().hex[:24], body=body)]))


def ids(answer: tuple[int, bytes]) -> list[str]:
    kind, payload = answer
    assert kind == W.OUTCOME, W.error_from(payload)
    return orjson.loads(payload[W.U64.size:])["ids"]  # type: ignore[no-any-return]


class Counted:
    """Counts the calls of one method of a real object, passing each on to it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
        self.calls: list[tuple[Any, ...]] = []
        real = getattr(owner, name)

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(args)
            return await real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)


async def test_a_bad_record_in_a_batch_answers_its_own_400_and_never_reaches_the_log(
        core: Core) -> None:
    p = core.gateway.partition_of(PROJECT, "q")
    start = await core.log.end_offset(p)
    bad_json = b'{"v": 1, "t": "messages.post", "id"'
    undecodable = orjson.dumps({**orjson.loads(post("q")), "messages": [{"nobody": 1}]})
    records = [post("q", 0), post("q", 1), bad_json, post("q", 2), undecodable, post("q", 3)]
    answers = await core.send(records)
    for i in (2, 4):
        kind, payload = answers[i]
        assert kind == W.ERROR and W.error_from(payload).status == 400
    good = [0, 1, 3, 5]
    appended = await core.records(p, start)
    assert [r["id"] for r in appended] == [orjson.loads(records[i])["id"] for i in good]
    assert [r["messages"][0]["body"] for r in appended] == [0, 1, 2, 3]
    for i, rec in zip(good, appended, strict=True):
        assert ids(answers[i]) == [rec["messages"][0]["id"]]
        (stamp,) = W.U64.unpack_from(answers[i][1])
        assert stamp == rec["time_ms"] > 0  # the time answered is the time appended


async def test_a_batch_appends_once_and_waits_for_apply_once_per_partition(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    appends = Counted(monkeypatch, core.log, "append")
    waits = Counted(monkeypatch, core.runner, "applied")
    reads = 0
    plain = queries.read_meta

    def counting(view: Any, partition: int) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return plain(view, partition)

    monkeypatch.setattr(queries, "read_meta", counting)
    queues = ["q", next(f"o{i}" for i in range(100)
                        if core.gateway.partition_of(PROJECT, f"o{i}")
                        != core.gateway.partition_of(PROJECT, "q"))]
    records = [post(queues[i % 2], i) for i in range(12)]
    answers = await core.send(records)
    assert all(len(ids(a)) == 1 for a in answers)
    assert sorted((p, len(recs)) for p, recs in appends.calls) == sorted(
        (core.gateway.partition_of(PROJECT, q), 6) for q in queues)
    assert len(waits.calls) == 2
    assert reads == 2  # the partition clock: read once per partition, not per command
    for q in queues:
        p = core.gateway.partition_of(PROJECT, q)
        bodies = [r["messages"][0]["body"] for r in await core.records(p, 0)
                  if r.get("t") == "messages.post"]
        assert bodies == [i for i in range(12) if queues[i % 2] == q]  # in the order sent


async def test_a_record_too_large_in_a_batch_is_refused_alone(core: Core) -> None:
    p = core.gateway.partition_of(PROJECT, "q")
    start = await core.log.end_offset(p)
    records = [post("q", 0), post("q", "x" * MAX_RECORD), post("q", 2)]
    answers = await core.send(records)
    kind, payload = answers[1]
    assert kind == W.ERROR and W.error_from(payload).status == 400
    assert [r["messages"][0]["body"] for r in await core.records(p, start)] == [0, 2]
    assert ids(answers[0]) and ids(answers[2])


async def test_an_ambiguous_batch_append_is_recovered_by_barrier_per_command(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The append is durable but its answer is late (past the timeout): every command of the
    batch is looked up after a barrier and answers its own outcome, not a 503."""
    core.server.app.state.gateway = LocalGateway(core.log, core.runner, core.store,
                                                 timeout=0.2)
    real = core.log.append
    recovered = 0
    release = asyncio.Event()

    async def late(partition: int, records: Sequence[bytes]) -> list[int]:
        nonlocal recovered
        offsets = await real(partition, records)
        recovered += len(records)
        await release.wait()
        return offsets

    monkeypatch.setattr(core.log, "append", late)
    records = [post("q", i) for i in range(4)]
    answers = await core.send(records)
    release.set()
    assert recovered == 4
    p = core.gateway.partition_of(PROJECT, "q")
    appended = [decode(r.value) for r in await core.log.read(p, 0, 1000)][-4:]
    assert [ids(a) for a in answers] == [[cmd.messages[0].id] for cmd in appended]  # type: ignore[attr-defined]


async def test_a_lost_batch_append_answers_503_per_command(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The append never happened before the timeout: the barrier finds no outcome, so each
    command answers 503 (the client retries with the same id)."""
    core.server.app.state.gateway = LocalGateway(core.log, core.runner, core.store,
                                                 timeout=0.2)
    before = await core.log.end_offset(core.gateway.partition_of(PROJECT, "q"))
    release = asyncio.Event()

    async def stuck(partition: int, records: Sequence[bytes]) -> list[int]:
        await release.wait()
        return []

    monkeypatch.setattr(core.log, "append", stuck)
    answers = await core.send([post("q", i) for i in range(3)])
    release.set()
    assert await core.log.end_offset(core.gateway.partition_of(PROJECT, "q")) == before
    for kind, payload in answers:
        assert kind == W.ERROR and W.error_from(payload).status == 503
