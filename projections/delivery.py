"""Notification deliveries are state; attempts are commands (DESIGN.md §9).

Under rules ``NOTIFY`` (version 3, ``projections.rules.versions``), when a post stamped
``deliver`` applies, one pending delivery is recorded per (message, live
subscription of the queue at that log position) — subscriptions are read in id order, so a
replay recomputes exactly the same set. The owner of the partition sends what is due and
appends a ``DeliveryReport``; applying it clears a delivery, or reschedules a failed one at
``now + next_delay`` from Zaqar's retry policy (``projections.retry``) at the report's log
time, or gives it up. Nothing here does I/O: the senders are injected into the runner.

From rules ``FANOUT`` (version 5) the post no longer fans out itself: it records one fan-out
entry — its messages, once — keyed by its offset, and the owner's ``FanOut`` commands expand
the oldest entries into the pending deliveries above, at most ``max_count`` per command, for
the subscriptions that existed at the post's position (created at a smaller offset, and when
confirmation is required confirmed at one). So a post costs the same with 0 or 1000
subscriptions, and no command's work grows with them (DESIGN §7).

Keys (``projections.keys``): a delivery record (due time, failures, kind) under
``(project, queue, subscription, item)``, an index by due time that the owner scans from a
floor kept in state (never from the head: the index is consumed from the head), the posted
message once per message with a refcount (100 subscriptions do not copy a body 100 times),
and per-subscription counters that the subscription GET shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson

from projections import keys as K
from projections import retry
from projections.commands import DeliveryReport
from projections.overlay import Overlay
from projections.rules import versions
from projections.store import View

CONFIRM = "~confirm"  # item of a SubscriptionConfirmation
UNSUBSCRIBE = "~unsubscribe"  # item of an UnsubscribeConfirmation
NOTIFY, CONFIRMATION, UNSUBSCRIBED = "n", "c", "u"
CONFIRMABLE = ("http", "https", "mailto")
OUTCOMES = ("delivered", "failed", "refused", "cancelled")
ERROR_TEXT_MAX = 300  # a receiver's error text kept in stats (bounded record size)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _tail(project: str, queue: str, sub_id: str, item: str) -> bytes:
    return K.lp(project) + K.lp(queue) + K.lp(sub_id) + item.encode()


def delivery_key(partition: int, project: str, queue: str, sub_id: str, item: str) -> bytes:
    return K.kind_prefix(partition, K.DELIVERY) + _tail(project, queue, sub_id, item)


def due_key(partition: int, due: int, project: str, queue: str, sub_id: str,
            item: str) -> bytes:
    return K.kind_prefix(partition, K.DELIVERY_DUE) + K.u64(due) + _tail(project, queue,
                                                                         sub_id, item)


def body_key(partition: int, project: str, queue: str, message_id: str) -> bytes:
    return K.kind_prefix(partition, K.DELIVERY_BODY) + K.lp(project) + K.lp(queue) + \
        message_id.encode()


def refs_key(partition: int, project: str, queue: str, message_id: str) -> bytes:
    return K.kind_prefix(partition, K.DELIVERY_REFS) + K.lp(project) + K.lp(queue) + \
        message_id.encode()


def stats_key(partition: int, project: str, queue: str, sub_id: str) -> bytes:
    return K.kind_prefix(partition, K.DELIVERY_STATS) + K.lp(project) + K.lp(queue) + \
        sub_id.encode()


def floor_key(partition: int) -> bytes:
    return K.kind_prefix(partition, K.DELIVERY_FLOOR)


def fanout_key(partition: int, offset: int) -> bytes:
    return K.kind_prefix(partition, K.FANOUT) + K.u64(offset)


def fanout_floor_key(partition: int) -> bytes:
    return K.kind_prefix(partition, K.FANOUT_FLOOR)


def _scheme(subscriber: str) -> str:
    return subscriber.split(":", 1)[0].lower() if ":" in subscriber else ""


# -- apply side ---------------------------------------------------------------------------


def _stats(tx: View, partition: int, project: str, queue: str, sub_id: str) -> dict[str, Any]:
    raw = tx.get(stats_key(partition, project, queue, sub_id))
    if raw is None:
        return {"delivered": 0, "failed": 0, "given_up": 0, "pending": 0, "last_error": None,
                "last_status": None}
    return orjson.loads(raw)


def _schedule(tx: Overlay, partition: int, project: str, queue: str, sub_id: str, item: str,
              record: dict[str, Any]) -> None:
    tx.put(delivery_key(partition, project, queue, sub_id, item), _dumps(record))
    tx.put(due_key(partition, record["due"], project, queue, sub_id, item), b"")


def live_subscriptions(tx: View, partition: int, project: str, queue: str,
                       now: int) -> list[dict[str, Any]]:
    """The queue's subscriptions alive at ``now``, in id order (deterministic)."""
    prefix = K.sub_scope(partition, K.SUB, project, queue)
    return [sub for sub in (orjson.loads(raw) for _, raw in
                            tx.scan(prefix, K.prefix_end(prefix))) if sub["e"] > now]


