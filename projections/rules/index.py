"""The message and claim indexes, kept right together: free list, expiry, claim lists.

Messages and claims point at each other (a claim lists its messages, a message names its
claim), so the primitives that keep both consistent live here, below both resource modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from projections import keys as K
from projections.overlay import Overlay
from projections.rules.state import (
    MAX_SECONDS,
    Context,
    claim_expiry_keys,
    claim_key,
    dumps,
    expiry_keys,
    get_claim,
    loads,
    msg_key,
    scope,
)
from projections.rules.versions import BOUNDED, LEAN_EXPIRY, LIVE_STATS
from projections.store import View

INLINE_EXPIRY = 100  # rules >= 2: at most this many expired messages or claims per command
HEAD_SPAN = 1024  # rules >= 6: seqs the live head may step over per command (keys of a scope)
BLOCK_BITS = 10  # rules >= 6: seqs in blocks of 1024, each with an expiry bound (``QSEQB``)
BOUND_BITS = 12  # a block's bound is rounded up to 4.1 s: rewritten at most that often


def tracked(ctx: Context, q: dict[str, Any]) -> bool:
    """Whether the queue keeps its stats counters (rules >= 6, ``versions.LIVE_STATS``)."""
    return ctx.rules >= LIVE_STATS and bool(q.get("b"))


def lean(ctx: Context, q: dict[str, Any]) -> bool:
    """Rules >= 8 (``versions.LEAN_EXPIRY``): a message posted to this queue now gets no
    per-queue expiry entry (``QEXP``), since the queue keeps counters and only a queue
    without them reads those entries."""
    return ctx.rules >= LEAN_EXPIRY and tracked(ctx, q)


def expiry_entries(ctx: Context, project: str, name: str, q: dict[str, Any], expires: int,
                   seq: int, *, present: bool) -> tuple[bytes, ...]:
    """The expiry index entries of message ``seq``: ``expiry_keys``, less the per-queue one
    where a lean queue has none. ``present``: the entries it may have now (to delete: a
    message from before the switch, ``ctx.lean_from``, has one), else the entries to write."""
    per_queue, partition_wide = expiry_keys(ctx, project, name, q["inc"], expires, seq)
    if lean(ctx, q) and not (present and seq < ctx.lean_from):
        return (partition_wide,)
    return per_queue, partition_wide


def count_expiry(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                 expires: int, delta: int) -> None:
    """One message more (or fewer) expiring at ``expires``, for stats' expired-unswept count."""
    if tracked(ctx, q):
        ctx.tally.add(tx, scope(ctx, K.QEXB, project, name, q), expires, delta)


def count_held(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
               expires: int, delta: int) -> None:
    """``delta`` more messages held by claims expiring at ``expires``: ``q["ch"]`` is their
    total over every claim present, expired or not, so stats answer without a claim scan."""
    if tracked(ctx, q) and delta:
        q["ch"] += delta
        ctx.tally.add(tx, scope(ctx, K.QCLB, project, name, q), expires, delta)


def track(ctx: Context, q: dict[str, Any]) -> None:
    """Start the counters of a queue known to hold no message (so no claim holds one)."""
    if ctx.rules >= LIVE_STATS and not q.get("b"):
        q["b"] = 1
        q["ch"] = 0


def raise_bound(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                seq: int, expires: int) -> None:
    """No message of a block of seqs expires at or after the block's bound, so the oldest
    and newest lookups skip a block whose bound has passed, however much it holds that has
    expired but is not swept (an upper bound: a message leaving never lowers it)."""
    if not tracked(ctx, q):
        return
    key = scope(ctx, K.QSEQB, project, name, q) + K.u64(seq >> BLOCK_BITS)
    bound = ((expires >> BOUND_BITS) + 1) << BOUND_BITS
    raw = tx.get(key)
    if raw is None or K.U64.unpack(raw)[0] < bound:
        tx.put(key, K.u64(bound))


