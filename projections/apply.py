"""The pure fold: ``apply_record(view, partition, offset, record)`` -> changes.

No clock, no randomness, no I/O: the only inputs are the view and the record, so replaying the
same log into an empty store yields the same store (DESIGN.md §2.2). Time is the command's
stamped time clamped monotone per partition (§2.3). The outcome of every command is stored
under its id, so any node can answer for it later (§2.7); a command id seen before is a no-op
(§2.4). A record that cannot be decoded or applied is quarantined and the partition moves on.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson

from projections import keys as K
from projections.commands import (
    Command,
    ConfirmSubscription,
    CreateClaim,
    CreateQueue,
    CreateSubscription,
    DeleteMessage,
    DeleteMessages,
    DeleteQueue,
    DeleteSubscription,
    ImportDeadLetters,
    OutboxDone,
    PopMessages,
    PostMessages,
    PurgeQueue,
    ReleaseClaim,
    Sweep,
    UpdateClaim,
    UpdateQueue,
    UpdateSubscription,
    decode,
)
from projections.metadata import RESERVED, Limits, validate
from projections.overlay import Overlay
from projections.store import View

MAX_SECONDS = 10**9  # any TTL, grace or delay beyond this is clamped (keys are u64 ms)
OUTCOME_WINDOW_MS = 10 * 60 * 1000  # how long outcomes (and so de-duplication) are kept
PRUNE_PER_RECORD = 64  # outcomes pruned per record when due; more than a record adds

Outcome = dict[str, Any]
CLAIMED = "This message is claimed; it cannot be deleted without a valid claim ID."
Changes = dict[bytes, bytes | None]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(raw: bytes) -> Any:
    return orjson.loads(raw)


@dataclass(frozen=True, slots=True)
class Context:
    """Where and when a command applies: its partition, offset and effective time."""

    partition: int
    offset: int
    now: int  # effective time, ms


class Rejected(Exception):
    """A state-dependent refusal: recorded as the outcome, changes nothing."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


# -- the fold --------------------------------------------------------------------------------


def read_meta(view: View, partition: int) -> dict[str, Any]:
    raw = view.get(K.meta(partition))
    if raw is None:
        return {"offset": -1, "time": 0, "seq": 0, "crc": 0}
    return loads(raw)


def apply_record(view: View, partition: int, offset: int, record: bytes) -> Changes:
    """Fold one log record into the view: the changes, including the new applied offset."""
    tx = Overlay(view)
    apply_into(tx, partition, offset, record)
    return tx.changes


def apply_into(tx: Overlay, partition: int, offset: int, record: bytes) -> None:
    """``apply_record`` writing straight into a batch's overlay (no per-record copy).

    A refused command's writes are rolled back to the savepoint taken before it, so the
    result is the same as applying the record alone and merging its changes.
    """
    meta = read_meta(tx, partition)
    if offset <= meta["offset"]:
        return  # applied before (exactly-once, §2.4)
    meta["offset"] = offset
    meta["crc"] = zlib.crc32(record)
    try:
        cmd = decode(record)
    except ValueError as exc:
        _quarantine(tx, partition, offset, record, f"decode: {exc}", meta)
        return
    now = max(cmd.time_ms, meta["time"])
    meta["time"] = now
    ctx = Context(partition, offset, now)
    outcome_key = K.outcome(partition, cmd.id)
    if cmd.id and tx.get(outcome_key) is not None:
        tx.put(K.meta(partition), dumps(meta))  # a retry landed twice: keep first outcome
        return
    counters = dict(meta)  # adopted only if the command succeeds
    tx.savepoint()
    try:
        outcome = apply(tx, cmd, ctx, counters)
        tx.release()
        meta = counters
    except Rejected as rejected:
        tx.rollback()  # a refusal changes nothing but is recorded
        outcome = {"error": rejected.error, "description": rejected.description}
    except Exception as exc:
        tx.rollback()
        _quarantine(tx, partition, offset, record, f"apply: {type(exc).__name__}: {exc}", meta)
        return
    if cmd.id:
        tx.put(outcome_key, dumps(outcome))
        tx.put(K.outcome_expiry(partition, now, cmd.id), b"")
    if now >= meta.get("prune", 0):
        meta["prune"] = _prune_outcomes(tx, partition, now)
    tx.put(K.meta(partition), dumps(meta))


