"""Fingerprints of a fold, for the tests that prove a cheaper apply folds a log as before."""

from __future__ import annotations

import hashlib

from projections.apply import apply_into
from projections.memstore import MemoryStore
from projections.overlay import Overlay
from projections.runner import digest

CHECKPOINT = 100  # records between digests of the whole state (outcomes are pruned later)


def checkpoints(records: list[bytes], batch: int, partition: int = 0,
                every: int = CHECKPOINT) -> str:
    """One hash over the state's digest every ``every`` records, folded in batches of
    ``batch`` (a batch that re-reads what it just wrote is covered as the runner does it)."""
    store, chain = MemoryStore(), hashlib.blake2b(digest_size=32)
    tx = Overlay(store)
    for offset, record in enumerate(records):
        apply_into(tx, partition, offset, record)
        done = offset + 1
        if done % batch == 0 or done % every == 0 or done == len(records):
            store.commit(tx.changes)
            tx = Overlay(store)
        if done % every == 0 or done == len(records):
            chain.update(digest(store).encode())
    return chain.hexdigest()