def drop_bounds(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                old_head: int, new_head: int) -> None:
    """The bounds of blocks wholly below the head (they hold no message) go with it."""
    prefix = scope(ctx, K.QSEQB, project, name, q)
    lo, hi = old_head >> BLOCK_BITS, new_head >> BLOCK_BITS
    if lo < hi:
        for key, _ in list(tx.scan(prefix + K.u64(lo), prefix + K.u64(hi))):
            tx.delete(key)


def advance_head(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                 removed: int) -> None:
    """Keep ``q["h"]`` below every present message and close to the first: after the head
    (or anything, while it lags) is removed, look for the next present seq at most HEAD_SPAN
    seqs on; not found, the head moves by the span and lags (``hl``) until found later."""
    head = q["h"]
    if q["count"] <= 0 or (removed != head and not q.get("hl")):
        return
    start = head + 1 if removed == head else head
    prefix = scope(ctx, K.MSG, project, name, q)
    # A post's messages have consecutive seqs, so the next one is most often there: a point
    # read finds what the scan would find first, without opening an iterator (issue 15).
    nearest = prefix + K.u64(start)
    found: bytes | None = nearest
    if tx.get(nearest) is None:
        first = next(iter(tx.scan(nearest, prefix + K.u64(start + HEAD_SPAN))), None)
        found = None if first is None else first[0]
    if found is None:
        q["h"] = start + HEAD_SPAN
        q["hl"] = 1
    else:
        q["h"] = K.U64.unpack_from(found, len(prefix))[0]
        q.pop("hl", None)
    drop_bounds(tx, ctx, project, name, q, head, q["h"])


def put_message(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                 seq: int, msg: dict[str, Any], *, index: bool) -> None:
    tx.put(msg_key(ctx, project, name, q, seq), dumps(msg))
    if index:
        for key in expiry_entries(ctx, project, name, q, msg["e"], seq, present=False):
            tx.put(key, b"")
        count_expiry(tx, ctx, project, name, q, msg["e"], 1)
        raise_bound(tx, ctx, project, name, q, seq, msg["e"])


def set_expiry(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any], seq: int,
                msg: dict[str, Any], expires: int) -> None:
    for key in expiry_entries(ctx, project, name, q, msg["e"], seq, present=True):
        tx.delete(key)
    count_expiry(tx, ctx, project, name, q, msg["e"], -1)
    msg["e"] = expires
    for key in expiry_entries(ctx, project, name, q, expires, seq, present=False):
        tx.put(key, b"")
    count_expiry(tx, ctx, project, name, q, expires, 1)
    raise_bound(tx, ctx, project, name, q, seq, expires)


def find_message(tx: View, ctx: Context, project: str, name: str, q: dict[str, Any],
                  message_id: str) -> tuple[int, dict[str, Any]] | None:
    raw = tx.get(scope(ctx, K.MSGID, project, name, q) + message_id.encode())
    if raw is None:
        return None
    seq = K.U64.unpack(raw)[0]
    body = tx.get(msg_key(ctx, project, name, q, seq))
    return None if body is None else (seq, loads(body))


