"""``marconi digest`` and ``marconi rebuild`` on an embedded data directory.

Layout of a data directory: ``log/`` (the FileLog, the source of truth) and ``store/`` (the
RocksDB projection, always rebuildable from the log).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

from log.filelog import FileLog
from projections.rocksstore import RocksStore
from projections.runner import check_identity, check_position, digest, fold


def log_dir(data: str | Path) -> Path:
    return Path(data) / "log"


def store_dir(data: str | Path) -> Path:
    return Path(data) / "store"


async def catch_up(log: FileLog, store: RocksStore, *, progress: bool = False) -> int:
    """Fold every partition to the end of the log; returns how many records were applied."""
    check_identity(store, log)
    applied = 0
    for p in range(log.partitions):
        start = await check_position(store, log, p) + 1
        end = await log.end_offset(p)
        last = await fold(log, store, p, start)
        applied += max(0, last - start + 1)
        if progress and end:
            print(f"  partition {p}: {end} records", file=sys.stderr)
    return applied


async def _digest(data: str) -> str:
    async with FileLog(log_dir(data)) as log:
        store = RocksStore(store_dir(data))
        try:
            await catch_up(log, store)
            return digest(store)
        finally:
            store.close()


def digest_command(data: str) -> int:
    """Print a hash of the whole projected state (caught up to the end of the log)."""
    print(asyncio.run(_digest(data)))
    return 0


async def rebuild(data: str) -> tuple[str, int, float]:
    """Recompute every projection from offset 0 into a fresh store, then swap it in."""
    fresh = Path(data) / "store.rebuild"
    if fresh.exists():
        shutil.rmtree(fresh)
    async with FileLog(log_dir(data)) as log:
        store = RocksStore(fresh)
        try:
            started = time.perf_counter()
            records = await catch_up(log, store, progress=True)
            elapsed = time.perf_counter() - started
            result = digest(store)
        finally:
            store.close()
        live = store_dir(data)
        old = Path(data) / "store.old"
        if live.exists():
            if old.exists():
                shutil.rmtree(old)
            live.rename(old)
        fresh.rename(live)
        if old.exists():
            shutil.rmtree(old)
    return result, records, elapsed


def rebuild_command(data: str) -> int:
    result, records, elapsed = asyncio.run(rebuild(data))
    rate = records / elapsed if elapsed > 0 else float("inf")
    print(f"rebuilt {records} records in {elapsed:.2f} s ({rate:,.0f} records/s)")
    print(result)
    return 0
