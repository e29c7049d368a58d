"""Claim rules: create (with dead-letter moves to the outbox), update, release."""

from __future__ import annotations

from typing import Any

from projections import keys as K
from projections.commands import CreateClaim, ReleaseClaim, UpdateClaim
from projections.overlay import Overlay
from projections.rules.index import (
    drop_claim,
    extend_for_grace,
    for_outcome,
    put_claim,
    put_message,
    remove_message,
    take_free,
    tracked,
)
from projections.rules.state import (
    Context,
    Outcome,
    Rejected,
    dumps,
    get_claim,
    get_queue,
    loads,
    msg_key,
    put_queue,
    scope,
)


def create_claim(tx: Overlay, cmd: CreateClaim, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {"messages": []}
    taken = take_free(tx, ctx, cmd.project, cmd.queue, q, cmd.limit)
    qmeta = q["meta"]
    max_claims = qmeta.get("_max_claim_count")
    dlq = qmeta.get("_dead_letter_queue")
    dlq_active = ("_max_claim_count" in qmeta and isinstance(dlq, str) and bool(dlq)
                  and isinstance(max_claims, int))
    expires = ctx.now + cmd.ttl * 1000
    free_scope = scope(ctx, K.FREE, cmd.project, cmd.queue, q)
    delivered: list[tuple[int, dict[str, Any]]] = []
    moved: list[dict[str, Any]] = []
    for seq, msg in taken:
        if dlq_active and msg["n"] >= max_claims:
            dlq_ttl = qmeta.get("_dead_letter_queue_messages_ttl")
            moved.append({"id": msg["id"], "body": msg["body"], "cl": msg["cl"],
                          "ttl": dlq_ttl if dlq_ttl else msg["ttl"]})
            remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg, detach_claim=False)
            continue
        msg["n"] += 1
        msg["k"] = cmd.claim_id
        msg["ke"] = expires
        extend_for_grace(tx, ctx, cmd.project, cmd.queue, q, seq, msg, cmd.ttl, cmd.grace)
        put_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg, index=False)
        tx.delete(free_scope + K.u64(seq))
        delivered.append((seq, msg))
    if moved:
        tx.put(K.outbox(ctx.partition, ctx.offset), dumps(
            {"project": cmd.project, "queue": dlq, "messages": moved}))
    put_queue(tx, ctx, cmd.project, cmd.queue, q)  # expired messages met may have gone
    if not delivered:
        return {"messages": []}
    claim = {"id": cmd.claim_id, "ttl": cmd.ttl, "grace": cmd.grace, "u": ctx.now, "e": expires,
             "m": [seq for seq, _ in delivered]}
    put_claim(tx, ctx, cmd.project, cmd.queue, q, claim, None)
    if tracked(ctx, q):
        put_queue(tx, ctx, cmd.project, cmd.queue, q)  # rules >= 6: what its claims hold
    return {"claim_id": cmd.claim_id, "messages": [for_outcome(m) for _, m in delivered]}


def update_claim(tx: Overlay, cmd: UpdateClaim, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    claim = None if q is None else get_claim(tx, ctx, cmd.project, cmd.queue, q, cmd.claim_id)
    if q is None or claim is None or claim["e"] <= ctx.now:
        raise Rejected("not_found", f"Claim {cmd.claim_id} does not exist in queue "
                                    f"{cmd.queue} for project {cmd.project}")
    old_expires = claim["e"]
    claim.update(ttl=cmd.ttl, grace=cmd.grace, u=ctx.now, e=ctx.now + cmd.ttl * 1000)
    for seq in claim["m"]:
        key = msg_key(ctx, cmd.project, cmd.queue, q, seq)
        raw = tx.get(key)
        if raw is None:
            continue
        msg = loads(raw)
        msg["ke"] = claim["e"]
        extend_for_grace(tx, ctx, cmd.project, cmd.queue, q, seq, msg, cmd.ttl, cmd.grace)
        tx.put(key, dumps(msg))
    put_claim(tx, ctx, cmd.project, cmd.queue, q, claim, old_expires)
    return {}


def release_claim(tx: Overlay, cmd: ReleaseClaim, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    claim = None if q is None else get_claim(tx, ctx, cmd.project, cmd.queue, q, cmd.claim_id)
    if q is not None and claim is not None:
        drop_claim(tx, ctx, cmd.project, cmd.queue, q, claim)
        put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {}