def remove_message(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                    seq: int, msg: dict[str, Any], *, detach_claim: bool = True,
                    claim: dict[str, Any] | None = None) -> None:
    """Delete a message with every index entry; keeps the queue count and claim list right.

    ``claim``: the message's claim (``msg["k"]``) if the caller has just read it, so it is
    not read again."""
    tx.delete(msg_key(ctx, project, name, q, seq))
    tx.delete(scope(ctx, K.MSGID, project, name, q) + msg["id"].encode())
    tx.delete(scope(ctx, K.FREE, project, name, q) + K.u64(seq))
    if ctx.rules >= BOUNDED and msg["d"]:
        tx.delete(delayed_key(ctx, project, name, q, msg["d"], seq))
    for key in expiry_entries(ctx, project, name, q, msg["e"], seq, present=True):
        tx.delete(key)
    count_expiry(tx, ctx, project, name, q, msg["e"], -1)
    q["count"] -= 1
    if ctx.rules >= LIVE_STATS and "h" in q:
        advance_head(tx, ctx, project, name, q, seq)
    if detach_claim and msg.get("k"):
        key = claim_key(ctx, project, name, q, msg["k"])
        if claim is None:
            raw = tx.get(key)
            claim = None if raw is None else loads(raw)
        if claim is not None and seq in claim["m"]:
            claim["m"].remove(seq)
            tx.put(key, dumps(claim))
            per_queue, _ = claim_expiry_keys(ctx, project, name, q["inc"], claim["e"],
                                             claim["id"])
            tx.put(per_queue, K.u64(len(claim["m"])))
            count_held(tx, ctx, project, name, q, claim["e"], -1)


def for_outcome(msg: dict[str, Any]) -> dict[str, Any]:
    """What an outcome keeps of a message: enough to render it later."""
    return {"id": msg["id"], "body": msg["body"], "ttl": msg["ttl"], "c": msg["c"]}


def append_message(tx: Overlay, ctx: Context, meta: dict[str, Any], project: str, name: str,
                    q: dict[str, Any], *, message_id: str, body: Any, ttl: int, client_id: str,
                    delay: int = 0) -> None:
    """A new message at the tail of the queue: the next sequence of the partition, free."""
    append_messages(tx, ctx, meta, project, name, q, [(message_id, body, ttl, delay)],
                    client_id=client_id)


def append_messages(tx: Overlay, ctx: Context, meta: dict[str, Any], project: str, name: str,
                    q: dict[str, Any], messages: Iterable[tuple[str, Any, int, int]], *,
                    client_id: str) -> None:
    """New messages ``(id, body, ttl, delay)`` at the tail of the queue, in order: the next
    sequences of the partition, free (or delayed).

    The keys and values are those of appending the messages one at a time; what a post of
    ten paid ten times is paid once (issue 15): the queue's key prefixes are built once, the
    expiry-time counts go to the tally once per expiry time (positive changes: the order of
    adding them does not matter), and a seq block's bound is read again only when the block
    or a higher bound comes (no other write touches it within this loop).
    """
    partition, now = ctx.partition, ctx.now
    live_stats, bounded = ctx.rules >= LIVE_STATS, ctx.rules >= BOUNDED
    tail = K.lp(project) + K.lp(name) + K.u64(q["inc"])  # ``K.scope`` after partition, kind
    msg_scope = K.kind_prefix(partition, K.MSG) + tail
    ids_scope = K.kind_prefix(partition, K.MSGID) + tail
    free_scope = K.kind_prefix(partition, K.FREE) + tail
    delayed_scope = K.kind_prefix(partition, K.DELAYED) + tail
    per_queue = K.kind_prefix(partition, K.QEXP) + tail  # ``expiry_keys``, both of them
    partition_wide = K.kind_prefix(partition, K.PEXP)
    bounds_scope = K.kind_prefix(partition, K.QSEQB) + tail
    u64 = K.u64
    staged: list[tuple[bytes, bytes]] = []  # the messages' own keys: one ``put_many`` below
    put = staged.append
    counted: dict[int, int] = {}  # expiry time -> messages expiring then (tracked queue)
    bound_key, bound_floor = b"", 0  # the last block bound seen, and a floor of its value
    for message_id, body, ttl, delay in messages:
        seq = meta["seq"]
        meta["seq"] = seq + 1
        if live_stats and q["count"] <= 0:
            track(ctx, q)  # empty: its counters start here (a queue from before rules 6 too)
            if "h" in q:
                drop_bounds(tx, ctx, project, name, q, q["h"], seq)
                bound_key = b""  # dropped bounds are read again
            q["h"] = seq
            q.pop("hl", None)
        expires = now + ttl * 1000
        msg = {"id": message_id, "body": body, "ttl": ttl, "c": now, "e": expires,
               "cl": client_id, "d": now + delay * 1000 if delay else 0,
               "k": None, "ke": 0, "n": 0}
        put((msg_scope + u64(seq), dumps(msg)))  # ``put_message(..., index=True)``
        if not lean(ctx, q):  # ``expiry_entries``
            put((per_queue + u64(expires) + u64(seq), b""))
        put((partition_wide + u64(expires) + tail + u64(seq), b""))
        if tracked(ctx, q):
            counted[expires] = counted.get(expires, 0) + 1
            # ``raise_bound``: the stored bound of the block is at least ``bound_floor``.
            key = bounds_scope + u64(seq >> BLOCK_BITS)
            bound = ((expires >> BOUND_BITS) + 1) << BOUND_BITS
            if key != bound_key or bound > bound_floor:
                raw = tx.get(key)
                stored = K.U64.unpack(raw)[0] if raw is not None else -1
                if stored < bound:
                    tx.put(key, u64(bound))  # read again above: staged at once
                    stored = bound
                bound_key, bound_floor = key, stored
        put((ids_scope + message_id.encode(), u64(seq)))
        if bounded and delay:
            put((delayed_scope + u64(msg["d"]) + u64(seq), b""))  # free when due
        else:
            put((free_scope + u64(seq), b""))
        q["count"] += 1
    # Nothing in the loop reads these kinds (the bounds it reads are staged at once), so
    # staging them last is staging them as they came.
    tx.put_many(staged)
    if counted:
        qexb = K.kind_prefix(partition, K.QEXB) + tail
        for expires, n in counted.items():
            ctx.tally.add(tx, qexb, expires, n)