def _quarantine(tx: Overlay, partition: int, offset: int, record: bytes, error: str,
                meta: dict[str, Any]) -> None:
    tx.put(K.quarantine(partition, offset), dumps({"error": error, "record": record.hex()}))
    tx.put(K.meta(partition), dumps(meta))


def _prune_outcomes(tx: Overlay, partition: int, now: int) -> int:
    """Drop outcomes older than the window (a bounded slice); returns when to prune next.

    Outcomes stored later are stamped at ``now`` or after, so nothing is due before the
    oldest remaining one leaves the window.
    """
    prefix = K.kind_prefix(partition, K.OUTEXP)
    before = now - OUTCOME_WINDOW_MS
    pruned = 0
    for key, _ in tx.scan(prefix, K.prefix_end(prefix)):
        stamped = K.U64.unpack_from(key, len(prefix))[0]
        if stamped > before:
            return stamped + OUTCOME_WINDOW_MS
        if pruned >= PRUNE_PER_RECORD:
            return now  # more are due: go on with the next record
        tx.delete(key)
        tx.delete(K.outcome(partition, key[len(prefix) + 8 :].decode()))
        pruned += 1
    return now + OUTCOME_WINDOW_MS


def apply(tx: Overlay, cmd: Command, ctx: Context, meta: dict[str, Any]) -> Outcome:
    """Apply one decoded command; ``meta`` (the partition's counters) may be updated."""
    handler = HANDLERS.get(type(cmd))
    if handler is None:
        raise TypeError(f"no handler for {type(cmd).__name__}")
    return handler(tx, cmd, ctx, meta)


# -- queue records ---------------------------------------------------------------------------


def get_queue(view: View, partition: int, project: str, name: str) -> dict[str, Any] | None:
    raw = view.get(K.queue(partition, project, name))
    return None if raw is None else loads(raw)


def _put_queue(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any]) -> None:
    tx.put(K.queue(ctx.partition, project, name), dumps(q))


def _ensure_queue(tx: Overlay, ctx: Context, project: str, name: str,
                  metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The queue record, created lazily; its incarnation is the creating command's offset."""
    q = get_queue(tx, ctx.partition, project, name)
    if q is None:
        q = {"inc": ctx.offset, "created": ctx.now, "meta": metadata or {}, "count": 0}
        _put_queue(tx, ctx, project, name, q)
    return q


def _scope(ctx: Context, kind: int, project: str, name: str, q: dict[str, Any]) -> bytes:
    return K.scope(ctx.partition, kind, project, name, q["inc"])


# -- messages --------------------------------------------------------------------------------


def _msg_key(ctx: Context, project: str, name: str, q: dict[str, Any], seq: int) -> bytes:
    return _scope(ctx, K.MSG, project, name, q) + K.u64(seq)


def _expiry_keys(ctx: Context, project: str, name: str, inc: int, expires: int,
                 seq: int) -> tuple[bytes, bytes]:
    per_queue = K.scope(ctx.partition, K.QEXP, project, name, inc) + K.u64(expires) + K.u64(seq)
    partition_wide = (K.kind_prefix(ctx.partition, K.PEXP) + K.u64(expires) + K.lp(project)
                      + K.lp(name) + K.u64(inc) + K.u64(seq))
    return per_queue, partition_wide


def _put_message(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                 seq: int, msg: dict[str, Any], *, index: bool) -> None:
    tx.put(_msg_key(ctx, project, name, q, seq), dumps(msg))
    if index:
        for key in _expiry_keys(ctx, project, name, q["inc"], msg["e"], seq):
            tx.put(key, b"")


def _set_expiry(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any], seq: int,
                msg: dict[str, Any], expires: int) -> None:
    for key in _expiry_keys(ctx, project, name, q["inc"], msg["e"], seq):
        tx.delete(key)
    msg["e"] = expires
    for key in _expiry_keys(ctx, project, name, q["inc"], expires, seq):
        tx.put(key, b"")