def on_post(tx: Overlay, partition: int, now: int, project: str, queue: str,
            messages: Iterable[tuple[str, Any, int]], *, require_confirmation: bool,
            rules: int = versions.NOTIFY, offset: int = 0) -> int:
    """Hand a post's messages to delivery; returns the deliveries recorded now.

    Rules >= FANOUT: one fan-out entry if the queue has any subscription (one bounded seek),
    expanded later by ``fan_out``. Before: a pending delivery per (message, subscription).
    """
    if rules >= versions.FANOUT:
        record_fanout(tx, partition, now, offset, project, queue, messages,
                      require_confirmation=require_confirmation)
        return 0
    subs = [s for s in live_subscriptions(tx, partition, project, queue, now)
            if s["confirmed"] or not require_confirmation]
    if not subs:
        return 0
    count = 0
    posted = list(messages)
    for message_id, body, ttl in posted:
        tx.put(body_key(partition, project, queue, message_id),
               _dumps({"body": body, "ttl": ttl}))
        tx.put(refs_key(partition, project, queue, message_id), K.u64(len(subs)))
        for sub in subs:
            _schedule(tx, partition, project, queue, sub["id"], message_id,
                      {"due": now, "n": 0, "k": NOTIFY})
            count += 1
    for sub in subs:
        stats = _stats(tx, partition, project, queue, sub["id"])
        stats["pending"] += len(posted)
        tx.put(stats_key(partition, project, queue, sub["id"]), _dumps(stats))
    return count


def _has_subscriptions(tx: Overlay, partition: int, project: str, queue: str) -> bool:
    """One bounded seek, answered from the batch's memory of the base while the batch has
    written no subscription (``Overlay.has_any``)."""
    prefix = K.sub_scope(partition, K.SUB, project, queue)
    return tx.has_any(prefix, K.prefix_end(prefix))


def record_fanout(tx: Overlay, partition: int, now: int, offset: int, project: str,
                  queue: str, messages: Iterable[tuple[str, Any, int]], *,
                  require_confirmation: bool) -> bool:
    """One fan-out entry for the post at ``offset`` (nothing per subscription)."""
    if not _has_subscriptions(tx, partition, project, queue):
        return False
    tx.put(fanout_key(partition, offset), _dumps({
        "p": project, "q": queue, "t": now, "rc": require_confirmation, "after": None,
        "m": [[message_id, body, ttl] for message_id, body, ttl in messages]}))
    return True


def _existed_at(sub: dict[str, Any], offset: int, when: int, confirmed: bool) -> bool:
    """Whether ``sub`` wanted a post at log position ``offset`` (time ``when``)."""
    if sub.get("o", -1) >= offset or sub["e"] <= when:
        return False  # created after the post (subscriptions before rules 5 have no "o")
    return not confirmed or (sub["confirmed"] and sub.get("co", -1) < offset)


