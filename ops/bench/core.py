"""``marconi bench core``: commands applied per second into RocksDB, and rebuild speed."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from log import partition_for
from log.filelog import FileLog
from ops.bench.stats import table
from projections import queries
from projections.commands import CreateClaim, DeleteMessage, NewMessage, PostMessages, encode
from projections.rocksstore import RocksStore
from projections.runner import check_identity, digest, fold


async def _run(commands: int, partitions: int) -> list[list[object]]:
    root = Path(tempfile.mkdtemp(prefix="marconi-bench-core-"))
    body = {"payload": os.urandom(512).hex()}  # ~1 KB of JSON
    queues = [f"q{i}" for i in range(partitions * 4)]
    now = int(time.time() * 1000)
    rows: list[list[object]] = []
    async with FileLog(root / "log", partitions, durable=False) as log:
        store = RocksStore(root / "store")
        check_identity(store, log)
        applied = [-1] * partitions

        async def phase(name: str, cmds: list) -> None:
            by_partition: dict[int, list[bytes]] = {}
            for cmd in cmds:
                p = partition_for(cmd.project, cmd.queue, partitions)
                by_partition.setdefault(p, []).append(encode(cmd))
            for p, records in by_partition.items():
                for i in range(0, len(records), 1000):
                    await log.append(p, records[i:i + 1000])
            started = time.perf_counter()
            for p in range(partitions):
                applied[p] = await fold(log, store, p, applied[p] + 1, batch=1000)
            elapsed = time.perf_counter() - started
            rows.append([name, len(cmds), f"{elapsed:.2f}", f"{len(cmds) / elapsed:,.0f}"])
            print(f"  {name}: {len(cmds) / elapsed:,.0f} commands/s", flush=True)

        posts = [PostMessages(id=uuid.uuid4().hex, project="bench", queue=queues[i % len(queues)],
                              client_id="c", time_ms=now, size=1100,
                              messages=[NewMessage(id=uuid.uuid4().hex, body=body)])
                 for i in range(commands)]
        await phase("post (1 x 1 KB message)", posts)
        claims = [CreateClaim(id=uuid.uuid4().hex, project="bench", queue=queues[i % len(queues)],
                              claim_id=uuid.uuid4().hex, time_ms=now, ttl=300, grace=60, limit=10)
                  for i in range(commands // 10)]
        await phase("claim (limit 10)", claims)
        deletes = []
        for c in claims:
            p = partition_for(c.project, c.queue, partitions)
            out = queries.outcome(store, p, c.id) or {}
            for m in out.get("messages", []):
                deletes.append(DeleteMessage(id=uuid.uuid4().hex, project=c.project,
                                             queue=c.queue, time_ms=now, message_id=m["id"],
                                             claim_id=c.claim_id))
        await phase("delete with claim id", deletes)
        live = digest(store)
        store.close()

        fresh = RocksStore(root / "rebuilt")
        check_identity(fresh, log)
        total = sum([await log.end_offset(p) for p in range(partitions)])
        started = time.perf_counter()
        for p in range(partitions):
            await fold(log, fresh, p, 0, batch=2000)
        elapsed = time.perf_counter() - started
        rows.append(["rebuild (all records)", total, f"{elapsed:.2f}", f"{total / elapsed:,.0f}"])
        same = digest(fresh) == live
        fresh.close()
        rows.append(["live digest == rebuilt digest", "", "", str(same)])
    return rows


def main(commands: int = 50_000, partitions: int = 4) -> None:
    print(f"bench core: {commands} posts, {commands // 10} claims, then deletes; "
          f"{partitions} partitions; RocksDB store")
    rows = asyncio.run(_run(commands, partitions))
    print()
    print(table(["phase", "commands", "seconds", "commands/s"], rows))
