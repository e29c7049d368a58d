"""Subscription rules: create (unique by subscriber URI), update, delete, confirm.

Subscriptions are keyed by project and queue name, not incarnation: like upstream, they
outlive a queue's deletion.
"""

from __future__ import annotations

from typing import Any

from projections import delivery
from projections import keys as K
from projections.commands import (
    ConfirmSubscription,
    CreateSubscription,
    DeleteSubscription,
    UpdateSubscription,
)
from projections.overlay import Overlay
from projections.rules import quotas, versions
from projections.rules.state import Context, Outcome, Rejected, dumps, ensure_queue, loads
from projections.store import View


def sub_key(ctx: Context, project: str, name: str, sub_id: str) -> bytes:
    return K.sub_scope(ctx.partition, K.SUB, project, name) + sub_id.encode()


def uri_key(ctx: Context, project: str, name: str, subscriber: str) -> bytes:
    return K.sub_scope(ctx.partition, K.SUBURI, project, name) + subscriber.encode()


def sub_expiry_key(ctx: Context, project: str, name: str, sub: dict[str, Any]) -> bytes:
    return (K.kind_prefix(ctx.partition, K.PSUBEXP) + K.u64(sub["e"]) + K.lp(project)
            + K.lp(name) + sub["id"].encode())


def get_subscription(view: View, partition: int, project: str, name: str, sub_id: str,
                     now: int) -> dict[str, Any] | None:
    raw = view.get(K.sub_scope(partition, K.SUB, project, name) + sub_id.encode())
    if raw is None:
        return None
    sub = loads(raw)
    return sub if sub["e"] > now else None


def put_subscription(tx: Overlay, ctx: Context, project: str, name: str,
                      sub: dict[str, Any]) -> None:
    tx.put(sub_key(ctx, project, name, sub["id"]), dumps(sub))
    tx.put(uri_key(ctx, project, name, sub["subscriber"]), sub["id"].encode())
    tx.put(sub_expiry_key(ctx, project, name, sub), b"")


def remove_subscription(tx: Overlay, ctx: Context, project: str, name: str,
                         sub: dict[str, Any]) -> None:
    tx.delete(sub_key(ctx, project, name, sub["id"]))
    by_uri = uri_key(ctx, project, name, sub["subscriber"])
    if tx.get(by_uri) == sub["id"].encode():
        tx.delete(by_uri)
    tx.delete(sub_expiry_key(ctx, project, name, sub))


def create_subscription(tx: Overlay, cmd: CreateSubscription, ctx: Context,
                         meta: dict) -> Outcome:
    existing_id = tx.get(uri_key(ctx, cmd.project, cmd.queue, cmd.subscriber))
    if existing_id is not None:
        existing = get_subscription(tx, ctx.partition, cmd.project, cmd.queue,
                                    existing_id.decode(), ctx.now)
        if existing is not None:
            if existing["confirmed"]:
                raise Rejected("conflict", "Such subscription already exists.Subscriptions are "
                                           "unique by project + queue + subscriber URI.")
            # Re-sent while unconfirmed, like upstream.
            if ctx.rules >= versions.NOTIFY and cmd.require_confirmation:
                delivery.request_confirmation(tx, ctx.partition, ctx.now, cmd.project,
                                              cmd.queue, existing)
            return {"subscription_id": existing["id"], "created": False}
        stale = tx.get(sub_key(ctx, cmd.project, cmd.queue, existing_id.decode()))
        if stale is not None:
            remove_subscription(tx, ctx, cmd.project, cmd.queue, loads(stale))
    if ctx.rules >= versions.FANOUT and cmd.max_subscriptions > 0:
        check_subscription_cap(tx, ctx, cmd.project, cmd.queue, cmd.max_subscriptions)
    quotas.check_new_queue(tx, ctx, cmd)
    ensure_queue(tx, ctx, cmd.project, cmd.queue)
    sub = {"id": cmd.subscription_id, "subscriber": cmd.subscriber, "ttl": cmd.ttl,
           "options": cmd.options, "c": ctx.now, "e": ctx.now + cmd.ttl * 1000,
           "confirmed": False}
    if ctx.rules >= versions.FANOUT:
        sub["o"] = ctx.offset  # which fan-out entries it takes: those posted after it
    put_subscription(tx, ctx, cmd.project, cmd.queue, sub)
    if ctx.rules >= versions.NOTIFY and cmd.require_confirmation:
        delivery.request_confirmation(tx, ctx.partition, ctx.now, cmd.project, cmd.queue, sub)
    return {"subscription_id": sub["id"], "created": True}