def fan_out(tx: Overlay, cmd: Any, ctx: Any, meta: dict[str, Any]) -> dict[str, int]:
    """The ``FanOut`` handler: expand the oldest fan-out entries, at most ``cmd.max_count``
    units of work — a pending delivery made or a subscription examined is one — and whole
    subscriptions per entry (a slice ends after the subscription that reaches the count, so
    it is bounded by the count plus one post's messages). An entry keeps the last
    subscription id examined; the floor keeps the entry key to start at, so no FanOut scans
    what earlier ones consumed."""
    if ctx.rules < versions.FANOUT:
        return {"deliveries": 0, "entries": 0}
    partition = ctx.partition
    budget = max(int(cmd.max_count), 1)
    prefix = K.kind_prefix(partition, K.FANOUT)
    start = tx.get(fanout_floor_key(partition)) or prefix
    made = used = entries = 0
    floor: bytes | None = None
    for key, raw in islice(tx.scan(start, K.prefix_end(prefix)), budget):
        entry = orjson.loads(raw)
        (offset,) = K.U64.unpack_from(key, len(prefix))
        rows, examined = _expand(tx, partition, ctx.now, offset, entry, budget - used)
        made += rows
        used += rows + examined + 1  # the entry itself is a unit too
        if entry["after"] is not None:  # this entry goes on in the next FanOut
            tx.put(key, _dumps(entry))
            floor = key
            break
        tx.delete(key)
        entries += 1
        floor = key + b"\x00"
        if used >= budget:
            break
    if floor is not None:
        tx.put(fanout_floor_key(partition), floor)
    return {"deliveries": made, "entries": entries}


def _expand(tx: Overlay, partition: int, now: int, offset: int, entry: dict[str, Any],
            budget: int) -> tuple[int, int]:
    """Pending deliveries of one entry for its next subscriptions: (made, subscriptions
    examined). Sets ``entry["after"]`` to the last subscription examined when the budget ran
    out before the queue's subscriptions did, else to None (the entry is finished)."""
    project, queue, posted = entry["p"], entry["q"], entry["m"]
    prefix = K.sub_scope(partition, K.SUB, project, queue)
    start = prefix if entry["after"] is None else prefix + entry["after"].encode() + b"\x00"
    made = examined = 0
    chosen: list[str] = []
    last: str | None = None
    entry["after"] = None
    for _, raw in tx.scan(start, K.prefix_end(prefix)):
        if made + examined >= budget and last is not None:
            entry["after"] = last
            break
        sub = orjson.loads(raw)
        examined += 1
        last = sub["id"]
        if not _existed_at(sub, offset, entry["t"], entry["rc"]):
            continue
        for message_id, _, _ in posted:
            _schedule(tx, partition, project, queue, sub["id"], message_id,
                      {"due": now, "n": 0, "k": NOTIFY})
        made += len(posted)
        chosen.append(sub["id"])
        stats = _stats(tx, partition, project, queue, sub["id"])
        stats["pending"] += len(posted)
        tx.put(stats_key(partition, project, queue, sub["id"]), _dumps(stats))
    if chosen:
        for message_id, body, ttl in posted:  # once per message, shared by the slice's rows
            rkey = refs_key(partition, project, queue, message_id)
            raw_refs = tx.get(rkey)
            refs = K.U64.unpack(raw_refs)[0] if raw_refs is not None else 0
            if raw_refs is None:
                tx.put(body_key(partition, project, queue, message_id),
                       _dumps({"body": body, "ttl": ttl}))
            tx.put(rkey, K.u64(refs + len(chosen)))
    return made, examined


def fanout_pending(view: View, partition: int) -> bool:
    """Whether a fan-out entry waits (one bounded seek from the floor)."""
    prefix = K.kind_prefix(partition, K.FANOUT)
    start = view.get(fanout_floor_key(partition)) or prefix
    return next(iter(view.scan(start, K.prefix_end(prefix))), None) is not None


def request_confirmation(tx: Overlay, partition: int, now: int, project: str, queue: str,
                         sub: dict[str, Any], *, unsubscribe: bool = False) -> bool:
    """Queue a (Un)SubscriptionConfirmation for ``sub`` unless one is pending already."""
    if _scheme(sub["subscriber"]) not in CONFIRMABLE:
        return False
    item, kind = (UNSUBSCRIBE, UNSUBSCRIBED) if unsubscribe else (CONFIRM, CONFIRMATION)
    if tx.get(delivery_key(partition, project, queue, sub["id"], item)) is not None:
        return False
    _schedule(tx, partition, project, queue, sub["id"], item, {"due": now, "n": 0, "k": kind})
    stats = _stats(tx, partition, project, queue, sub["id"])
    stats["pending"] += 1
    tx.put(stats_key(partition, project, queue, sub["id"]), _dumps(stats))
    return True


