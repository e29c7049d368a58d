"""What every rule shares: the codec, the apply context, queue records and key builders.

Stored values are orjson; keys are built by ``projections.keys``. A queue's keys live under
its incarnation (``scope``), so deleting a queue is O(1) and its keys are collected later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from projections import keys as K
from projections.overlay import Overlay
from projections.rules.buckets import Tally
from projections.store import View

MAX_SECONDS = 10**9  # any TTL, grace or delay beyond this is clamped (keys are u64 ms)

Outcome = dict[str, Any]
CLAIMED = "This message is claimed; it cannot be deleted without a valid claim ID."
Changes = dict[bytes, bytes | None]


# The codec of stored values: orjson itself (no wrapper frame: the fold calls these per key).
dumps: Callable[[Any], bytes] = orjson.dumps
loads: Callable[[bytes], Any] = orjson.loads


@dataclass(frozen=True, slots=True)
class Context:
    """Where and when a command applies: its partition, offset, effective time and the
    rules version in force there (``projections.rules.versions``); and the expiry-time
    counts it changed, staged when its rule returns (``buckets.Tally``)."""

    partition: int
    offset: int
    now: int  # effective time, ms
    rules: int = 1
    lean_from: int = 0  # rules >= 8: the first seq posted under them (``meta["lq"]``)
    tally: Tally = field(default_factory=Tally, compare=False, repr=False)


class Rejected(Exception):
    """A state-dependent refusal: recorded as the outcome, changes nothing."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def read_meta(view: View, partition: int) -> dict[str, Any]:
    raw = view.get(K.meta(partition))
    if raw is None:
        return {"offset": -1, "time": 0, "seq": 0, "crc": 0}
    return loads(raw)


def get_queue(view: View, partition: int, project: str, name: str) -> dict[str, Any] | None:
    raw = view.get(K.queue(partition, project, name))
    return None if raw is None else loads(raw)


def put_queue(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any]) -> None:
    tx.put(K.queue(ctx.partition, project, name), dumps(q))


def ensure_queue(tx: Overlay, ctx: Context, project: str, name: str,
                  metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The queue record, created lazily; its incarnation is the creating command's offset."""
    q = get_queue(tx, ctx.partition, project, name)
    if q is None:
        q = {"inc": ctx.offset, "created": ctx.now, "meta": metadata or {}, "count": 0}
        put_queue(tx, ctx, project, name, q)
    return q


def scope(ctx: Context, kind: int, project: str, name: str, q: dict[str, Any]) -> bytes:
    return K.scope(ctx.partition, kind, project, name, q["inc"])


def msg_key(ctx: Context, project: str, name: str, q: dict[str, Any], seq: int) -> bytes:
    return scope(ctx, K.MSG, project, name, q) + K.u64(seq)


def expiry_keys(ctx: Context, project: str, name: str, inc: int, expires: int,
                 seq: int) -> tuple[bytes, bytes]:
    per_queue = K.scope(ctx.partition, K.QEXP, project, name, inc) + K.u64(expires) + K.u64(seq)
    partition_wide = (K.kind_prefix(ctx.partition, K.PEXP) + K.u64(expires) + K.lp(project)
                      + K.lp(name) + K.u64(inc) + K.u64(seq))
    return per_queue, partition_wide


def claim_key(ctx: Context, project: str, name: str, q: dict[str, Any], claim_id: str) -> bytes:
    return scope(ctx, K.CLAIM, project, name, q) + claim_id.encode()


def get_claim(tx: View, ctx: Context, project: str, name: str, q: dict[str, Any],
               claim_id: str) -> dict[str, Any] | None:
    raw = tx.get(claim_key(ctx, project, name, q, claim_id))
    return None if raw is None else loads(raw)


def claim_expiry_keys(ctx: Context, project: str, name: str, inc: int, expires: int,
                       claim_id: str) -> tuple[bytes, bytes]:
    per_queue = (K.scope(ctx.partition, K.QCLEXP, project, name, inc) + K.u64(expires)
                 + claim_id.encode())
    partition_wide = (K.kind_prefix(ctx.partition, K.PCLEXP) + K.u64(expires) + K.lp(project)
                      + K.lp(name) + K.u64(inc) + claim_id.encode())
    return per_queue, partition_wide