def check_subscription_cap(tx: View, ctx: Context, project: str, name: str, cap: int) -> None:
    """Refuse a new subscription past ``cap`` live ones on the queue (rules >= 5).

    Bounded: counts at most ``cap`` live subscriptions (plus expired ones not swept yet).
    """
    prefix = K.sub_scope(ctx.partition, K.SUB, project, name)
    live = 0
    for _, raw in tx.scan(prefix, K.prefix_end(prefix)):
        if loads(raw)["e"] > ctx.now:
            live += 1
            if live >= cap:
                raise Rejected("invalid", (
                    f"A queue may not have more than {cap} subscriptions "
                    "(max_subscriptions_per_queue)."))


def sub_not_found(sub_id: str) -> Rejected:
    return Rejected("not_found", f"Subscription {sub_id} does not exist")


def update_subscription(tx: Overlay, cmd: UpdateSubscription, ctx: Context,
                         meta: dict) -> Outcome:
    sub = get_subscription(tx, ctx.partition, cmd.project, cmd.queue, cmd.subscription_id,
                           ctx.now)
    if sub is None:
        raise sub_not_found(cmd.subscription_id)
    new_subscriber = cmd.changes.get("subscriber", sub["subscriber"])
    if new_subscriber != sub["subscriber"]:
        other = tx.get(uri_key(ctx, cmd.project, cmd.queue, new_subscriber))
        if other is not None and get_subscription(
            tx, ctx.partition, cmd.project, cmd.queue, other.decode(), ctx.now
        ) is not None:
            raise Rejected("conflict", "Such subscription already exists. Subscriptions are "
                                       "unique by project + queue + subscriber URI.")
    remove_subscription(tx, ctx, cmd.project, cmd.queue, sub)
    sub["subscriber"] = new_subscriber
    if "options" in cmd.changes:
        sub["options"] = cmd.changes["options"]
    if "ttl" in cmd.changes:
        sub["ttl"] = cmd.changes["ttl"]
        sub["e"] = ctx.now + sub["ttl"] * 1000
    put_subscription(tx, ctx, cmd.project, cmd.queue, sub)
    return {}


def delete_subscription(tx: Overlay, cmd: DeleteSubscription, ctx: Context,
                         meta: dict) -> Outcome:
    raw = tx.get(sub_key(ctx, cmd.project, cmd.queue, cmd.subscription_id))
    if raw is not None:
        remove_subscription(tx, ctx, cmd.project, cmd.queue, loads(raw))
    return {}


def confirm_subscription(tx: Overlay, cmd: ConfirmSubscription, ctx: Context,
                          meta: dict) -> Outcome:
    sub = get_subscription(tx, ctx.partition, cmd.project, cmd.queue, cmd.subscription_id,
                           ctx.now)
    if sub is None:
        raise sub_not_found(cmd.subscription_id)
    if ctx.rules >= versions.FANOUT and cmd.confirmed and not sub["confirmed"]:
        sub["co"] = ctx.offset  # fan-out entries from here on reach it
    sub["confirmed"] = cmd.confirmed
    tx.put(sub_key(ctx, cmd.project, cmd.queue, sub["id"]), dumps(sub))
    if ctx.rules >= versions.NOTIFY and cmd.require_confirmation and not cmd.confirmed:
        delivery.request_confirmation(tx, ctx.partition, ctx.now, cmd.project, cmd.queue, sub,
                                      unsubscribe=True)
    return {}
