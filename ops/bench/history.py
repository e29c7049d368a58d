"""``marconi bench history``: apply and rebuild speed when the same history spans 1 min, 1 h
and 24 h of log time (stamped times, no waiting).

The workload is the same in every row: posts, claims and deletes on a few queues of one
partition, with a Sweep every 100 commands (what an owner appends). Only the stamped times
differ, so a cost that grows with history — outcomes pruned from the head of their index,
expiry scans walking tombstones — shows as a falling rate in the longer rows. ``--rules 1``
folds under the original rules (the "before"), the default under the latest.

Honest on a noisy machine: every row folds the very same records (the same seeded ids, the
same record count) but for their stamped times; rounds alternate the order of the rows, and
the table prints the median of the rounds (wall clock, as the Done-when asks, and process CPU
time beside it, which other processes' load disturbs less). Keys stepped and keys written per
record are counts, the same on every machine.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ops.bench.stats import table
from projections.apply import apply_into
from projections.commands import (
    CreateClaim,
    DeleteMessages,
    NewMessage,
    PostMessages,
    SetRules,
    Sweep,
    encode,
)
from projections.overlay import Overlay
from projections.rocksstore import RocksStore
from projections.rules.versions import LATEST, ORIGINAL
from projections.runner import digest_partition
from projections.store import ViewStore
from projections.tombstones import TombstoneStore

SPANS = (("1 min", 60_000), ("1 h", 3_600_000), ("24 h", 86_400_000))
P = 0
APPLY_BATCH = 50  # records per commit when applying: a live runner's 5 ms slice, about
REBUILD_BATCH = 2000  # records per commit in ``marconi rebuild`` (``runner.fold``)


def history(commands: int, span_ms: int, rules: int, start_ms: int = 1_800_000_000_000,
            seed: int = 10) -> list[bytes]:
    """``commands`` records of a mixed post/claim/delete load over ``span_ms`` of log time.

    Ids come from ``seed``, so two spans differ only in their stamped times."""
    rng = random.Random(seed)

    def new_id() -> str:
        return f"{rng.getrandbits(128):032x}"

    records: list[bytes] = []
    if rules > ORIGINAL:
        records.append(encode(SetRules(id=new_id(), time_ms=start_ms, version=rules)))
    queues = [f"q{i}" for i in range(4)]
    posted: dict[str, list[str]] = {q: [] for q in queues}
    body = {"pad": "x" * 200}
    for i in range(commands):
        t = start_ms + i * span_ms // commands
        q = queues[i % len(queues)]
        base = {"id": new_id(), "project": "bench", "queue": q, "client_id": "c",
                "time_ms": t}
        step = (i // len(queues)) % 3
        if i % 100 == 99:
            cmd: object = Sweep(id=base["id"], time_ms=t, cutoff_ms=t, max_count=1000)
        elif step == 0 or not posted[q]:
            mid = new_id()
            posted[q].append(mid)
            cmd = PostMessages(messages=[NewMessage(id=mid, body=body, ttl=3600)], size=300,
                               **base)
        elif step == 1:
            cmd = CreateClaim(claim_id=new_id(), ttl=60, grace=60, limit=2, **base)
        else:
            cmd = DeleteMessages(message_ids=[posted[q].pop(0)], **base)
        records.append(encode(cmd))  # type: ignore[arg-type]
    return records


@dataclass
class Fold:
    """What folding a history took: wall and CPU seconds, and keys written."""

    wall_s: float
    cpu_s: float
    written: int


def fold_into(store: ViewStore, records: list[bytes], batch: int) -> Fold:
    """Apply ``records`` in batches of ``batch``, one commit each (the runner's loop)."""
    written = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(records), batch):
        tx = Overlay(store)
        for offset in range(first, min(first + batch, len(records))):
            apply_into(tx, P, offset, records[offset])
        changes = tx.changes
        written += len(changes)
        store.commit(changes)
    return Fold(time.perf_counter() - wall, time.process_time() - cpu, written)


def stepped_per_record(records: list[bytes], last: int = 2000) -> float:
    """Entries (live or tombstone) scans stepped on per record, over the last ``last``."""
    store = TombstoneStore()
    head = records[:-last]
    fold_into(store, head, 500)
    store.stepped = 0
    tx = Overlay(store)
    for offset in range(len(head), len(records)):
        apply_into(tx, P, offset, records[offset])
    store.commit(tx.changes)
    return store.stepped / last


def one_round(records: list[bytes]) -> tuple[Fold, Fold, bool]:
    """Apply (small batches) and rebuild (large ones) into fresh RocksDB stores."""
    root = Path(tempfile.mkdtemp(prefix="marconi-bench-history-"))
    try:
        live = RocksStore(root / "live")
        applied = fold_into(live, records, APPLY_BATCH)
        rebuilt = RocksStore(root / "rebuilt")
        rebuild = fold_into(rebuilt, records, REBUILD_BATCH)
        same = digest_partition(live, P) == digest_partition(rebuilt, P)
        live.close()
        rebuilt.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return applied, rebuild, same


def main(commands: int = 30_000, rules: int = LATEST, stepped: bool = True,
         rounds: int = 3) -> None:
    print(f"bench history: {commands:,} commands (post/claim/delete, a Sweep every 100), "
          f"rules version {rules}, {rounds} rounds alternating the spans, medians; "
          f"load average {os.getloadavg()[0]:.2f}")
    histories = {label: history(commands, span, rules) for label, span in SPANS}
    sizes = {len(records) for records in histories.values()}
    assert len(sizes) == 1, "every span folds the same number of records"
    n = sizes.pop()
    folds: dict[str, list[tuple[Fold, Fold, bool]]] = {label: [] for label, _ in SPANS}
    for r in range(rounds):
        order = [label for label, _ in SPANS][:: 1 if r % 2 == 0 else -1]
        for label in order:
            applied, rebuild, same = one_round(histories[label])
            folds[label].append((applied, rebuild, same))
            print(f"  round {r + 1} {label}: apply {n / applied.wall_s:,.0f}/s, "
                  f"rebuild {n / rebuild.wall_s:,.0f}/s", flush=True)

    def rate(label: str, which: int, cpu: bool = False) -> float:
        return statistics.median(
            n / (f[which].cpu_s if cpu else f[which].wall_s) for f in folds[label])

    first = SPANS[0][0]
    rows: list[list[object]] = []
    for label, _ in SPANS:
        applied, rebuild = rate(label, 0), rate(label, 1)
        cpu = (f"{rate(label, 0, True) / rate(first, 0, True):.2f} / "
               f"{rate(label, 1, True) / rate(first, 1, True):.2f}")
        work = f"{stepped_per_record(histories[label]):.1f}" if stepped else "-"
        written = folds[label][0][0].written / n
        rows.append([label, f"{applied:,.0f}", f"{applied / rate(first, 0):.2f}",
                     f"{rebuild:,.0f}", f"{rebuild / rate(first, 1):.2f}", cpu, work,
                     f"{written:.1f}",
                     "yes" if all(f[2] for f in folds[label]) else "NO"])
    print(table(["history spans", "apply rec/s", "x 1 min", "rebuild rec/s", "x 1 min",
                 "cpu x 1 min (apply / rebuild)", "keys stepped/rec",
                 "keys written/rec (apply)", "live = rebuilt"], rows))
    last = SPANS[-1][0]
    print(f"{last} / {first}: apply {rate(last, 0) / rate(first, 0):.2f}x, rebuild "
          f"{rate(last, 1) / rate(first, 1):.2f}x (median of {rounds} rounds; "
          f"load average now {os.getloadavg()[0]:.2f})")
