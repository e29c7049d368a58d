"""Queue rules: create, metadata PATCH, delete (O(1), collected by upkeep), purge."""

from __future__ import annotations

from projections import keys as K
from projections.commands import CreateQueue, DeleteQueue, PurgeQueue, UpdateQueue
from projections.metadata import RESERVED, Limits, validate
from projections.overlay import Overlay
from projections.rules import quotas
from projections.rules.index import remove_message, take_free
from projections.rules.state import (
    Context,
    Outcome,
    Rejected,
    ensure_queue,
    get_queue,
    loads,
    put_queue,
)
from projections.rules.subscriptions import remove_subscription


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
    tx.put(K.scope(ctx.partition, K.GARBAGE, cmd.project, cmd.queue, q["inc"]), b"")
    return {"deleted": True}


def purge(tx: Overlay, cmd: PurgeQueue, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    purged = 0
    if q is not None and "messages" in cmd.resource_types:
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
