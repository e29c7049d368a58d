"""Message rules: post, delete (one or many), pop."""

from __future__ import annotations

from typing import Any

from projections import delivery
from projections.commands import DeleteMessage, DeleteMessages, PopMessages, PostMessages
from projections.overlay import Overlay
from projections.rules import quotas, versions
from projections.rules.index import (
    append_messages,
    find_message,
    for_outcome,
    remove_message,
    take_free,
)
from projections.rules.state import (
    CLAIMED,
    Context,
    Outcome,
    Rejected,
    ensure_queue,
    get_claim,
    get_queue,
    put_queue,
)


def post(tx: Overlay, cmd: PostMessages, ctx: Context, meta: dict[str, Any]) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None and not cmd.create_queue:
        raise Rejected("not_found", f"Queue {cmd.queue} does not exist for project {cmd.project}")
    qmeta = q["meta"] if q else {}
    cap = qmeta.get("_max_messages_post_size")
    if cap and isinstance(cap, int) and cmd.size > min(cap, cmd.max_post_size):
        effective = min(cap, cmd.max_post_size)
        raise Rejected("invalid", (
            f"Message collection size is too large. The max size for current queue is "
            f"{effective}. It is calculated by max size = min(max_messages_post_size_config: "
            f"{cmd.max_post_size}, max_messages_post_size_queue: {cap})."))
    default_delay = qmeta.get("_default_message_delay")
    delays = []
    for m in cmd.messages:
        delay = 0
        if default_delay:
            delay = default_delay if m.delay is None else m.delay
            if not isinstance(delay, int) or not 0 <= delay <= cmd.max_delay:
                raise Rejected("invalid", (
                    f"The Delay TTL for a message may not exceed {cmd.max_delay} seconds,and "
                    "must be at least 0 seconds long."))
        delays.append(delay)
    default_ttl = qmeta.get("_default_message_ttl") or cmd.default_ttl
    quotas.check_messages(q, cmd)
    quotas.check_new_queue(tx, ctx, cmd)
    if q is None:  # read above, and nothing since has written it: not read again
        q = ensure_queue(tx, ctx, cmd.project, cmd.queue)
    rows = [(m.id, m.body, m.ttl if m.ttl is not None else default_ttl, delay)
            for m, delay in zip(cmd.messages, delays, strict=True)]
    append_messages(tx, ctx, meta, cmd.project, cmd.queue, q, rows, client_id=cmd.client_id)
    posted = [(message_id, body, ttl) for message_id, body, ttl, _ in rows]
    put_queue(tx, ctx, cmd.project, cmd.queue, q)
    if ctx.rules >= versions.NOTIFY and cmd.deliver:  # ``deliver``: the stamped setting
        delivery.on_post(tx, ctx.partition, ctx.now, cmd.project, cmd.queue, posted,
                         require_confirmation=cmd.require_confirmation, rules=ctx.rules,
                         offset=ctx.offset)
    return {"ids": [m.id for m in cmd.messages]}


def delete_message(tx: Overlay, cmd: DeleteMessage, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {}
    found = find_message(tx, ctx, cmd.project, cmd.queue, q, cmd.message_id)
    if found is None:
        return {}
    seq, msg = found
    live = bool(msg["k"]) and msg["ke"] > ctx.now
    claim = None
    if cmd.claim_id is None:
        if live:
            raise Rejected("claimed", CLAIMED)
    else:
        claim = get_claim(tx, ctx, cmd.project, cmd.queue, q, cmd.claim_id)
        if claim is None or claim["e"] <= ctx.now:
            raise Rejected("bad_claim", "The specified claim does not exist or has expired.")
        if not live:
            raise Rejected("not_claimed", "A claim was specified, but the message is not "
                                          "currently claimed.")
        if msg["k"] != cmd.claim_id:
            raise Rejected("claimed", CLAIMED)
    # ``claim``, when given, is the message's own (checked above): not read a second time.
    remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg, claim=claim)
    put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"deleted": True}


def delete_messages(tx: Overlay, cmd: DeleteMessages, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {}
    deleted = 0
    for message_id in cmd.message_ids:
        found = find_message(tx, ctx, cmd.project, cmd.queue, q, message_id)
        if found is not None:
            remove_message(tx, ctx, cmd.project, cmd.queue, q, *found)
            deleted += 1
    if deleted:
        put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"deleted": deleted}


def pop(tx: Overlay, cmd: PopMessages, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {"messages": []}
    taken = take_free(tx, ctx, cmd.project, cmd.queue, q, cmd.count)
    for seq, msg in taken:
        remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg)
    put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"messages": [for_outcome(msg) for _, msg in taken]}
