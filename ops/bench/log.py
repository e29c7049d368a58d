"""``marconi bench log``: appends/s and append latency for each log, 1 KB records."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from log import Log
from log.filelog import FileLog
from ops.bench.stats import percentile, table


@dataclass
class Result:
    log: str
    appenders: int
    records: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


async def run_load(log: Log, appenders: int, seconds: float, record_bytes: int) -> Result:
    """``appenders`` tasks, each appending one record at a time round-robin over partitions."""
    payload = os.urandom(record_bytes)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    partitions = log.partitions

    async def appender(n: int) -> None:
        i = n
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await log.append(i % partitions, [payload])
            latencies.append(time.perf_counter() - t0)
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(appender(n) for n in range(appenders)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return Result("", appenders, len(latencies), elapsed,
                  percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000)


async def bench(
    kinds: dict[str, Callable[[], Awaitable[Log]]],
    appenders: list[int],
    seconds: float,
    record_bytes: int,
) -> list[Result]:
    results = []
    for name, make in kinds.items():
        for n in appenders:
            log = await make()
            try:
                result = await run_load(log, n, seconds, record_bytes)
            finally:
                await log.stop()
            result.log = name
            results.append(result)
            print(f"  {name:<18} {n:>5} appenders: {result.rate:>10,.0f} rec/s", flush=True)
    return results


def main(
    partitions: int = 16,
    appenders: tuple[int, ...] = (1, 100, 1000),
    seconds: float = 3.0,
    record_bytes: int = 1024,
    kafka: str | None = None,
    include_nondurable: bool = False,
) -> None:
    root = tempfile.mkdtemp(prefix="marconi-bench-log-")
    counter = iter(range(1_000_000))

    async def filelog(durable: bool, strategy: str = "auto") -> Log:
        log = FileLog(os.path.join(root, f"l{next(counter)}"), partitions, durable=durable,
                      sync_strategy=strategy)  # type: ignore[arg-type]
        await log.start()
        return log

    kinds: dict[str, Callable[[], Awaitable[Log]]] = {
        "FileLog durable": lambda: filelog(True),
        "FileLog fdatasync": lambda: filelog(True, "fdatasync"),
    }
    if include_nondurable:
        kinds["FileLog no-fsync"] = lambda: filelog(False)
    broker = None
    if kafka is None:
        from ops.testbroker import start_broker

        broker = start_broker()
        kafka = broker.bootstrap
    if kafka:
        from log.kafkalog import KafkaLog

        async def kafkalog() -> Log:
            log = KafkaLog(kafka, f"bench-{os.getpid()}-{next(counter)}", partitions)
            await log.start()
            return log

        kinds["KafkaLog (tansu)" if broker else "KafkaLog"] = kafkalog
    print(f"bench log: {partitions} partitions, {record_bytes} B records, {seconds:g} s per cell")
    try:
        results = asyncio.run(bench(kinds, list(appenders), seconds, record_bytes))
    finally:
        if broker is not None:
            broker.stop()
    print()
    print(table(
        ["log", "appenders", "records/s", "p50 ms", "p99 ms"],
        [[r.log, r.appenders, f"{r.rate:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}"]
         for r in results],
    ))
