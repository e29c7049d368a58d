"""Binary keys of the projected state.

Every key starts with the partition (u16) and a kind byte, so one partition's state is one
contiguous range that can be dropped or rebuilt alone. Project and queue names are
length-prefixed (never joined by a separator), so project ``a`` can never see ``a/b``.
Integers are big-endian u64, so byte order is numeric order.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache

U16 = struct.Struct(">H")
U64 = struct.Struct(">Q")

META = 0x00
QUEUE = 0x10
MSG = 0x20
MSGID = 0x21
FREE = 0x22
QEXP = 0x23
PEXP = 0x24
DELAYED = 0x25  # rules >= 2: delayed messages by eligibility time, moved to FREE when due
QEXB = 0x26  # rules >= 6: messages counted by expiry time (rules/buckets.py), for stats
QSEQB = 0x27  # rules >= 6: per block of seqs, a time no message of the block lives until
CLAIM = 0x30
QCLEXP = 0x31
PCLEXP = 0x32
QCLB = 0x33  # rules >= 6: messages held by claims, counted by claim expiry time
SUB = 0x40
SUBURI = 0x41
PSUBEXP = 0x42
OUTCOME = 0x50
OUTEXP = 0x51
OUTGEN = 0x52  # rules >= 7: outcomes under their generation (OUTCOME_GENERATION_MS of log time)
OUTBOX = 0x60
HWM = 0x61
GARBAGE = 0x70
GCQ = 0x71  # rules >= 2: incarnations to collect, in the order they were dropped
DELIVERY = 0x80  # pending delivery: project, queue, subscription, item
DELIVERY_DUE = 0x81  # index of pending deliveries by next attempt time
DELIVERY_BODY = 0x82  # a posted message kept for its pending deliveries, with a refcount
DELIVERY_STATS = 0x83  # per-subscription delivered / failed / pending / last error
DELIVERY_FLOOR = 0x84  # nothing pending is due before this (the owner's scan start)
DELIVERY_REFS = 0x85  # how many pending deliveries still need a DELIVERY_BODY
FANOUT = 0x86  # rules >= 5: a post's messages waiting to be fanned out, by origin offset
FANOUT_FLOOR = 0x87  # rules >= 5: the fan-out entry key the next FanOut starts at
QUARANTINE = 0x7F

# The kinds living under one queue incarnation: what deleting a queue must collect. New kinds
# go at the end: the collector's progress names a kind by its index here.
INCARNATION_KINDS = (MSG, MSGID, FREE, QEXP, CLAIM, QCLEXP, DELAYED, QEXB, QCLB, QSEQB)


u64: Callable[[int], bytes] = U64.pack  # big-endian u64; the bound method: no frame per key


@lru_cache(maxsize=65536)
def lp(text: str) -> bytes:
    """Length-prefixed UTF-8."""
    raw = text.encode()
    return U16.pack(len(raw)) + raw


def read_lp(key: bytes, pos: int) -> tuple[str, int]:
    (n,) = U16.unpack_from(key, pos)
    start = pos + 2
    return key[start : start + n].decode(), start + n


@lru_cache(maxsize=4096)
def kind_prefix(partition: int, kind: int) -> bytes:
    return U16.pack(partition) + bytes((kind,))


def partition_range(partition: int) -> tuple[bytes, bytes]:
    """All keys of one partition: ``[start, stop)``."""
    return U16.pack(partition), U16.pack(partition + 1) if partition < 0xFFFF else b"\xff" * 3


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    raw = bytearray(prefix)
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\xff" * (len(prefix) + 1)
    raw[-1] += 1
    return bytes(raw)


def meta(partition: int) -> bytes:
    return kind_prefix(partition, META)


def queue(partition: int, project: str, name: str) -> bytes:
    """Queue record; the name is last and not length-prefixed so keys sort by name."""
    return kind_prefix(partition, QUEUE) + lp(project) + name.encode()


def queues_of(partition: int, project: str) -> bytes:
    return kind_prefix(partition, QUEUE) + lp(project)


@lru_cache(maxsize=65536)
def scope(partition: int, kind: int, project: str, name: str, inc: int) -> bytes:
    """Prefix of one kind of key under a queue incarnation."""
    return kind_prefix(partition, kind) + lp(project) + lp(name) + u64(inc)


def parse_scope(key: bytes, pos: int = 3) -> tuple[str, str, int, int]:
    """(project, queue, incarnation, end position) from a scoped key."""
    project, pos = read_lp(key, pos)
    name, pos = read_lp(key, pos)
    (inc,) = U64.unpack_from(key, pos)
    return project, name, inc, pos + 8


def sub_scope(partition: int, kind: int, project: str, name: str) -> bytes:
    """Prefix of subscription keys of a queue (they outlive incarnations, like upstream)."""
    return kind_prefix(partition, kind) + lp(project) + lp(name)


def outcome(partition: int, command_id: str) -> bytes:
    return kind_prefix(partition, OUTCOME) + command_id.encode()


def outcome_generation(partition: int, generation: int) -> bytes:
    """Where the outcomes of one generation start (rules >= 7): a generation goes in one
    range delete."""
    return kind_prefix(partition, OUTGEN) + u64(generation)


def outcome_in(partition: int, generation: int, command_id: str) -> bytes:
    return kind_prefix(partition, OUTGEN) + u64(generation) + command_id.encode()


def outcome_expiry(partition: int, time_ms: int, command_id: str) -> bytes:
    return kind_prefix(partition, OUTEXP) + u64(time_ms) + command_id.encode()


def outbox(partition: int, origin_offset: int) -> bytes:
    return kind_prefix(partition, OUTBOX) + u64(origin_offset)


def hwm(partition: int, source_partition: int) -> bytes:
    return kind_prefix(partition, HWM) + U16.pack(source_partition)


def quarantine(partition: int, offset: int) -> bytes:
    return kind_prefix(partition, QUARANTINE) + u64(offset)