def _raw_subscription(tx: View, partition: int, project: str, queue: str,
                      sub_id: str) -> dict[str, Any] | None:
    raw = tx.get(K.sub_scope(partition, K.SUB, project, queue) + sub_id.encode())
    return None if raw is None else orjson.loads(raw)


def _queue_policy(tx: View, partition: int, project: str, queue: str) -> Any:
    raw = tx.get(K.queue(partition, project, queue))
    return None if raw is None else orjson.loads(raw)["meta"].get("_retry_policy")


def report(tx: Overlay, cmd: DeliveryReport, ctx: Any, meta: dict[str, Any]) -> dict[str, int]:
    """The ``DeliveryReport`` handler (registered in ``projections.apply.HANDLERS``).

    Before rules ``NOTIFY`` a partition holds no deliveries, so a report changes nothing.
    """
    if ctx.rules < versions.NOTIFY:
        return dict.fromkeys(("delivered", "retry", "given_up", "unknown"), 0)
    return apply_report(tx, ctx.partition, ctx.now, cmd.project, cmd.queue, cmd.results,
                        cmd.floor_ms)


def apply_report(tx: Overlay, partition: int, now: int, project: str, queue: str,
                 results: list[dict[str, Any]], floor_ms: int) -> dict[str, int]:
    """Fold one report: clear, reschedule or give up each delivery it names."""
    counts = dict.fromkeys(("delivered", "retry", "given_up", "unknown"), 0)
    policy = None
    policy_read = False
    touched: dict[str, dict[str, Any]] = {}
    for result in results:
        sub_id, item, outcome = str(result["s"]), str(result["i"]), result["r"]
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown delivery outcome {outcome!r}")
        key = delivery_key(partition, project, queue, sub_id, item)
        raw = tx.get(key)
        if raw is None:
            counts["unknown"] += 1  # a second performer reported it first: harmless
            continue
        record = orjson.loads(raw)
        tx.delete(due_key(partition, record["due"], project, queue, sub_id, item))
        stats = touched.get(sub_id) or _stats(tx, partition, project, queue, sub_id)
        touched[sub_id] = stats
        if outcome == "delivered":
            stats["delivered"] += 1
            counts["delivered"] += 1
        elif outcome in ("failed", "refused"):
            stats["failed"] += 1
            stats["last_error"] = str(result.get("error") or "")[:ERROR_TEXT_MAX]
            status = result.get("status")
            stats["last_status"] = status if isinstance(status, int) else None
            record["n"] += 1
            sub = _raw_subscription(tx, partition, project, queue, sub_id)
            delay = None
            if outcome == "failed" and sub is not None and sub["e"] > now:
                if not policy_read:
                    policy, policy_read = _queue_policy(tx, partition, project, queue), True
                chosen = retry.effective_policy(sub["options"].get("_retry_policy"), policy)
                delay = retry.next_delay(chosen, record["n"])
            if delay is not None:
                record["due"] = now + delay * 1000
                _schedule(tx, partition, project, queue, sub_id, item, record)
                counts["retry"] += 1
                continue
            stats["given_up"] += 1
            counts["given_up"] += 1
        else:  # cancelled: the subscription went away or stopped wanting it
            stats.setdefault("cancelled", 0)
            stats["cancelled"] += 1
        _finish(tx, partition, project, queue, sub_id, item, record, stats)
    for sub_id, stats in touched.items():
        key = stats_key(partition, project, queue, sub_id)
        if stats["pending"] <= 0 and _raw_subscription(tx, partition, project, queue,
                                                       sub_id) is None:
            tx.delete(key)  # nothing left to show for a subscription that is gone
        else:
            tx.put(key, _dumps(stats))
    tx.put(floor_key(partition), K.u64(max(floor_ms, 0)))
    return counts