def _find_message(tx: View, ctx: Context, project: str, name: str, q: dict[str, Any],
                  message_id: str) -> tuple[int, dict[str, Any]] | None:
    raw = tx.get(_scope(ctx, K.MSGID, project, name, q) + message_id.encode())
    if raw is None:
        return None
    seq = K.U64.unpack(raw)[0]
    body = tx.get(_msg_key(ctx, project, name, q, seq))
    return None if body is None else (seq, loads(body))


def _remove_message(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                    seq: int, msg: dict[str, Any], *, detach_claim: bool = True) -> None:
    """Delete a message with every index entry; keeps the queue count and claim list right."""
    tx.delete(_msg_key(ctx, project, name, q, seq))
    tx.delete(_scope(ctx, K.MSGID, project, name, q) + msg["id"].encode())
    tx.delete(_scope(ctx, K.FREE, project, name, q) + K.u64(seq))
    for key in _expiry_keys(ctx, project, name, q["inc"], msg["e"], seq):
        tx.delete(key)
    q["count"] -= 1
    if detach_claim and msg.get("k"):
        claim_key = _scope(ctx, K.CLAIM, project, name, q) + msg["k"].encode()
        raw = tx.get(claim_key)
        if raw is not None:
            claim = loads(raw)
            if seq in claim["m"]:
                claim["m"].remove(seq)
                tx.put(claim_key, dumps(claim))
                per_queue, _ = _claim_expiry_keys(ctx, project, name, q["inc"], claim["e"],
                                                  claim["id"])
                tx.put(per_queue, K.u64(len(claim["m"])))


def _snapshot(msg: dict[str, Any]) -> dict[str, Any]:
    """What an outcome keeps of a message: enough to render it later."""
    return {"id": msg["id"], "body": msg["body"], "ttl": msg["ttl"], "c": msg["c"]}


def _post(tx: Overlay, cmd: PostMessages, ctx: Context, meta: dict[str, Any]) -> Outcome:
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
    q = _ensure_queue(tx, ctx, cmd.project, cmd.queue)
    for m, delay in zip(cmd.messages, delays, strict=True):
        ttl = m.ttl if m.ttl is not None else default_ttl
        _append_message(tx, ctx, meta, cmd.project, cmd.queue, q, message_id=m.id, body=m.body,
                        ttl=ttl, client_id=cmd.client_id, delay=delay)
    _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"ids": [m.id for m in cmd.messages]}


def _append_message(tx: Overlay, ctx: Context, meta: dict[str, Any], project: str, name: str,
                    q: dict[str, Any], *, message_id: str, body: Any, ttl: int, client_id: str,
                    delay: int = 0) -> None:
    """A new message at the tail of the queue: the next sequence of the partition, free."""
    seq = meta["seq"]
    meta["seq"] = seq + 1
    msg = {"id": message_id, "body": body, "ttl": ttl, "c": ctx.now, "e": ctx.now + ttl * 1000,
           "cl": client_id, "d": ctx.now + delay * 1000 if delay else 0,
           "k": None, "ke": 0, "n": 0}
    _put_message(tx, ctx, project, name, q, seq, msg, index=True)
    tx.put(_scope(ctx, K.MSGID, project, name, q) + message_id.encode(), K.u64(seq))
    tx.put(_scope(ctx, K.FREE, project, name, q) + K.u64(seq), b"")
    q["count"] += 1


def _delete_message(tx: Overlay, cmd: DeleteMessage, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {}
    found = _find_message(tx, ctx, cmd.project, cmd.queue, q, cmd.message_id)
    if found is None:
        return {}
    seq, msg = found
    live = bool(msg["k"]) and msg["ke"] > ctx.now
    if cmd.claim_id is None:
        if live:
            raise Rejected("claimed", CLAIMED)
    else:
        claim = _get_claim(tx, ctx, cmd.project, cmd.queue, q, cmd.claim_id)
        if claim is None or claim["e"] <= ctx.now:
            raise Rejected("bad_claim", "The specified claim does not exist or has expired.")
        if not live:
            raise Rejected("not_claimed", "A claim was specified, but the message is not "
                                          "currently claimed.")
        if msg["k"] != cmd.claim_id:
            raise Rejected("claimed", CLAIMED)
    _remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg)
    _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"deleted": True}


