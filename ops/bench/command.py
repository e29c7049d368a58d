"""``marconi bench command``: the CPU the core of ``serve --workers N`` spends per command.

The core runs here as in ``serve``: a ``CoreServer`` over a real FileLog (fsync on), RocksDB,
runner and ``LocalGateway``. The load comes from another process (``_load``) over the Unix
socket through the front's own ``CoreLink`` (``fronts`` links, ``concurrency`` commands in
flight over all of them), so this process's CPU time — every thread: the log's fsyncs too —
is the core's alone. Each phase is also run in-process (``CoreServer.execute`` called
directly, no socket) to tell the command path from the wire. Records appended and store keys
written (puts, deletes, range deletes) are counted per command.

Phases: posts of 1 message, posts of 10, claims (limit 10) of what was posted, deletes of the
claimed messages with their claim id.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import uvloop

from log.filelog import FileLog
from ops.bench.stats import table
from ops.core import CoreServer
from projections.commands import CreateClaim, DeleteMessage, NewMessage, PostMessages, encode
from projections.rocksstore import RocksStore
from projections.runner import Runner
from projections.store import ranges_of
from service import corewire as W
from service.gateway import LocalGateway

PROJECT = "marconi-bench"
CLIENT = "3381af92-2b9e-11e3-b191-71861300734c"


class CountingStore(RocksStore):
    """RocksDB counting the keys every commit writes (a range delete counts as one)."""

    keys = 0

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        self.keys += len(changes) + len(ranges_of(changes))
        super().commit(changes)


def _post(queue: str, count: int) -> bytes:
    return encode(PostMessages(
        id=uuid.uuid4().hex, project=PROJECT, queue=queue, client_id=CLIENT, time_ms=0,
        messages=[NewMessage(id=uuid.uuid4().hex[:24], body={"event": "bench", "n": i}, ttl=300)
                  for i in range(count)],
        size=60 * count, default_ttl=3600))


def _claim(queue: str) -> bytes:
    return encode(CreateClaim(id=uuid.uuid4().hex, project=PROJECT, queue=queue,
                              client_id=CLIENT, time_ms=0, claim_id=uuid.uuid4().hex,
                              ttl=300, grace=60, limit=10))


def _deletes(claims: list[bytes], outcomes: list[bytes]) -> list[bytes]:
    """A delete (with its claim id) of every message the claims took."""
    out = []
    for record, answer in zip(claims, outcomes, strict=True):
        claim = orjson.loads(record)
        for m in orjson.loads(answer[W.U64.size:]).get("messages", []):
            out.append(encode(DeleteMessage(
                id=uuid.uuid4().hex, project=PROJECT, queue=claim["queue"], client_id=CLIENT,
                time_ms=0, message_id=m["id"], claim_id=claim["claim_id"])))
    return out


# -- the load: another process, the front's link ---------------------------------------------


async def _send_all(path: str, fronts: int, concurrency: int,
                    records: list[bytes]) -> list[bytes]:
    from service.remotegateway import CoreLink

    links = [await CoreLink.connect(path) for _ in range(fronts)]
    answers: list[bytes] = [b""] * len(records)
    nxt = iter(range(len(records)))

    async def caller(link: CoreLink) -> None:
        for i in nxt:
            kind, payload = await link.call(W.EXECUTE, records[i], 30.0)
            if kind != W.OUTCOME:
                raise RuntimeError(f"command {i} failed: {payload[:200]!r}")
            answers[i] = payload

    await asyncio.gather(*(caller(links[i % fronts]) for i in range(concurrency)))
    for link in links:
        link.close()
    return answers


def _load(conn: Connection, path: str, fronts: int, concurrency: int) -> None:
    """The load process: each batch of records received is sent, its outcomes sent back
    (unpickling them costs the core's count well under a microsecond a command)."""
    while (records := conn.recv()) is not None:
        conn.send(uvloop.run(_send_all(path, fronts, concurrency, records)))


# -- the core: this process ------------------------------------------------------------------


class Bench:
    def __init__(self, root: Path, partitions: int, concurrency: int) -> None:
        self.root = root
        self.partitions = partitions
        self.concurrency = concurrency

    async def __aenter__(self) -> Bench:
        self.log = FileLog(self.root / "log", self.partitions)
        await self.log.start()
        self.store = CountingStore(self.root / "store")
        self.runner = Runner(self.log, self.store, range(self.partitions))
        await self.runner.start()
        await self.runner.settled()
        app = type("App", (), {})()
        app.state = type("State", (), {})()
        app.state.gateway = LocalGateway(self.log, self.runner, self.store)
        self.core = CoreServer(app, self.root / "core.sock")
        await self.core.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.core.stop()
        await self.runner.stop()
        await self.log.stop()
        self.store.close()

    async def _records(self) -> int:
        return sum([await self.log.end_offset(p) for p in range(self.partitions)])

    async def measure(self, name: str, records: list[bytes],
                      send: Callable[[list[bytes]], Any]) -> tuple[list[object], list[bytes]]:
        before_records, before_keys = await self._records(), self.store.keys
        cpu, wall = time.process_time(), time.perf_counter()
        answers = await send(records)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        n = len(records)
        row: list[object] = [name, n, f"{cpu / n * 1e6:.0f}", f"{n / wall:,.0f}",
                             f"{(await self._records() - before_records) / n:.2f}",
                             f"{(self.store.keys - before_keys) / n:.1f}"]
        print("  " + "  ".join(map(str, row)), flush=True)
        return row, answers

    async def in_process(self, records: list[bytes]) -> list[bytes]:
        answers: list[bytes] = [b""] * len(records)
        nxt = iter(range(len(records)))

        async def caller() -> None:
            for i in nxt:
                answers[i] = await self.core.execute(records[i])

        await asyncio.gather(*(caller() for _ in range(self.concurrency)))
        return answers


async def _run(commands: int, partitions: int, fronts: int, concurrency: int,
               queues: int) -> list[list[object]]:
    root = Path(tempfile.mkdtemp(prefix="marconi-bench-command-"))
    names = [f"q{i}" for i in range(queues)]
    rows: list[list[object]] = []
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    async with Bench(root, partitions, concurrency) as bench:
        load = ctx.Process(target=_load, args=(there, str(bench.core.path), fronts, concurrency),
                           daemon=True)
        load.start()
        loop = asyncio.get_running_loop()

        async def over_socket(records: list[bytes]) -> list[bytes]:
            here.send(records)  # pickling them is in the count too: ~1 us a command
            answers: list[bytes] = await loop.run_in_executor(None, here.recv)
            return answers

        await bench.in_process([_post(q, 1) for q in names for _ in range(20)])  # warm up
        for mode, send in (("socket", over_socket), ("in-process", bench.in_process)):
            for size in (1, 10):
                batch = [_post(names[i % queues], size) for i in range(commands)]
                row, _ = await bench.measure(f"{mode}: post {size}", batch, send)
                rows.append(row)
            claims = [_claim(names[i % queues]) for i in range(commands // 2)]
            row, answers = await bench.measure(f"{mode}: claim 10", claims, send)
            rows.append(row)
            deletes = _deletes(claims, answers)[:commands]
            row, _ = await bench.measure(f"{mode}: delete", deletes, send)
            rows.append(row)
        here.send(None)
        await loop.run_in_executor(None, load.join)
    return rows


def main(commands: int = 4000, partitions: int = 16, fronts: int = 2, concurrency: int = 16,
         queues: int = 4) -> None:
    print(f"bench command: {commands} commands a phase, {concurrency} in flight over {fronts} "
          f"links, {queues} queues, {partitions} partitions; core CPU per command")
    rows = uvloop.run(_run(commands, partitions, fronts, concurrency, queues))
    print()
    print(table(["phase", "commands", "CPU us/cmd", "commands/s", "records/cmd", "keys/cmd"],
                rows))
