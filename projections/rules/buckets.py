"""Counts by expiry time in three levels of buckets (rules >= 6, issue 10).

Messages and claims expire by time, not by a command, so a count "as of now" is the count
kept by the fold minus what has expired since but is not swept yet. That part is a prefix
sum over expiry time, read here from buckets of 65.5 s, 256 ms and 1 ms: whatever the
backlog, a read steps on at most ``(now - swept) / 65.5 s`` coarse keys, 255 middle keys and
256 fine ones (live or tombstones: the key space of each range is that small), never on one
key per message or claim.
"""

from __future__ import annotations

from projections import keys as K
from projections.overlay import Overlay
from projections.store import View

SHIFTS = (16, 8, 0)  # level 0: 2^16 ms buckets, level 1: 2^8 ms, level 2: 1 ms


def _key(prefix: bytes, level: int, bucket: int) -> bytes:
    return prefix + bytes((level,)) + K.u64(bucket)


def add(tx: Overlay, prefix: bytes, expires: int, delta: int) -> None:
    """Count ``delta`` more (or fewer) things expiring at ``expires`` under ``prefix``."""
    if delta == 0:
        return
    for level, shift in enumerate(SHIFTS):
        key = _key(prefix, level, expires >> shift)
        raw = tx.get(key)
        value = (K.U64.unpack(raw)[0] if raw is not None else 0) + delta
        if value < 0:
            raise ValueError(f"bucket count below zero at {key.hex()}")
        if value:
            tx.put(key, K.u64(value))
        else:
            tx.delete(key)


def _sum(view: View, prefix: bytes, level: int, lo: int, hi: int) -> int:
    if lo >= hi:
        return 0
    return sum(K.U64.unpack(raw)[0] for _, raw in
               view.scan(_key(prefix, level, lo), _key(prefix, level, hi)))


def due(view: View, prefix: bytes, swept: int, now: int) -> int:
    """How many counted under ``prefix`` expire at or before ``now``; everything expiring
    before ``swept`` must be gone already (the sweep cursor), so the read starts there."""
    if now < swept:
        return 0
    top, mid = now >> SHIFTS[0], now >> SHIFTS[1]
    total = _sum(view, prefix, 0, swept >> SHIFTS[0], top)
    total += _sum(view, prefix, 1, max(top << (SHIFTS[0] - SHIFTS[1]), swept >> SHIFTS[1]), mid)
    total += _sum(view, prefix, 2, max(mid << SHIFTS[1], swept), now + 1)
    return total
