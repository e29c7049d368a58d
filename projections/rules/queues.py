"""Queue rules: create, metadata PATCH, delete (O(1), collected by upkeep), purge."""

from __future__ import annotations

from typing import Any

from projections import keys as K
from projections.commands import CreateQueue, DeleteQueue, PurgeQueue, UpdateQueue
from projections.metadata import RESERVED, Limits, validate
from projections.overlay import Overlay
from projections.rules import quotas
from projections.rules.index import put_claim, put_message, remove_message, take_free, track
from projections.rules.state import (
    Context,
    Outcome,
    Rejected,
    ensure_queue,
    get_claim,
    get_queue,
    loads,
    msg_key,
    put_queue,
    scope,
)
from projections.rules.subscriptions import remove_subscription
from projections.rules.upkeep import drop_incarnation
from projections.rules.versions import BOUNDED, LIVE_STATS


def create_queue(tx: Overlay, cmd: CreateQueue, ctx: Context, meta: dict) -> Outcome:
    if get_queue(tx, ctx.partition, cmd.project, cmd.queue) is not None:
        return {"created": False}  # upstream ignores the new metadata (204)
    quotas.check_new_queue(tx, ctx, cmd)
    ensure_queue(tx, ctx, cmd.project, cmd.queue, dict(cmd.metadata))
    return {"created": True}


def update_queue(tx: Overlay, cmd: UpdateQueue, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        raise Rejected("not_found",
                       f"Queue {cmd.queue} does not exist for project {cmd.project}")
    metadata = dict(q["meta"])
    for op in cmd.ops:
        key = op["key"]
        if op["op"] == "add":
            metadata[key] = op["value"]
        elif op["op"] == "replace":
            if key not in metadata and key not in RESERVED:
                raise Rejected("conflict", f"Can't replace non-existent object {key}.")
            metadata[key] = op["value"]
        elif op["op"] == "remove":
            if key in metadata:
                del metadata[key]
            elif key not in RESERVED:
                raise Rejected("conflict", f"Can't remove non-existent object {key}.")
        elif op["op"] == "clear":  # v1.0's PUT …/metadata replaces the whole document
            metadata = {}
        else:
            raise Rejected("invalid", f"Invalid operation: `{op['op']}`.")
    problem = validate(metadata, Limits.from_dict(cmd.limits))
    if problem is not None:
        raise Rejected("invalid", problem)
    q["meta"] = metadata
    put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"metadata": metadata}


def delete_queue(tx: Overlay, cmd: DeleteQueue, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {}
    tx.delete(K.queue(ctx.partition, cmd.project, cmd.queue))
    # O(1) now: the incarnation's keys become unreachable and Sweep collects them in slices.
    drop_incarnation(tx, ctx, cmd.project, cmd.queue, q["inc"])
    return {"deleted": True}


def purge(tx: Overlay, cmd: PurgeQueue, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    purged = 0
    if q is not None and "messages" in cmd.resource_types and ctx.rules >= BOUNDED:
        purged = purge_messages(tx, ctx, cmd.project, cmd.queue, q)
        put_queue(tx, ctx, cmd.project, cmd.queue, q)
    elif q is not None and "messages" in cmd.resource_types:
        # Like upstream: every unclaimed message goes; messages under a live claim survive.
        while True:
            taken = take_free(tx, ctx, cmd.project, cmd.queue, q, 1000, include_delayed=True)
            if not taken:
                break
            for seq, msg in taken:
                remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg)
            purged += len(taken)
        put_queue(tx, ctx, cmd.project, cmd.queue, q)
    if "subscriptions" in cmd.resource_types:
        prefix = K.sub_scope(ctx.partition, K.SUB, cmd.project, cmd.queue)
        for _key, raw in list(tx.scan(prefix, K.prefix_end(prefix))):
            remove_subscription(tx, ctx, cmd.project, cmd.queue, loads(raw))
    return {"purged": purged}


def purge_messages(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any]) -> int:
    """Rules >= 2: purge in O(live claims), not O(queue): the queue moves to a new incarnation
    and the old one is collected by Sweep in slices. Like upstream, messages under a live
    claim survive: they (and their claims) are copied into the new incarnation."""
    old = dict(q)
    q["inc"] = ctx.offset
    for field in ("fh", "cx", "dc", "gaps", "b", "ch", "h", "hl"):
        q.pop(field, None)
    track(ctx, q)  # rules >= 6: the new incarnation counts what is copied into it
    kept = 0
    kept_seqs: list[int] = []
    claims_prefix = scope(ctx, K.QCLEXP, project, name, old)
    live = [key[len(claims_prefix) + 8 :].decode() for key, _ in
            tx.scan(claims_prefix + K.u64(ctx.now + 1), K.prefix_end(claims_prefix))]
    for claim_id in live:
        claim = get_claim(tx, ctx, project, name, old, claim_id)
        if claim is None:
            continue
        held = []
        for seq in claim["m"]:
            raw = tx.get(msg_key(ctx, project, name, old, seq))
            if raw is None:
                continue
            msg = loads(raw)
            put_message(tx, ctx, project, name, q, seq, msg, index=True)
            tx.put(scope(ctx, K.MSGID, project, name, q) + msg["id"].encode(), K.u64(seq))
            held.append(seq)
        claim["m"] = held
        kept += len(held)
        kept_seqs.extend(held)
        put_claim(tx, ctx, project, name, q, claim, None)
    purged = old["count"] - kept
    q["count"] = kept
    if ctx.rules >= LIVE_STATS and kept_seqs:
        q["h"] = min(kept_seqs)
    drop_incarnation(tx, ctx, project, name, old["inc"])
    return purged