def delayed_key(ctx: Context, project: str, name: str, q: dict[str, Any], eligible: int,
                seq: int) -> bytes:
    return scope(ctx, K.DELAYED, project, name, q) + K.u64(eligible) + K.u64(seq)


def cursor(q_or_meta: dict[str, Any], field: str) -> bytes:
    """Where the next scan of a range consumed from its head starts (DESIGN §7): the key
    suffix stored by the last scan, so it never walks the tombstones earlier ones left."""
    return bytes.fromhex(q_or_meta.get(field, ""))


def promote_delayed(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                    budget: int) -> None:
    """Move delayed messages that are due to the free list (at most ``budget``).

    On a queue without a default delay (PATCHed away) every delayed message is free, as it
    is listed and counted: free is free.
    """
    prefix = scope(ctx, K.DELAYED, project, name, q)
    delayed_queue = bool(q["meta"].get("_default_message_delay"))
    due_before = K.u64(ctx.now + 1) if delayed_queue else b"\xff" * 9
    moved = 0
    last = None
    for key, _ in tx.scan(prefix + cursor(q, "dc"), prefix + due_before):
        if moved >= budget:
            break
        seq = K.U64.unpack_from(key, len(prefix) + 8)[0]
        tx.delete(key)
        tx.put(scope(ctx, K.FREE, project, name, q) + K.u64(seq), b"")
        q["fh"] = min(q.get("fh", 0), seq)
        freed(ctx, q, seq)
        moved += 1
        last = key[len(prefix):]
    # What is posted from now on becomes due after now, so a cursor never passes now + 1
    # (a queue without a delay moves messages due later too).
    if moved < budget:
        last = K.u64(ctx.now + 1)
    if last is not None:
        q["dc"] = min(last, K.u64(ctx.now + 1)).hex()


