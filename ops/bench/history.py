"""``marconi bench history``: apply and rebuild speed when the same history spans 1 min, 1 h
and 24 h of log time (stamped times, no waiting).

The workload is the same in every row: posts, claims and deletes on a few queues of one
partition, with a Sweep every 100 commands (what an owner appends). Only the stamped times
differ, so a cost that grows with history — outcomes pruned from the head of their index,
expiry scans walking tombstones — shows as a falling rate in the longer rows. ``--rules 1``
folds under the original rules (the "before"), the default under the latest.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
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


def history(commands: int, span_ms: int, rules: int, start_ms: int = 1_800_000_000_000
            ) -> list[bytes]:
    """``commands`` records of a mixed post/claim/delete load over ``span_ms`` of log time."""
    records: list[bytes] = []
    if rules > ORIGINAL:
        records.append(encode(SetRules(id=uuid.uuid4().hex, time_ms=start_ms, version=rules)))
    queues = [f"q{i}" for i in range(4)]
    posted: dict[str, list[str]] = {q: [] for q in queues}
    body = {"pad": "x" * 200}
    for i in range(commands):
        t = start_ms + i * span_ms // commands
        q = queues[i % len(queues)]
        base = {"id": uuid.uuid4().hex, "project": "bench", "queue": q, "client_id": "c",
                "time_ms": t}
        step = (i // len(queues)) % 3
        if i % 100 == 99:
            cmd: object = Sweep(id=base["id"], time_ms=t, cutoff_ms=t, max_count=1000)
        elif step == 0 or not posted[q]:
            mid = uuid.uuid4().hex
            posted[q].append(mid)
            cmd = PostMessages(messages=[NewMessage(id=mid, body=body, ttl=3600)], size=300,
                               **base)
        elif step == 1:
            cmd = CreateClaim(claim_id=uuid.uuid4().hex, ttl=60, grace=60, limit=2, **base)
        else:
            cmd = DeleteMessages(message_ids=[posted[q].pop(0)], **base)
        records.append(encode(cmd))  # type: ignore[arg-type]
    return records


def fold_into(store: ViewStore, records: list[bytes], batch: int) -> float:
    """Apply ``records`` in batches of ``batch``; the seconds it took."""
    started = time.perf_counter()
    for first in range(0, len(records), batch):
        tx = Overlay(store)
        for offset in range(first, min(first + batch, len(records))):
            apply_into(tx, P, offset, records[offset])
        store.commit(tx.changes)
    return time.perf_counter() - started


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


def main(commands: int = 30_000, rules: int = LATEST, stepped: bool = True) -> None:
    print(f"bench history: {commands:,} commands (post/claim/delete, a Sweep every 100), "
          f"rules version {rules}")
    rows: list[list[object]] = []
    base_apply = base_rebuild = 0.0
    for label, span in SPANS:
        records = history(commands, span, rules)
        root = Path(tempfile.mkdtemp(prefix="marconi-bench-history-"))
        try:
            live = RocksStore(root / "live")
            apply_s = fold_into(live, records, 50)  # small batches, like a live runner
            rebuilt = RocksStore(root / "rebuilt")
            rebuild_s = fold_into(rebuilt, records, 2000)
            same = digest_partition(live, P) == digest_partition(rebuilt, P)
            live.close()
            rebuilt.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        apply_rate, rebuild_rate = len(records) / apply_s, len(records) / rebuild_s
        if not rows:
            base_apply, base_rebuild = apply_rate, rebuild_rate
        work = f"{stepped_per_record(records):.1f}" if stepped else "-"
        rows.append([label, f"{apply_rate:,.0f}", f"{apply_rate / base_apply:.2f}",
                     f"{rebuild_rate:,.0f}", f"{rebuild_rate / base_rebuild:.2f}", work,
                     "yes" if same else "NO"])
        print(f"  {label}: apply {apply_rate:,.0f}/s, rebuild {rebuild_rate:,.0f}/s", flush=True)
    print(table(["history spans", "apply rec/s", "x 1 min", "rebuild rec/s", "x 1 min",
                 "keys stepped/rec", "live = rebuilt"], rows))
