"""``python -m ops.bench.store``: commits/s, gets/s and 20-key scans/s for each ViewStore.

Commits are batches of 100 puts of 1 KB values, the shape of a runner batch of posts. Keys cycle
through a fixed key space so memory stays bounded however fast a store is.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from ops.bench.stats import table
from projections.memstore import MemoryStore
from projections.overlay import Overlay
from projections.rocksstore import RocksStore
from projections.store import ViewStore

PREFIX = b"bench\x00"
STOP = b"bench\x01"


def key(n: int) -> bytes:
    return PREFIX + n.to_bytes(8, "big")


@dataclass
class Result:
    store: str
    commits: float
    gets: float
    scans: float


def timed(seconds: float, step: Callable[[], None]) -> float:
    """Calls of ``step`` per second, measured for about ``seconds``."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(16):  # amortise the clock read
            step()
        calls += 16
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def run(
    store: ViewStore,
    seconds: float,
    batch: int,
    value_bytes: int,
    keyspace: int,
    via_overlay: bool = False,
) -> tuple[float, float, float]:
    value = os.urandom(value_bytes)
    rng = random.Random(0)
    seq = 0
    # preload the whole key space so gets and scans read a full store
    for first in range(0, keyspace, 1000):
        store.commit({key(n): value for n in range(first, min(first + 1000, keyspace))})

    def commit() -> None:
        nonlocal seq
        changes = {key((seq + i) % keyspace): value for i in range(batch)}
        seq += batch
        if via_overlay:  # the runner's path: apply into an overlay, commit its changes
            overlay = Overlay(store)
            for k, v in changes.items():
                overlay.put(k, v)
            store.commit(overlay.changes)
        else:
            store.commit(changes)

    def get() -> None:
        store.get(key(rng.randrange(keyspace)))

    def scan() -> None:
        for _ in islice(store.scan(key(rng.randrange(keyspace)), STOP), 20):
            pass

    return timed(seconds, commit), timed(seconds, get), timed(seconds, scan)


def main(
    seconds: float = 2.0, batch: int = 100, value_bytes: int = 1024, keyspace: int = 100_000
) -> None:
    root = tempfile.mkdtemp(prefix="marconi-bench-store-")
    kinds: dict[str, tuple[Callable[[], ViewStore], bool]] = {
        "MemoryStore": (MemoryStore, False),
        "RocksStore": (lambda: RocksStore(os.path.join(root, "rocks")), False),
        "RocksStore via Overlay": (lambda: RocksStore(os.path.join(root, "rocks-ov")), True),
    }
    print(
        f"bench store: commits of {batch} x {value_bytes} B puts, gets and 20-key scans "
        f"over {keyspace:,} keys, {seconds:g} s per figure"
    )
    results = []
    try:
        for name, (make, via_overlay) in kinds.items():
            store = make()
            try:
                commits, gets, scans = run(store, seconds, batch, value_bytes, keyspace,
                                           via_overlay)
            finally:
                store.close()
            results.append(Result(name, commits, gets, scans))
            print(f"  {name:<24} done", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(
        ["store", "commits/s", "puts/s", "gets/s", "scans/s (20 keys)"],
        [[r.store, f"{r.commits:,.0f}", f"{r.commits * batch:,.0f}", f"{r.gets:,.0f}",
          f"{r.scans:,.0f}"] for r in results],
    ))


if __name__ == "__main__":
    main()
