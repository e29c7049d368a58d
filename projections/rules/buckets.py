"""Counts by expiry time in three levels of buckets (rules >= 6, issue 10).

Messages and claims expire by time, not by a command, so a count "as of now" is the count
kept by the fold minus what has expired since but is not swept yet. That part is a prefix
sum over expiry time, read here from buckets of 65.5 s, 256 ms and 1 ms: whatever the
backlog, a read steps on at most ``(now - swept) / 65.5 s`` coarse keys, 255 middle keys and
256 fine ones (live or tombstones: the key space of each range is that small), never on one
key per message or claim.
"""

from __future__ import annotations

from functools import lru_cache

from projections import keys as K
from projections.overlay import Overlay
from projections.store import View

SHIFTS = (16, 8, 0)  # level 0: 2^16 ms buckets, level 1: 2^8 ms, level 2: 1 ms


def _key(prefix: bytes, level: int, bucket: int) -> bytes:
    return prefix + bytes((level,)) + K.u64(bucket)


@lru_cache(maxsize=4096)
def _keys(prefix: bytes, expires: int) -> tuple[bytes, ...]:
    """The key of each level counting ``expires`` (a claim's messages share their times)."""
    return tuple(_key(prefix, level, expires >> shift) for level, shift in enumerate(SHIFTS))


def add(tx: Overlay, prefix: bytes, expires: int, delta: int) -> None:
    """Count ``delta`` more (or fewer) things expiring at ``expires`` under ``prefix``, now."""
    tally = Tally()
    tally.add(tx, prefix, expires, delta)
    tally.flush(tx)


class Tally:
    """The bucket counts one command changes, each read once and staged once when it ends.

    A claim of ten that extends its messages' lives moves ten expiry times: counted key by
    key that is sixty reads and sixty writes of the same six keys (issue 15). The running
    value of every key touched is kept here instead, checked after each change exactly as a
    count kept in the store would be, and ``flush`` stages the final values: the same keys
    with the same values (a zero deletes its key). Every change of a command must go through
    its tally (``Context.tally``) and nothing may read these keys before the flush.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[bytes, int] = {}

    def add(self, view: View, prefix: bytes, expires: int, delta: int) -> None:
        """Count ``delta`` more (or fewer) things expiring at ``expires`` under ``prefix``."""
        if delta == 0:
            return
        values = self._values
        for key in _keys(prefix, expires):
            value = values.get(key)
            if value is None:
                raw = view.get(key)
                value = K.U64.unpack(raw)[0] if raw is not None else 0
            value += delta
            if value < 0:
                raise ValueError(f"bucket count below zero at {key.hex()}")
            values[key] = value

    def flush(self, tx: Overlay) -> None:
        """Stage every count changed since the last flush."""
        for key, value in self._values.items():
            if value:
                tx.put(key, K.u64(value))
            else:
                tx.delete(key)
        self._values.clear()


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
