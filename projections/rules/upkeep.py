"""Upkeep rules: Sweep (expiry of claims, messages, subscriptions; GC of deleted
incarnations) and the dead-letter outbox (import on the target, done on the source).

Everything here is bounded by the command (a cutoff and a maximum count, DESIGN §7) and
appended by the partition's owner, so deletion is replayable too.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from projections import keys as K
from projections.commands import ImportDeadLetters, OutboxDone, Sweep
from projections.overlay import Overlay
from projections.rules.index import append_message, drop_claim, remove_message
from projections.rules.state import (
    Context,
    Outcome,
    ensure_queue,
    get_claim,
    get_queue,
    loads,
    msg_key,
    put_queue,
    scope,
)
from projections.rules.subscriptions import remove_subscription, sub_key


def sweep(tx: Overlay, cmd: Sweep, ctx: Context, meta: dict) -> Outcome:
    cutoff = min(cmd.cutoff_ms, ctx.now)
    counts = {"messages": 0, "claims": 0, "subscriptions": 0, "garbage": 0}
    queues: dict[tuple[str, str], dict[str, Any] | None] = {}

    def live_queue(project: str, name: str, inc: int) -> dict[str, Any] | None:
        if (project, name) not in queues:
            queues[(project, name)] = get_queue(tx, ctx.partition, project, name)
        q = queues[(project, name)]
        return q if q is not None and q["inc"] == inc else None

    prefix = K.kind_prefix(ctx.partition, K.PCLEXP)
    for key, _ in list(islice(tx.scan(prefix, prefix + K.u64(cutoff + 1)), cmd.max_count)):
        project, name, inc, pos = K.parse_scope(key, len(prefix) + 8)
        q = live_queue(project, name, inc)
        claim = None if q is None else get_claim(tx, ctx, project, name, q, key[pos:].decode())
        if q is not None and claim is not None:
            drop_claim(tx, ctx, project, name, q, claim)
        tx.delete(key)
        counts["claims"] += 1

    prefix = K.kind_prefix(ctx.partition, K.PEXP)
    for key, _ in list(islice(tx.scan(prefix, prefix + K.u64(cutoff + 1)), cmd.max_count)):
        project, name, inc, pos = K.parse_scope(key, len(prefix) + 8)
        seq = K.U64.unpack_from(key, pos)[0]
        q = live_queue(project, name, inc)
        raw = None if q is None else tx.get(msg_key(ctx, project, name, q, seq))
        if q is not None and raw is not None:
            remove_message(tx, ctx, project, name, q, seq, loads(raw))
        tx.delete(key)
        counts["messages"] += 1

    prefix = K.kind_prefix(ctx.partition, K.PSUBEXP)
    for key, _ in list(islice(tx.scan(prefix, prefix + K.u64(cutoff + 1)), cmd.max_count)):
        pos = len(prefix) + 8
        project, pos = K.read_lp(key, pos)
        name, pos = K.read_lp(key, pos)
        raw = tx.get(sub_key(ctx, project, name, key[pos:].decode()))
        if raw is not None and loads(raw)["e"] <= cutoff:
            remove_subscription(tx, ctx, project, name, loads(raw))
        tx.delete(key)
        counts["subscriptions"] += 1

    counts["garbage"] = collect_garbage(tx, ctx, cmd.max_count)
    for (project, name), q in queues.items():
        if q is not None:
            put_queue(tx, ctx, project, name, q)
    return counts


def collect_garbage(tx: Overlay, ctx: Context, budget: int) -> int:
    """Delete keys of deleted queue incarnations, at most ``budget`` this time."""
    prefix = K.kind_prefix(ctx.partition, K.GARBAGE)
    removed = 0
    for entry, _ in list(tx.scan(prefix, K.prefix_end(prefix))):
        project, name, inc, _ = K.parse_scope(entry)
        done = True
        for kind in K.INCARNATION_KINDS:
            keys_of = K.scope(ctx.partition, kind, project, name, inc)
            for key, _ in tx.scan(keys_of, K.prefix_end(keys_of)):
                if removed >= budget:
                    done = False
                    break
                tx.delete(key)
                removed += 1
            if not done:
                break
        if not done:
            break
        tx.delete(entry)
    return removed


def import_dead_letters(tx: Overlay, cmd: ImportDeadLetters, ctx: Context,
                         meta: dict) -> Outcome:
    mark_key = K.hwm(ctx.partition, cmd.source_partition)
    raw = tx.get(mark_key)
    if raw is not None and K.U64.unpack(raw)[0] >= cmd.origin_offset:
        return {"imported": 0}  # sent again after a crash: already applied
    tx.put(mark_key, K.u64(cmd.origin_offset))
    q = ensure_queue(tx, ctx, cmd.project, cmd.queue)
    ids_scope = scope(ctx, K.MSGID, cmd.project, cmd.queue, q)
    for m in cmd.messages:
        if tx.get(ids_scope + m["id"].encode()) is not None:
            continue
        append_message(tx, ctx, meta, cmd.project, cmd.queue, q, message_id=m["id"],
                        body=m["body"], ttl=m["ttl"], client_id=m["cl"])
    put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"imported": len(cmd.messages)}


def outbox_done(tx: Overlay, cmd: OutboxDone, ctx: Context, meta: dict) -> Outcome:
    tx.delete(K.outbox(ctx.partition, cmd.origin_offset))
    return {}
