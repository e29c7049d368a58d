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
from projections.rules.index import append_message, cursor, drop_claim, remove_message
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
from projections.rules.versions import BOUNDED


def _due(tx: Overlay, ctx: Context, meta: dict[str, Any], kind: int, field: str, cutoff: int,
         max_count: int) -> list[bytes]:
    """Up to ``max_count`` keys of a partition-wide expiry index due at ``cutoff``.

    Rules >= 2 start at the cursor kept in ``meta[field]`` and move it: to ``cutoff + 1``
    when everything due is taken (what expires later is stamped after now), else to the last
    key taken. Earlier rules scan from the head of the index.
    """
    prefix = K.kind_prefix(ctx.partition, kind)
    stop = prefix + K.u64(cutoff + 1)
    if ctx.rules < BOUNDED:
        return [key for key, _ in islice(tx.scan(prefix, stop), max_count)]
    keys = [key for key, _ in islice(tx.scan(prefix + cursor(meta, field), stop), max_count)]
    meta[field] = (keys[-1][len(prefix):] if len(keys) >= max_count
                   else K.u64(cutoff + 1)).hex()
    return keys


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
    for key in _due(tx, ctx, meta, K.PCLEXP, "sc", cutoff, cmd.max_count):
        project, name, inc, pos = K.parse_scope(key, len(prefix) + 8)
        q = live_queue(project, name, inc)
        claim = None if q is None else get_claim(tx, ctx, project, name, q, key[pos:].decode())
        if q is not None and claim is not None:
            drop_claim(tx, ctx, project, name, q, claim)
        tx.delete(key)
        counts["claims"] += 1

    prefix = K.kind_prefix(ctx.partition, K.PEXP)
    for key in _due(tx, ctx, meta, K.PEXP, "sm", cutoff, cmd.max_count):
        project, name, inc, pos = K.parse_scope(key, len(prefix) + 8)
        seq = K.U64.unpack_from(key, pos)[0]
        q = live_queue(project, name, inc)
        raw = None if q is None else tx.get(msg_key(ctx, project, name, q, seq))
        if q is not None and raw is not None:
            remove_message(tx, ctx, project, name, q, seq, loads(raw))
        tx.delete(key)
        counts["messages"] += 1

    prefix = K.kind_prefix(ctx.partition, K.PSUBEXP)
    for key in _due(tx, ctx, meta, K.PSUBEXP, "ss", cutoff, cmd.max_count):
        pos = len(prefix) + 8
        project, pos = K.read_lp(key, pos)
        name, pos = K.read_lp(key, pos)
        raw = tx.get(sub_key(ctx, project, name, key[pos:].decode()))
        if raw is not None and loads(raw)["e"] <= cutoff:
            remove_subscription(tx, ctx, project, name, loads(raw))
        tx.delete(key)
        counts["subscriptions"] += 1

    counts["garbage"] = collect_garbage(tx, ctx, cmd.max_count)
    if ctx.rules >= BOUNDED:
        counts["garbage"] += collect_dropped(tx, ctx, cmd.max_count - counts["garbage"], meta)
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


def collect_dropped(tx: Overlay, ctx: Context, budget: int, meta: dict[str, Any]) -> int:
    """Rules >= 2: delete keys of dropped incarnations (queue delete, purge), at most
    ``budget``, resuming where the last slice stopped: the drop list is in drop order from the
    cursor ``meta["gq"]``, and an entry's value says where in the incarnation to go on."""
    prefix = K.kind_prefix(ctx.partition, K.GCQ)
    removed = 0
    for entry, progress in list(islice(tx.scan(prefix + cursor(meta, "gq"),
                                               K.prefix_end(prefix)), 16)):
        if removed >= budget:
            break
        project, name, inc, _ = K.parse_scope(entry, len(prefix) + 8)
        first, resume = (progress[0], progress[1:]) if progress else (0, b"")
        done = True
        for i in range(first, len(K.INCARNATION_KINDS)):
            keys_of = K.scope(ctx.partition, K.INCARNATION_KINDS[i], project, name, inc)
            start = keys_of + resume if i == first else keys_of
            for key, _ in tx.scan(start, K.prefix_end(keys_of)):
                if removed >= budget:
                    tx.put(entry, bytes((i,)) + key[len(keys_of):])  # go on here next time
                    done = False
                    break
                tx.delete(key)
                removed += 1
            if not done:
                break
        if not done:
            break
        tx.delete(entry)
        meta["gq"] = entry[len(prefix):].hex()
    return removed


def drop_incarnation(tx: Overlay, ctx: Context, project: str, name: str, inc: int) -> None:
    """Hand an incarnation's keys to the collector: O(1) now, deleted by Sweep in slices."""
    if ctx.rules >= BOUNDED:
        tx.put(K.kind_prefix(ctx.partition, K.GCQ) + K.u64(ctx.offset) + K.lp(project)
               + K.lp(name) + K.u64(inc), b"")
    else:
        tx.put(K.scope(ctx.partition, K.GARBAGE, project, name, inc), b"")


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