def take_free(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
               limit: int, *, include_delayed: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` of the oldest claimable messages; expired ones met on the way are removed.

    Claims that expired by now are released first, so their messages take their FIFO place.
    """
    expire_claims(tx, ctx, project, name, q)
    bounded = ctx.rules >= BOUNDED
    # Rules >= 2: on a queue without a default delay every message is free, as it is listed
    # and counted (one posted while the queue had a delay too).
    free_is_free = bounded and not q["meta"].get("_default_message_delay")
    if bounded:
        promote_delayed(tx, ctx, project, name, q, limit + INLINE_EXPIRY)
    free_scope = scope(ctx, K.FREE, project, name, q)
    taken: list[tuple[int, dict[str, Any]]] = []
    expired: list[tuple[int, dict[str, Any]]] = []
    # Start at the free-head hint: every free seq is >= it, so the scan never walks over the
    # tombstones that consumed messages leave at the head of the queue.
    head = q.get("fh", 0)
    skipped: int | None = None  # the first delayed message left behind
    for key in (_free_keys(tx, free_scope, q, head) if bounded else
                (k for k, _ in tx.scan(free_scope + K.u64(head), K.prefix_end(free_scope)))):
        if len(taken) >= limit:
            break
        seq = K.U64.unpack_from(key, len(free_scope))[0]
        head = seq + 1
        raw = tx.get(msg_key(ctx, project, name, q, seq))
        if raw is None:
            tx.delete(key)
            continue
        msg = loads(raw)
        if msg["e"] <= ctx.now:
            expired.append((seq, msg))
            if bounded and len(expired) >= INLINE_EXPIRY:
                break  # Sweep removes the rest; a claim does bounded work
        elif include_delayed or msg["d"] <= ctx.now or free_is_free:
            taken.append((seq, msg))
        elif skipped is None:
            skipped = seq
    q["fh"] = head if skipped is None else skipped
    for seq, msg in expired:
        remove_message(tx, ctx, project, name, q, seq, msg)
    return taken


MAX_GAPS = 16


def _free_keys(tx: Overlay, free_scope: bytes, q: dict[str, Any], start: int) -> Iterator[bytes]:
    """Free-list keys from ``start`` in order, jumping over the gaps noted in ``q["gaps"]``
    (runs with no live entry, only the tombstones of consumed messages) and noting new ones.

    A message coming back (claim dropped) far behind the free head would otherwise make the
    next claim walk every tombstone between it and the head, once per return (rules >= 2).

    One scan serves key after key while the gaps leave its range alone: after ``seq`` it
    yields the first key from ``seq + 1`` before its stop, exactly what a fresh scan would
    (issue 15: an iterator per key taken was most of a claim's cost). A new one starts only
    where a gap moves the position or the next gap ahead moves the stop.
    """
    pos = start
    end = K.prefix_end(free_scope)
    scan: Iterator[tuple[bytes, bytes]] | None = None
    scan_at, scan_stop = -1, b""  # where the open scan goes on from, and its stop
    while True:
        gaps = q.get("gaps") or []
        for a, b in gaps:
            if a <= pos < b:
                pos = b
        ahead = [a for a, _ in gaps if a > pos]
        stop = free_scope + K.u64(min(ahead)) if ahead else end
        if scan is None or pos != scan_at or stop != scan_stop:
            scan, scan_stop = iter(tx.scan(free_scope + K.u64(pos), stop)), stop
        found = next(scan, None)
        if found is None:
            if not ahead:
                return
            note_gap(q, pos, min(ahead))
            scan = None
            continue
        key = found[0]
        seq = K.U64.unpack_from(key, len(free_scope))[0]
        if seq > pos:
            note_gap(q, pos, seq)
        pos = scan_at = seq + 1
        yield key


def note_gap(q: dict[str, Any], a: int, b: int) -> None:
    """Remember that no live free entry lies in ``[a, b)`` (the largest few gaps are kept)."""
    spans = sorted([*(q.get("gaps") or []), [a, b]])
    merged: list[list[int]] = []
    for x, y in spans:
        if merged and x <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], y)
        else:
            merged.append([x, y])
    if len(merged) > MAX_GAPS:
        merged = sorted(sorted(merged, key=lambda g: g[0] - g[1])[:MAX_GAPS])
    q["gaps"] = merged


def freed(ctx: Context, q: dict[str, Any], seq: int) -> None:
    """A free entry at ``seq`` is (back) in the list: no gap may hide it."""
    if ctx.rules < BOUNDED or not q.get("gaps"):
        return
    out: list[list[int]] = []
    for a, b in q["gaps"]:
        if a <= seq < b:
            out.extend(g for g in ([a, seq], [seq + 1, b]) if g[0] < g[1])
        else:
            out.append([a, b])
    q["gaps"] = out


def put_claim(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
               claim: dict[str, Any], old_expires: int | None) -> None:
    if old_expires is not None:
        for key in claim_expiry_keys(ctx, project, name, q["inc"], old_expires, claim["id"]):
            tx.delete(key)
        count_held(tx, ctx, project, name, q, old_expires, -len(claim["m"]))
    count_held(tx, ctx, project, name, q, claim["e"], len(claim["m"]))
    tx.put(claim_key(ctx, project, name, q, claim["id"]), dumps(claim))
    per_queue, partition_wide = claim_expiry_keys(ctx, project, name, q["inc"], claim["e"],
                                                   claim["id"])
    # The per-queue entry carries how many messages the claim holds, so stats count claimed
    # messages from this index alone (a live claim's messages never expire: grace, §10.5).
    tx.put(per_queue, K.u64(len(claim["m"])))
    tx.put(partition_wide, b"")


def drop_claim(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
             claim: dict[str, Any]) -> None:
    """Drop a claim; its messages become claimable again (claim counts stay: every claim counts)."""
    free_scope = scope(ctx, K.FREE, project, name, q)
    for seq in claim["m"]:
        key = msg_key(ctx, project, name, q, seq)
        raw = tx.get(key)
        if raw is None:
            continue
        msg = loads(raw)
        if msg["k"] == claim["id"]:
            msg["k"] = None
            msg["ke"] = 0
            tx.put(key, dumps(msg))
            tx.put(free_scope + K.u64(seq), b"")
            q["fh"] = min(q.get("fh", 0), seq)
            freed(ctx, q, seq)
    tx.delete(claim_key(ctx, project, name, q, claim["id"]))
    for key in claim_expiry_keys(ctx, project, name, q["inc"], claim["e"], claim["id"]):
        tx.delete(key)
    count_held(tx, ctx, project, name, q, claim["e"], -len(claim["m"]))


def expire_claims(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any]) -> None:
    prefix = scope(ctx, K.QCLEXP, project, name, q)
    if ctx.rules >= BOUNDED:
        # From the queue's cursor, at most INLINE_EXPIRY claims (Sweep releases the rest).
        keys = list(islice(tx.scan(prefix + cursor(q, "cx"), prefix + K.u64(ctx.now + 1)),
                           INLINE_EXPIRY))
        # New claims expire at or after now, so once all due ones are gone the cursor is now+1.
        q["cx"] = (keys[-1][0][len(prefix):] if len(keys) == INLINE_EXPIRY
                   else K.u64(ctx.now + 1)).hex()
        due = [key[len(prefix) + 8 :].decode() for key, _ in keys]
    else:
        due = [key[len(prefix) + 8 :].decode()
               for key, _ in tx.scan(prefix, prefix + K.u64(ctx.now + 1))]
    for claim_id in due:
        claim = get_claim(tx, ctx, project, name, q, claim_id)
        if claim is not None:
            drop_claim(tx, ctx, project, name, q, claim)


def extend_for_grace(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                      seq: int, msg: dict[str, Any], claim_ttl: int, grace: int) -> None:
    """A message that would die before its claim lives until claim expiry + grace."""
    claim_expires = msg["ke"]
    grace = min(max(grace, 0), MAX_SECONDS)  # the service validates; keys need u64 times
    if msg["e"] < claim_expires:
        set_expiry(tx, ctx, project, name, q, seq, msg, claim_expires + grace * 1000)
        msg["ttl"] = claim_ttl + grace
