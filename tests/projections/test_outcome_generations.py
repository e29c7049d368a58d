"""Outcomes by generation (rules 7, ``projections.rules.outcomes``): a history spanning many
outcome windows commits no delete per outcome it outlives (a generation goes in one range
delete), retries are still no-ops for at least the window, and logs written before rules 7
fold exactly as before. Counted in keys committed and range deletes, not in time.
"""

from __future__ import annotations

from typing import Any

import pytest

from projections import keys as K
from projections import queries
from projections.apply import OUTCOME_WINDOW_MS, apply_into
from projections.commands import NewMessage, PostMessages, SetRules, encode
from projections.memstore import MemoryStore
from projections.overlay import Overlay
from projections.rules import versions
from projections.rules.outcomes import OUTCOME_GENERATION_MS
from projections.runner import digest
from projections.store import ChangeSet
from tests.projections.outcome_history import T0, history

P = 0

# Folded with the code of 2194432 (before rules 7): see tests/projections/outcome_history.py.
DIGESTS_BEFORE_RULES_7 = {
    versions.BOUNDED: "4a28b60eeec65c06c4c99e214876840ae8ee4fbc7e43d38df27755bc03cde133",
    versions.FANOUT: "a2a6ada39841214bc1bdaf89d08bbeb21d36f436053249cd03492c3d2ee6968a",
}


class Committed(MemoryStore):
    """A MemoryStore counting what commits write: point writes (deletes apart), ranges."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = self.deletes = self.ranges = 0

    def commit(self, changes: Any) -> None:
        self.puts += sum(1 for v in changes.values() if v is not None)
        self.deletes += sum(1 for v in changes.values() if v is None)
        self.ranges += len(getattr(changes, "ranges", ()))
        super().commit(changes)


def fold(records: list[bytes], batch: int = 50, store: MemoryStore | None = None
         ) -> MemoryStore:
    """Apply in batches of ``batch`` (50: about a live runner's slice), one commit each."""
    store = store if store is not None else MemoryStore()
    for lo in range(0, len(records), batch):
        tx = Overlay(store)
        for offset in range(lo, min(lo + batch, len(records))):
            apply_into(tx, P, offset, records[offset])
        store.commit(tx.changes)
    return store


@pytest.mark.parametrize("rules", sorted(DIGESTS_BEFORE_RULES_7))
def test_logs_written_before_rules_7_fold_as_before(rules: int) -> None:
    for batch in (1, 50, 2000):
        store = fold(history(rules), batch)
        assert digest(store) == DIGESTS_BEFORE_RULES_7[rules], batch


def test_under_rules_7_the_same_history_differs_and_live_equals_rebuilt() -> None:
    records = history(versions.OUTCOME_GENERATIONS)
    live, rebuilt = fold(records, 50), fold(records, 2000)
    assert digest(live) == digest(rebuilt) == digest(fold(records, 1))
    assert digest(live) not in DIGESTS_BEFORE_RULES_7.values()


@pytest.mark.parametrize("rules", [versions.FANOUT, versions.LIVE_STATS,
                                   versions.OUTCOME_GENERATIONS])
def test_keys_committed_per_record_stay_flat_once_a_history_spans_the_window(
        rules: int) -> None:
    """The same 3,000 commands 2 ms apart (nothing pruned) and 2.88 s apart (bench history's
    24 h: 17 windows). Before rules 7 the long one commits 2 deletes more per record (the
    outcome and its expiry entry); from rules 7 a generation goes in one range delete. What
    the long one still commits more is the expired claims' deletes (~0.4 a record) and, from
    rules 6, the expiry-time counts each expiry updates (~0.9): so rules 6 shows the two
    outcome deletes on top of those (3.2), and rules 7 without them (1.3)."""
    short, long = Committed(), Committed()
    fold(history(rules, spacing_ms=2), 50, short)
    fold(history(rules, spacing_ms=2880), 50, long)
    n = len(history(rules))
    extra = (long.puts + long.deletes - short.puts - short.deletes) / n
    if rules < versions.OUTCOME_GENERATIONS:
        assert extra >= 2.0, extra  # what this rules version fixes, seen by the same count
        assert long.ranges == 0
    else:
        assert extra <= 1.45, extra  # the expired claims' deletes and the expiry counts
        windows = 3000 * 2880 // OUTCOME_GENERATION_MS
        assert 1 <= long.ranges <= windows + 1  # once a generation, plus the old keys once
        outcome_kinds = (K.OUTCOME, K.OUTEXP, K.OUTGEN)
        kept = [k for k, _ in long.scan(b"", b"\xff" * 4) if k[2] in outcome_kinds]
        assert len(kept) <= 2 * OUTCOME_GENERATION_MS // 2880 + 10  # two generations, at most


def post(cmd_id: str, t: int) -> bytes:
    return encode(PostMessages(id=cmd_id, project="p", queue="q", client_id="c", time_ms=t,
                               size=10, messages=[NewMessage(id=f"m-{cmd_id}-{t}", body={},
                                                             ttl=3600)]))


def append(store: MemoryStore, offset: int, record: bytes) -> ChangeSet:
    """Apply one more record at ``offset``; what it committed."""
    tx = Overlay(store)
    apply_into(tx, P, offset, record)
    changes = tx.changes
    store.commit(changes)
    return changes


def total(store: MemoryStore, now: int) -> int:
    return int(queries.stats(store, P, "p", "q", now)["total"])


def test_a_retry_is_a_no_op_for_at_least_the_window_across_generations() -> None:
    """Sent just before a generation ends, retried just before its window ends (the next
    generation): still a no-op; a generation later its outcome is gone."""
    start = (T0 // OUTCOME_GENERATION_MS + 1) * OUTCOME_GENERATION_MS - 1_000
    records = [encode(SetRules(id="rules", time_ms=start, version=versions.LATEST)),
               post("a", start), post("a", start + OUTCOME_WINDOW_MS - 1)]
    store = fold(records, 1)
    assert total(store, start + OUTCOME_WINDOW_MS) == 1
    assert queries.outcome(store, P, "a") is not None
    changes = append(store, 3, post("b", start + 2 * OUTCOME_GENERATION_MS + 1_000))
    assert len(changes.ranges) == 2  # a range delete (and one for the keys before rules 7)
    assert queries.outcome(store, P, "a") is None  # ... took the generation of "a"
    assert queries.outcome(store, P, "b") is not None


def test_outcomes_from_before_the_switch_are_found_for_a_window_then_dropped_at_once() -> None:
    records = [encode(SetRules(id="r5", time_ms=T0, version=versions.FANOUT)), post("a", T0),
               encode(SetRules(id="r7", time_ms=T0 + 1, version=versions.OUTCOME_GENERATIONS)),
               post("b", T0 + 2), post("a", T0 + 3)]  # "a" again: an old outcome, still seen
    store = fold(records, 1)
    assert total(store, T0 + 10) == 2
    assert queries.outcome(store, P, "a") is not None
    old = K.kind_prefix(P, K.OUTCOME)
    assert list(store.scan(old, K.kind_prefix(P, K.OUTGEN)))  # kept for now
    append(store, len(records), post("c", T0 + OUTCOME_WINDOW_MS + 5))
    assert not list(store.scan(old, K.kind_prefix(P, K.OUTGEN)))  # dropped in one go
    assert "ol" not in queries.partition_state(store, P)
    assert queries.outcome(store, P, "c") is not None
