"""``marconi bench stats``: the cost of one ``GET …/stats`` after ``bench compare``'s claim
phase — 20,000 claims in 10 s (ttl 300 s), each message deleted after its claim — and during
an expiry backlog (50,000 expired, not swept), under rules 5 (scans over every live claim and
every expired message) and the latest rules (counters by expiry time, issue 10).

The same records are folded into a real RocksDB store under each rules version (only the
``SetRules`` record differs); figures are the process CPU time per query (median of rounds,
which other processes' load disturbs less than wall clock) and the keys one query steps on,
tombstones included (a ``TombstoneStore`` folded alike: a count, the same on every machine).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ops.bench.stats import table
from projections import queries
from projections.apply import apply_into
from projections.commands import (
    Command,
    CreateClaim,
    DeleteMessages,
    NewMessage,
    PostMessages,
    SetRules,
    encode,
)
from projections.overlay import Overlay
from projections.rocksstore import RocksStore
from projections.rules import versions
from projections.store import ViewStore
from projections.tombstones import TombstoneStore

T0 = 1_800_000_000_000


def history(rules: int, claims: int, seconds: float) -> tuple[list[bytes], int]:
    """The records, and the time the queries are asked at (just after the last claim)."""
    now = T0
    out: list[bytes] = []
    n = 0

    def add(cmd: Command) -> None:
        nonlocal n
        n += 1
        out.append(encode(cmd))

    add(SetRules(id="rules", time_ms=now, version=rules))
    step = seconds * 1000 / claims
    for block in range(claims // 100):
        ids = [f"m{block:05d}-{k:03d}" for k in range(100)]
        add(PostMessages(id=f"p{block}", project="p", queue="q", client_id="c", size=10,
                         time_ms=int(now), messages=[NewMessage(id=i, body=1) for i in ids]))
        for k in range(100):
            now += step
            add(CreateClaim(id=f"c{block}-{k}", project="p", queue="q", client_id="c",
                            claim_id=f"k{block}-{k}", ttl=300, grace=60, limit=1,
                            time_ms=int(now)))
        add(DeleteMessages(id=f"d{block}", project="p", queue="q", message_ids=ids,
                           time_ms=int(now)))
    add(PostMessages(id="rest", project="p", queue="q", client_id="c", size=10,
                     time_ms=int(now), messages=[NewMessage(id=f"r{i}", body=1)
                                                 for i in range(10)]))
    return out, int(now) + 1000


def backlog(rules: int, expired: int) -> tuple[list[bytes], int]:
    """``expired`` messages (ttl 60 s, posted 100 at a time over 50 s) that no Sweep has
    removed, then 10 live ones: the records, and the time the queries are asked at."""
    now = T0
    out = [encode(SetRules(id="rules", time_ms=now, version=rules))]
    for block in range(expired // 100):
        out.append(encode(PostMessages(
            id=f"p{block}", project="p", queue="q", client_id="c", size=10, time_ms=now,
            messages=[NewMessage(id=f"m{block}-{k}", body=1, ttl=60) for k in range(100)])))
        now += 100
    now += 60_000
    out.append(encode(PostMessages(id="live", project="p", queue="q", client_id="c", size=10,
                                   time_ms=now, messages=[NewMessage(id=f"r{i}", body=1)
                                                          for i in range(10)])))
    return out, now + 1000


def fold(store: ViewStore, records: list[bytes], batch: int = 500) -> None:
    for first in range(0, len(records), batch):
        tx = Overlay(store)
        for offset in range(first, min(first + batch, len(records))):
            apply_into(tx, 0, offset, records[offset])
        store.commit(tx.changes)


def cpu_us_per_query(store: ViewStore, now: int, queries_n: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(queries_n):
            queries.stats(store, 0, "p", "q", now)
        samples.append((time.process_time() - start) / queries_n * 1e6)
    return statistics.median(samples)


def _row(name: str, rules: int, records: list[bytes], now: int, queries_n: int,
         rounds: int) -> tuple[object, ...]:
    counted = TombstoneStore()
    fold(counted, records)
    before = counted.stepped
    answer = queries.stats(counted, 0, "p", "q", now)
    stepped = counted.stepped - before
    data = Path(tempfile.mkdtemp(prefix="marconi-bench-stats-"))
    try:
        store = RocksStore(data / "store")
        fold(store, records)
        us = cpu_us_per_query(store, now, queries_n, rounds)
        store.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return (name, rules, f"{us:.0f}", stepped,
            f"{answer['claimed']}/{answer['free']}/{answer['total']}")


def main(claims: int = 20_000, seconds: float = 10.0, queries_n: int = 200,
         rounds: int = 7, expired: int = 50_000) -> None:
    rows = []
    for rules in (versions.FANOUT, versions.LATEST):
        records, now = history(rules, claims, seconds)
        rows.append(_row(f"{claims} claims", rules, records, now, queries_n, rounds))
    for rules in (versions.FANOUT, versions.LATEST):
        records, now = backlog(rules, expired)
        rows.append(_row(f"{expired} expired", rules, records, now, max(1, queries_n // 10),
                         rounds))
    print(f"stats after {claims} claims in {seconds:g} s, and during an expiry backlog of "
          f"{expired} (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print(table(["history", "rules", "CPU us/query", "keys stepped", "claimed/free/total"],
                rows))