def _delete_messages(tx: Overlay, cmd: DeleteMessages, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {}
    deleted = 0
    for message_id in cmd.message_ids:
        found = _find_message(tx, ctx, cmd.project, cmd.queue, q, message_id)
        if found is not None:
            _remove_message(tx, ctx, cmd.project, cmd.queue, q, *found)
            deleted += 1
    if deleted:
        _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"deleted": deleted}


def _take_free(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
               limit: int, *, include_delayed: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` of the oldest claimable messages; expired ones met on the way are removed.

    Claims that expired by now are released first, so their messages take their FIFO place.
    """
    _expire_claims(tx, ctx, project, name, q)
    free_scope = _scope(ctx, K.FREE, project, name, q)
    taken: list[tuple[int, dict[str, Any]]] = []
    expired: list[tuple[int, dict[str, Any]]] = []
    # Start at the free-head hint: every free seq is >= it, so the scan never walks over the
    # tombstones that consumed messages leave at the head of the queue.
    head = q.get("fh", 0)
    skipped: int | None = None  # the first delayed message left behind
    for key, _ in tx.scan(free_scope + K.u64(head), K.prefix_end(free_scope)):
        if len(taken) >= limit:
            break
        seq = K.U64.unpack_from(key, len(free_scope))[0]
        head = seq + 1
        raw = tx.get(_msg_key(ctx, project, name, q, seq))
        if raw is None:
            tx.delete(key)
            continue
        msg = loads(raw)
        if msg["e"] <= ctx.now:
            expired.append((seq, msg))
        elif include_delayed or msg["d"] <= ctx.now:
            taken.append((seq, msg))
        elif skipped is None:
            skipped = seq
    q["fh"] = head if skipped is None else skipped
    for seq, msg in expired:
        _remove_message(tx, ctx, project, name, q, seq, msg)
    return taken


def _pop(tx: Overlay, cmd: PopMessages, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {"messages": []}
    taken = _take_free(tx, ctx, cmd.project, cmd.queue, q, cmd.count)
    for seq, msg in taken:
        _remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg)
    _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"messages": [_snapshot(msg) for _, msg in taken]}


# -- claims ----------------------------------------------------------------------------------


def _claim_key(ctx: Context, project: str, name: str, q: dict[str, Any], claim_id: str) -> bytes:
    return _scope(ctx, K.CLAIM, project, name, q) + claim_id.encode()


def _get_claim(tx: View, ctx: Context, project: str, name: str, q: dict[str, Any],
               claim_id: str) -> dict[str, Any] | None:
    raw = tx.get(_claim_key(ctx, project, name, q, claim_id))
    return None if raw is None else loads(raw)


def _claim_expiry_keys(ctx: Context, project: str, name: str, inc: int, expires: int,
                       claim_id: str) -> tuple[bytes, bytes]:
    per_queue = (K.scope(ctx.partition, K.QCLEXP, project, name, inc) + K.u64(expires)
                 + claim_id.encode())
    partition_wide = (K.kind_prefix(ctx.partition, K.PCLEXP) + K.u64(expires) + K.lp(project)
                      + K.lp(name) + K.u64(inc) + claim_id.encode())
    return per_queue, partition_wide


def _put_claim(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
               claim: dict[str, Any], old_expires: int | None) -> None:
    if old_expires is not None:
        for key in _claim_expiry_keys(ctx, project, name, q["inc"], old_expires, claim["id"]):
            tx.delete(key)
    tx.put(_claim_key(ctx, project, name, q, claim["id"]), dumps(claim))
    per_queue, partition_wide = _claim_expiry_keys(ctx, project, name, q["inc"], claim["e"],
                                                   claim["id"])
    # The per-queue entry carries how many messages the claim holds, so stats count claimed
    # messages from this index alone (a live claim's messages never expire: grace, §10.5).
    tx.put(per_queue, K.u64(len(claim["m"])))
    tx.put(partition_wide, b"")


def _release(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
             claim: dict[str, Any]) -> None:
    """Drop a claim; its messages become claimable again (claim counts stay: every claim counts)."""
    free_scope = _scope(ctx, K.FREE, project, name, q)
    for seq in claim["m"]:
        key = _msg_key(ctx, project, name, q, seq)
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
    tx.delete(_claim_key(ctx, project, name, q, claim["id"]))
    for key in _claim_expiry_keys(ctx, project, name, q["inc"], claim["e"], claim["id"]):
        tx.delete(key)


def _expire_claims(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any]) -> None:
    prefix = _scope(ctx, K.QCLEXP, project, name, q)
    due = [key[len(prefix) + 8 :].decode()
           for key, _ in tx.scan(prefix, prefix + K.u64(ctx.now + 1))]
    for claim_id in due:
        claim = _get_claim(tx, ctx, project, name, q, claim_id)
        if claim is not None:
            _release(tx, ctx, project, name, q, claim)


def _extend_for_grace(tx: Overlay, ctx: Context, project: str, name: str, q: dict[str, Any],
                      seq: int, msg: dict[str, Any], claim_ttl: int, grace: int) -> None:
    """A message that would die before its claim lives until claim expiry + grace."""
    claim_expires = msg["ke"]
    grace = min(max(grace, 0), MAX_SECONDS)  # the service validates; keys need u64 times
    if msg["e"] < claim_expires:
        _set_expiry(tx, ctx, project, name, q, seq, msg, claim_expires + grace * 1000)
        msg["ttl"] = claim_ttl + grace


def _create_claim(tx: Overlay, cmd: CreateClaim, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {"messages": []}
    taken = _take_free(tx, ctx, cmd.project, cmd.queue, q, cmd.limit)
    qmeta = q["meta"]
    max_claims = qmeta.get("_max_claim_count")
    dlq = qmeta.get("_dead_letter_queue")
    dlq_active = ("_max_claim_count" in qmeta and isinstance(dlq, str) and bool(dlq)
                  and isinstance(max_claims, int))
    expires = ctx.now + cmd.ttl * 1000
    free_scope = _scope(ctx, K.FREE, cmd.project, cmd.queue, q)
    delivered: list[tuple[int, dict[str, Any]]] = []
    moved: list[dict[str, Any]] = []
    for seq, msg in taken:
        if dlq_active and msg["n"] >= max_claims:
            dlq_ttl = qmeta.get("_dead_letter_queue_messages_ttl")
            moved.append({"id": msg["id"], "body": msg["body"], "cl": msg["cl"],
                          "ttl": dlq_ttl if dlq_ttl else msg["ttl"]})
            _remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg, detach_claim=False)
            continue
        msg["n"] += 1
        msg["k"] = cmd.claim_id
        msg["ke"] = expires
        _extend_for_grace(tx, ctx, cmd.project, cmd.queue, q, seq, msg, cmd.ttl, cmd.grace)
        _put_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg, index=False)
        tx.delete(free_scope + K.u64(seq))
        delivered.append((seq, msg))
    if moved:
        tx.put(K.outbox(ctx.partition, ctx.offset), dumps(
            {"project": cmd.project, "queue": dlq, "messages": moved}))
    _put_queue(tx, ctx, cmd.project, cmd.queue, q)  # expired messages met may have gone
    if not delivered:
        return {"messages": []}
    claim = {"id": cmd.claim_id, "ttl": cmd.ttl, "grace": cmd.grace, "u": ctx.now, "e": expires,
             "m": [seq for seq, _ in delivered]}
    _put_claim(tx, ctx, cmd.project, cmd.queue, q, claim, None)
    return {"claim_id": cmd.claim_id, "messages": [_snapshot(m) for _, m in delivered]}


def _update_claim(tx: Overlay, cmd: UpdateClaim, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    claim = None if q is None else _get_claim(tx, ctx, cmd.project, cmd.queue, q, cmd.claim_id)
    if q is None or claim is None or claim["e"] <= ctx.now:
        raise Rejected("not_found", f"Claim {cmd.claim_id} does not exist in queue "
                                    f"{cmd.queue} for project {cmd.project}")
    old_expires = claim["e"]
    claim.update(ttl=cmd.ttl, grace=cmd.grace, u=ctx.now, e=ctx.now + cmd.ttl * 1000)
    for seq in claim["m"]:
        key = _msg_key(ctx, cmd.project, cmd.queue, q, seq)
        raw = tx.get(key)
        if raw is None:
            continue
        msg = loads(raw)
        msg["ke"] = claim["e"]
        _extend_for_grace(tx, ctx, cmd.project, cmd.queue, q, seq, msg, cmd.ttl, cmd.grace)
        tx.put(key, dumps(msg))
    _put_claim(tx, ctx, cmd.project, cmd.queue, q, claim, old_expires)
    return {}


def _release_claim(tx: Overlay, cmd: ReleaseClaim, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    claim = None if q is None else _get_claim(tx, ctx, cmd.project, cmd.queue, q, cmd.claim_id)
    if q is not None and claim is not None:
        _release(tx, ctx, cmd.project, cmd.queue, q, claim)
        _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {}


# -- queues ----------------------------------------------------------------------------------


def _create_queue(tx: Overlay, cmd: CreateQueue, ctx: Context, meta: dict) -> Outcome:
    if get_queue(tx, ctx.partition, cmd.project, cmd.queue) is not None:
        return {"created": False}  # upstream ignores the new metadata (204)
    _ensure_queue(tx, ctx, cmd.project, cmd.queue, dict(cmd.metadata))
    return {"created": True}


def _update_queue(tx: Overlay, cmd: UpdateQueue, ctx: Context, meta: dict) -> Outcome:
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
    _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"metadata": metadata}


def _delete_queue(tx: Overlay, cmd: DeleteQueue, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    if q is None:
        return {}
    tx.delete(K.queue(ctx.partition, cmd.project, cmd.queue))
    # O(1) now: the incarnation's keys become unreachable and Sweep collects them in slices.
    tx.put(K.scope(ctx.partition, K.GARBAGE, cmd.project, cmd.queue, q["inc"]), b"")
    return {"deleted": True}


def _purge(tx: Overlay, cmd: PurgeQueue, ctx: Context, meta: dict) -> Outcome:
    q = get_queue(tx, ctx.partition, cmd.project, cmd.queue)
    purged = 0
    if q is not None and "messages" in cmd.resource_types:
        # Like upstream: every unclaimed message goes; messages under a live claim survive.
        while True:
            taken = _take_free(tx, ctx, cmd.project, cmd.queue, q, 1000, include_delayed=True)
            if not taken:
                break
            for seq, msg in taken:
                _remove_message(tx, ctx, cmd.project, cmd.queue, q, seq, msg)
            purged += len(taken)
        _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    if "subscriptions" in cmd.resource_types:
        prefix = K.sub_scope(ctx.partition, K.SUB, cmd.project, cmd.queue)
        for _key, raw in list(tx.scan(prefix, K.prefix_end(prefix))):
            _remove_subscription(tx, ctx, cmd.project, cmd.queue, loads(raw))
    return {"purged": purged}


# -- subscriptions ---------------------------------------------------------------------------


def _sub_key(ctx: Context, project: str, name: str, sub_id: str) -> bytes:
    return K.sub_scope(ctx.partition, K.SUB, project, name) + sub_id.encode()


def _uri_key(ctx: Context, project: str, name: str, subscriber: str) -> bytes:
    return K.sub_scope(ctx.partition, K.SUBURI, project, name) + subscriber.encode()


def _sub_expiry_key(ctx: Context, project: str, name: str, sub: dict[str, Any]) -> bytes:
    return (K.kind_prefix(ctx.partition, K.PSUBEXP) + K.u64(sub["e"]) + K.lp(project)
            + K.lp(name) + sub["id"].encode())


def get_subscription(view: View, partition: int, project: str, name: str, sub_id: str,
                     now: int) -> dict[str, Any] | None:
    raw = view.get(K.sub_scope(partition, K.SUB, project, name) + sub_id.encode())
    if raw is None:
        return None
    sub = loads(raw)
    return sub if sub["e"] > now else None


def _put_subscription(tx: Overlay, ctx: Context, project: str, name: str,
                      sub: dict[str, Any]) -> None:
    tx.put(_sub_key(ctx, project, name, sub["id"]), dumps(sub))
    tx.put(_uri_key(ctx, project, name, sub["subscriber"]), sub["id"].encode())
    tx.put(_sub_expiry_key(ctx, project, name, sub), b"")


def _remove_subscription(tx: Overlay, ctx: Context, project: str, name: str,
                         sub: dict[str, Any]) -> None:
    tx.delete(_sub_key(ctx, project, name, sub["id"]))
    uri_key = _uri_key(ctx, project, name, sub["subscriber"])
    if tx.get(uri_key) == sub["id"].encode():
        tx.delete(uri_key)
    tx.delete(_sub_expiry_key(ctx, project, name, sub))


def _create_subscription(tx: Overlay, cmd: CreateSubscription, ctx: Context,
                         meta: dict) -> Outcome:
    existing_id = tx.get(_uri_key(ctx, cmd.project, cmd.queue, cmd.subscriber))
    if existing_id is not None:
        existing = get_subscription(tx, ctx.partition, cmd.project, cmd.queue,
                                    existing_id.decode(), ctx.now)
        if existing is not None:
            if existing["confirmed"]:
                raise Rejected("conflict", "Such subscription already exists.Subscriptions are "
                                           "unique by project + queue + subscriber URI.")
            return {"subscription_id": existing["id"], "created": False}
        stale = tx.get(_sub_key(ctx, cmd.project, cmd.queue, existing_id.decode()))
        if stale is not None:
            _remove_subscription(tx, ctx, cmd.project, cmd.queue, loads(stale))
    _ensure_queue(tx, ctx, cmd.project, cmd.queue)
    sub = {"id": cmd.subscription_id, "subscriber": cmd.subscriber, "ttl": cmd.ttl,
           "options": cmd.options, "c": ctx.now, "e": ctx.now + cmd.ttl * 1000,
           "confirmed": False}
    _put_subscription(tx, ctx, cmd.project, cmd.queue, sub)
    return {"subscription_id": sub["id"], "created": True}


def _sub_not_found(sub_id: str) -> Rejected:
    return Rejected("not_found", f"Subscription {sub_id} does not exist")


def _update_subscription(tx: Overlay, cmd: UpdateSubscription, ctx: Context,
                         meta: dict) -> Outcome:
    sub = get_subscription(tx, ctx.partition, cmd.project, cmd.queue, cmd.subscription_id,
                           ctx.now)
    if sub is None:
        raise _sub_not_found(cmd.subscription_id)
    new_subscriber = cmd.changes.get("subscriber", sub["subscriber"])
    if new_subscriber != sub["subscriber"]:
        other = tx.get(_uri_key(ctx, cmd.project, cmd.queue, new_subscriber))
        if other is not None and get_subscription(
            tx, ctx.partition, cmd.project, cmd.queue, other.decode(), ctx.now
        ) is not None:
            raise Rejected("conflict", "Such subscription already exists. Subscriptions are "
                                       "unique by project + queue + subscriber URI.")
    _remove_subscription(tx, ctx, cmd.project, cmd.queue, sub)
    sub["subscriber"] = new_subscriber
    if "options" in cmd.changes:
        sub["options"] = cmd.changes["options"]
    if "ttl" in cmd.changes:
        sub["ttl"] = cmd.changes["ttl"]
        sub["e"] = ctx.now + sub["ttl"] * 1000
    _put_subscription(tx, ctx, cmd.project, cmd.queue, sub)
    return {}


def _delete_subscription(tx: Overlay, cmd: DeleteSubscription, ctx: Context,
                         meta: dict) -> Outcome:
    raw = tx.get(_sub_key(ctx, cmd.project, cmd.queue, cmd.subscription_id))
    if raw is not None:
        _remove_subscription(tx, ctx, cmd.project, cmd.queue, loads(raw))
    return {}


def _confirm_subscription(tx: Overlay, cmd: ConfirmSubscription, ctx: Context,
                          meta: dict) -> Outcome:
    sub = get_subscription(tx, ctx.partition, cmd.project, cmd.queue, cmd.subscription_id,
                           ctx.now)
    if sub is None:
        raise _sub_not_found(cmd.subscription_id)
    sub["confirmed"] = cmd.confirmed
    tx.put(_sub_key(ctx, cmd.project, cmd.queue, sub["id"]), dumps(sub))
    return {}


# -- sweep, dead letters ---------------------------------------------------------------------


def _sweep(tx: Overlay, cmd: Sweep, ctx: Context, meta: dict) -> Outcome:
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
        claim = None if q is None else _get_claim(tx, ctx, project, name, q, key[pos:].decode())
        if q is not None and claim is not None:
            _release(tx, ctx, project, name, q, claim)
        tx.delete(key)
        counts["claims"] += 1

    prefix = K.kind_prefix(ctx.partition, K.PEXP)
    for key, _ in list(islice(tx.scan(prefix, prefix + K.u64(cutoff + 1)), cmd.max_count)):
        project, name, inc, pos = K.parse_scope(key, len(prefix) + 8)
        seq = K.U64.unpack_from(key, pos)[0]
        q = live_queue(project, name, inc)
        raw = None if q is None else tx.get(_msg_key(ctx, project, name, q, seq))
        if q is not None and raw is not None:
            _remove_message(tx, ctx, project, name, q, seq, loads(raw))
        tx.delete(key)
        counts["messages"] += 1

    prefix = K.kind_prefix(ctx.partition, K.PSUBEXP)
    for key, _ in list(islice(tx.scan(prefix, prefix + K.u64(cutoff + 1)), cmd.max_count)):
        pos = len(prefix) + 8
        project, pos = K.read_lp(key, pos)
        name, pos = K.read_lp(key, pos)
        raw = tx.get(_sub_key(ctx, project, name, key[pos:].decode()))
        if raw is not None and loads(raw)["e"] <= cutoff:
            _remove_subscription(tx, ctx, project, name, loads(raw))
        tx.delete(key)
        counts["subscriptions"] += 1

    counts["garbage"] = _collect_garbage(tx, ctx, cmd.max_count)
    for (project, name), q in queues.items():
        if q is not None:
            _put_queue(tx, ctx, project, name, q)
    return counts


def _collect_garbage(tx: Overlay, ctx: Context, budget: int) -> int:
    """Delete keys of deleted queue incarnations, at most ``budget`` this time."""
    prefix = K.kind_prefix(ctx.partition, K.GARBAGE)
    removed = 0
    for entry, _ in list(tx.scan(prefix, K.prefix_end(prefix))):
        project, name, inc, _ = K.parse_scope(entry)
        done = True
        for kind in K.INCARNATION_KINDS:
            scope = K.scope(ctx.partition, kind, project, name, inc)
            for key, _ in tx.scan(scope, K.prefix_end(scope)):
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


def _import_dead_letters(tx: Overlay, cmd: ImportDeadLetters, ctx: Context,
                         meta: dict) -> Outcome:
    mark_key = K.hwm(ctx.partition, cmd.source_partition)
    raw = tx.get(mark_key)
    if raw is not None and K.U64.unpack(raw)[0] >= cmd.origin_offset:
        return {"imported": 0}  # sent again after a crash: already applied
    tx.put(mark_key, K.u64(cmd.origin_offset))
    q = _ensure_queue(tx, ctx, cmd.project, cmd.queue)
    ids_scope = _scope(ctx, K.MSGID, cmd.project, cmd.queue, q)
    for m in cmd.messages:
        if tx.get(ids_scope + m["id"].encode()) is not None:
            continue
        _append_message(tx, ctx, meta, cmd.project, cmd.queue, q, message_id=m["id"],
                        body=m["body"], ttl=m["ttl"], client_id=m["cl"])
    _put_queue(tx, ctx, cmd.project, cmd.queue, q)
    return {"imported": len(cmd.messages)}


def _outbox_done(tx: Overlay, cmd: OutboxDone, ctx: Context, meta: dict) -> Outcome:
    tx.delete(K.outbox(ctx.partition, cmd.origin_offset))
    return {}


HANDLERS: dict[type[Command], Callable[[Overlay, Any, Context, dict], Outcome]] = {
    CreateQueue: _create_queue,
    UpdateQueue: _update_queue,
    DeleteQueue: _delete_queue,
    PurgeQueue: _purge,
    PostMessages: _post,
    DeleteMessage: _delete_message,
    DeleteMessages: _delete_messages,
    PopMessages: _pop,
    CreateClaim: _create_claim,
    UpdateClaim: _update_claim,
    ReleaseClaim: _release_claim,
    CreateSubscription: _create_subscription,
    UpdateSubscription: _update_subscription,
    DeleteSubscription: _delete_subscription,
    ConfirmSubscription: _confirm_subscription,
    Sweep: _sweep,
    ImportDeadLetters: _import_dead_letters,
    OutboxDone: _outbox_done,
}
