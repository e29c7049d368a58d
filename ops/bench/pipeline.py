"""``marconi bench pipeline``: where the time of one durable write goes in the core.

It runs the core's parts in this process (FileLog, runner, RocksDB, ``LocalGateway`` and
``CoreServer.execute``, wired as ``marconi serve`` wires them) and keeps ``concurrency``
single-message POST commands in flight on one queue, as wrk does through the fronts. Each
stage of each command is timestamped by wrapping the parts' methods on their instances
(nothing in the measured code knows about it), so the figures cost a few µs per call:

* ``wait round``   append called → the commit thread starts the round that covers it
* ``write+fsync``  the round's pwrite and fdatasync (commit thread)
* ``to loop``      fsync done → the event loop publishes the round
* ``to tail``      published → the runner's read returns the record
* ``apply``        read returned → the batch's RocksDB commit starts
* ``commit``       the WriteBatch
* ``to waiter``    batch committed → the command's ``applied`` wait returns
* ``answer``       → the outcome is looked up and the answer built
* ``total``        the whole ``execute``

and it reports records per commit round and per applied batch, and the process CPU per
command. Figures are medians and p99 over every command after a warm-up.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvloop

from log.filelog import FileLog
from ops.bench.stats import percentile, table
from ops.core import CoreServer
from ops.serve import SWITCH_INTERVAL_S, snapshotter
from ops.settings import Settings
from projections.commands import NewMessage, PostMessages, encode
from projections.rocksstore import RocksStore
from projections.runner import Runner
from service.gateway import LocalGateway

STAGES = ["wait round", "write+fsync", "to loop", "to tail", "apply", "commit", "to waiter",
          "answer", "total"]


@dataclass
class Trace:
    """What the wrapped methods saw, with ``perf_counter`` times (both threads' clock)."""

    rounds: list[tuple[float, float]] = field(default_factory=list)  # (start, synced)
    # per partition: (end offset, round index, publish time), ends increasing
    published: dict[int, list[tuple[int, int, float]]] = field(
        default_factory=lambda: defaultdict(list))
    # per partition: (first, last offset, read returned)
    reads: dict[int, list[tuple[int, int, float]]] = field(
        default_factory=lambda: defaultdict(list))
    # per partition: (last offset, commit start, commit end)
    commits: dict[int, list[tuple[int, float, float]]] = field(
        default_factory=lambda: defaultdict(list))
    commands: list[dict[str, Any]] = field(default_factory=list)
    commit_started: float = 0.0
    commit_ended: float = 0.0


def _instrument(log: FileLog, runner: Runner, store: RocksStore, trace: Trace) -> None:
    """Wrap the instances' methods so each stage leaves a timestamp in ``trace``."""
    clock = time.perf_counter
    write_and_sync = log._write_and_sync
    publish = log._publish
    read = log.read
    commit = store.commit
    advance = runner._advance

    def traced_write_and_sync(*args: Any) -> None:
        started = clock()
        write_and_sync(*args)
        trace.rounds.append((started, clock()))

    def traced_publish(part: Any, end: int, chunks: Any) -> None:
        trace.published[part.number].append((end, len(trace.rounds) - 1, clock()))
        publish(part, end, chunks)

    async def traced_read(partition: int, offset: int, max_records: int = 1000) -> Any:
        records = await read(partition, offset, max_records)
        if records:
            trace.reads[partition].append((records[0].offset, records[-1].offset, clock()))
        return records

    def traced_commit(changes: Any) -> None:
        trace.commit_started = clock()
        commit(changes)
        trace.commit_ended = clock()

    def traced_advance(partition: int, offset: int) -> None:
        trace.commits[partition].append((offset, trace.commit_started, trace.commit_ended))
        advance(partition, offset)

    log._write_and_sync = traced_write_and_sync  # type: ignore[method-assign]
    log._publish = traced_publish  # type: ignore[method-assign]
    log.read = traced_read  # type: ignore[method-assign]
    store.commit = traced_commit  # type: ignore[method-assign]
    runner._advance = traced_advance  # type: ignore[method-assign]


def _first_at_or_after(rows: list[tuple], offset: int, key: Callable[[tuple], int]) -> tuple:
    keys = [key(r) for r in rows]
    return rows[bisect.bisect_left(keys, offset)]


def _stages(trace: Trace, gateway: LocalGateway) -> tuple[dict[str, list[float]], list[int],
                                                          list[int]]:
    """Per-stage durations (ms) of every traced command; round and batch sizes."""
    out: dict[str, list[float]] = {s: [] for s in STAGES}
    by_part: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for cmd in trace.commands:
        by_part[cmd["partition"]].append(cmd)
    round_sizes: dict[int, int] = defaultdict(int)
    batches: list[int] = []
    for p, cmds in by_part.items():
        pubs = trace.published[p]
        pub_ends = [e for e, _, _ in pubs]
        reads = trace.reads[p]
        read_lasts = [r[1] for r in reads]
        commits = trace.commits[p]
        commit_lasts = [c[0] for c in commits]
        previous = 0
        for end, rnd, _ in pubs:
            round_sizes[rnd] += end - previous
            previous = end
        last = -1
        for offset, _, _ in commits:
            batches.append(offset - last)
            last = offset
        for cmd in cmds:
            o = cmd["offset"]
            end, rnd, published = pubs[bisect.bisect_right(pub_ends, o)]
            assert end > o
            started, synced = trace.rounds[rnd]
            read_at = reads[bisect.bisect_left(read_lasts, o)][2]
            _, c_start, c_end = commits[bisect.bisect_left(commit_lasts, o)]
            ms = 1000.0
            out["wait round"].append((started - cmd["appended"]) * ms)
            out["write+fsync"].append((synced - started) * ms)
            out["to loop"].append((published - synced) * ms)
            out["to tail"].append((read_at - published) * ms)
            out["apply"].append((c_start - read_at) * ms)
            out["commit"].append((c_end - c_start) * ms)
            out["to waiter"].append((cmd["applied"] - c_end) * ms)
            out["answer"].append((cmd["done"] - cmd["applied"]) * ms)
            out["total"].append((cmd["done"] - cmd["started"]) * ms)
    del gateway
    return out, [round_sizes[r] for r in sorted(round_sizes)], batches


async def _run(concurrency: int, seconds: float, warmup: float, partitions: int,
               queues: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="marconi-bench-pipeline-"))
    settings = Settings()
    async with FileLog(root / "log", partitions) as log:
        store = RocksStore(root / "store")
        runner = Runner(log, store, range(partitions),
                        snapshots=snapshotter(settings, log, root))
        await runner.start()
        await runner.settled()
        gateway = LocalGateway(log, runner, store, timeout=settings.request_timeout)
        core = CoreServer(SimpleNamespace(state=SimpleNamespace(gateway=gateway)),
                          root / "core.sock")
        trace = Trace()
        _instrument(log, runner, store, trace)
        clock = time.perf_counter
        append = log.append
        applied = runner.applied
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup
        stop_at = measure_from + seconds
        # The command a task is executing (a context variable: the gateway's shielded
        # append runs in a task of its own, which copies the context)
        current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
            "current", default=None)

        async def traced_append(partition: int, records: Any) -> list[int]:
            cmd = current.get()
            if cmd is not None:
                cmd["appended"] = clock()
            offsets = await append(partition, records)
            if cmd is not None:
                cmd["partition"], cmd["offset"] = partition, offsets[-1]
            return offsets

        async def traced_applied(partition: int, offset: int, timeout: float | None = None,
                                 **kw: Any) -> None:
            await applied(partition, offset, timeout, **kw)
            cmd = current.get()
            if cmd is not None:
                cmd["applied"] = clock()

        log.append = traced_append  # type: ignore[method-assign]
        runner.applied = traced_applied  # type: ignore[method-assign]

        body = {"event": "single", "n": 1}
        cpu_at_start = os.times()
        counted = 0

        async def worker(n: int) -> None:
            nonlocal counted
            queue = f"q{n % queues}"
            while (now := loop.time()) < stop_at:
                cmd = PostMessages(id=uuid.uuid4().hex, project="bench", queue=queue,
                                   client_id="c", time_ms=0, size=60,
                                   messages=[NewMessage(id=uuid.uuid4().hex, body=body,
                                                        ttl=300)])
                record = encode(cmd)
                entry: dict[str, Any] = {"started": clock()}
                measured = now >= measure_from
                current.set(entry if measured else None)
                await core.execute(record)
                if measured:
                    entry["done"] = clock()
                    trace.commands.append(entry)
                    counted += 1

        async def cpu_mark() -> None:
            nonlocal cpu_at_start
            await asyncio.sleep(max(0.0, measure_from - loop.time()))
            cpu_at_start = os.times()

        marker = loop.create_task(cpu_mark())
        wall = clock()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        await marker
        ended = os.times()
        user = ended.user - cpu_at_start.user
        system = ended.system - cpu_at_start.system
        wall = clock() - wall - warmup
        stages, round_sizes, batches = _stages(trace, gateway)
        await runner.stop()
        store.close()
    return {"stages": stages, "rounds": round_sizes, "batches": batches, "commands": counted,
            "user_us": user / max(counted, 1) * 1e6,
            "sys_us": system / max(counted, 1) * 1e6, "rate": counted / max(wall, 1e-9)}


def _summary(values: list[float] | list[int]) -> tuple[str, str]:
    ordered = sorted(values)
    return f"{percentile(ordered, 50):.3f}", f"{percentile(ordered, 99):.3f}"


def main(concurrency: tuple[int, ...] = (1, 16), seconds: float = 5.0, warmup: float = 1.0,
         partitions: int = 16, queues: int = 1) -> int:
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as ``marconi serve`` runs
    for c in concurrency:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(_run(c, seconds, warmup, partitions, queues))
        print(f"\nconcurrency {c}: {result['commands']:,} commands, "
              f"{result['rate']:,.0f}/s; process CPU per command: {result['user_us']:.0f} µs user, "
              f"{result['sys_us']:.0f} µs system")
        rows = [[name, *_summary(values)] for name, values in result["stages"].items()]
        rows.append(["records/round", *(_summary(result["rounds"]))])
        rows.append(["records/batch", *(_summary(result["batches"]))])
        print(table(["stage (ms)", "p50", "p99"], rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