def _finish(tx: Overlay, partition: int, project: str, queue: str, sub_id: str, item: str,
            record: dict[str, Any], stats: dict[str, Any]) -> None:
    tx.delete(delivery_key(partition, project, queue, sub_id, item))
    stats["pending"] -= 1
    if record["k"] != NOTIFY:
        return
    rkey = refs_key(partition, project, queue, item)
    raw = tx.get(rkey)
    left = (K.U64.unpack(raw)[0] if raw is not None else 1) - 1
    if left > 0:
        tx.put(rkey, K.u64(left))
    else:
        tx.delete(rkey)
        tx.delete(body_key(partition, project, queue, item))


# -- query side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """A delivery that is due, with what the sender needs to make the attempt."""

    partition: int
    project: str
    queue: str
    subscription_id: str
    item: str
    kind: str  # NOTIFY, CONFIRMATION or UNSUBSCRIBED
    due: int  # ms
    failures: int
    subscription: dict[str, Any] | None  # None: gone (the sender reports "cancelled")
    message: dict[str, Any] | None  # {"body", "ttl"} of a notification
    index_key: bytes = b""  # its key in the due index (the scan cursor)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.project, self.queue, self.subscription_id, self.item)


def floor(view: View, partition: int) -> int:
    raw = view.get(floor_key(partition))
    return 0 if raw is None else K.U64.unpack(raw)[0]


def due_start(partition: int, ms: int) -> bytes:
    """The first index key due at ``ms`` (a scan cursor)."""
    return K.kind_prefix(partition, K.DELIVERY_DUE) + K.u64(ms)


def due_time(partition: int, index_key: bytes) -> int:
    return K.U64.unpack_from(index_key, len(K.kind_prefix(partition, K.DELIVERY_DUE)))[0]


def first_due_insert(partition: int, changes: dict[bytes, bytes | None]) -> bytes | None:
    """The smallest due-index key a batch of changes adds (the runner tells the duty)."""
    first: bytes | None = None
    for key, value in changes.items():
        if value is not None and len(key) > 2 and key[2] == K.DELIVERY_DUE and (
                first is None or key < first):
            first = key
    return first


def fanout_inserted(changes: dict[bytes, bytes | None]) -> bool:
    """Whether a batch of changes adds a fan-out entry (the runner tells the duty)."""
    return any(value is not None and len(key) > 2 and key[2] == K.FANOUT
               for key, value in changes.items())


def due(view: View, partition: int, start: bytes, until_ms: int, limit: int,
        now: int) -> list[Pending]:
    """Up to ``limit`` deliveries from index key ``start`` on, due at or before ``until_ms``.

    Bounded: the scan starts at the caller's cursor and stops after ``limit`` keys.
    """
    prefix = K.kind_prefix(partition, K.DELIVERY_DUE)
    out: list[Pending] = []
    for key, _ in islice(view.scan(start, prefix + K.u64(until_ms + 1)), limit):
        (when,) = K.U64.unpack_from(key, len(prefix))
        pos = len(prefix) + 8
        project, pos = K.read_lp(key, pos)
        queue, pos = K.read_lp(key, pos)
        sub_id, pos = K.read_lp(key, pos)
        item = key[pos:].decode()
        raw = view.get(delivery_key(partition, project, queue, sub_id, item))
        if raw is None:
            continue
        record = orjson.loads(raw)
        sub = _raw_subscription(view, partition, project, queue, sub_id)
        if sub is not None and sub["e"] <= now:
            sub = None
        message = None
        if record["k"] == NOTIFY:
            body = view.get(body_key(partition, project, queue, item))
            message = None if body is None else orjson.loads(body)
        out.append(Pending(partition, project, queue, sub_id, item, record["k"], when,
                           record["n"], sub, message, key))
    return out


def subscription_stats(view: View, partition: int, project: str, queue: str,
                       sub_id: str) -> dict[str, Any] | None:
    raw = view.get(stats_key(partition, project, queue, sub_id))
    return None if raw is None else orjson.loads(raw)


def pending_count(view: View, partition: int) -> int:
    """Every pending delivery of a partition (for tests and operators: a full scan)."""
    prefix = K.kind_prefix(partition, K.DELIVERY)
    return sum(1 for _ in view.scan(prefix, K.prefix_end(prefix)))
