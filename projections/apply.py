"""The pure fold: ``apply_record(view, partition, offset, record)`` -> changes.

No clock, no randomness, no I/O: the only inputs are the view and the record, so replaying the
same log into an empty store yields the same store (DESIGN.md §2.2). Time is the command's
stamped time clamped monotone per partition (§2.3). The outcome of every command is stored
under its id, so any node can answer for it later (§2.7); a command id seen before is a no-op
(§2.4). A record that cannot be decoded or applied is quarantined and the partition moves on.

This module is the fold and the dispatcher; the rules of each resource live in
``projections.rules`` (one module per group), found through ``HANDLERS`` below.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from projections import delivery
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
    DeliveryReport,
    FanOut,
    ImportDeadLetters,
    OutboxDone,
    PopMessages,
    PostMessages,
    PurgeQueue,
    ReleaseClaim,
    SetRules,
    Sweep,
    UpdateClaim,
    UpdateQueue,
    UpdateSubscription,
    decode_appended,
)
from projections.overlay import Overlay
from projections.rules import claims, messages, outcomes, queues, subscriptions, upkeep, versions
from projections.rules.state import (
    MAX_SECONDS,
    Changes,
    Context,
    Outcome,
    Rejected,
    dumps,
    get_queue,
    read_meta,
)
from projections.store import ChangeSet, View

__all__ = ["HANDLERS", "MAX_SECONDS", "Changes", "Context", "Outcome", "Rejected", "apply",
           "apply_into", "apply_record", "get_queue", "read_meta"]

OUTCOME_WINDOW_MS = 10 * 60 * 1000  # how long outcomes (and so de-duplication) are kept
PRUNE_PER_RECORD = 64  # outcomes pruned per record when due; more than a record adds

Handler = Callable[[Overlay, Any, Context, dict[str, Any]], Outcome]


def set_rules(tx: Overlay, cmd: SetRules, ctx: Context, meta: dict[str, Any]) -> Outcome:
    """Switch the partition's rules version from the next record on (``rules.versions``)."""
    if cmd.version not in versions.VERSIONS:
        raise versions.RulesTooNewError(
            f"partition {ctx.partition} switches to rules version {cmd.version} at offset "
            f"{ctx.offset}; this code knows versions up to {versions.LATEST}: upgrade it")
    if cmd.version < ctx.rules:
        raise Rejected("invalid", f"rules version {ctx.rules} is in force; never go back")
    if cmd.version >= versions.LEAN_EXPIRY > ctx.rules:
        meta["lq"] = meta.get("seq", 0)  # the first seq posted under them (``rules.index``)
    meta["rules"] = cmd.version
    return {"rules": cmd.version}

# Where each command's rule lives.
HANDLERS: dict[type[Command], Handler] = {
    CreateQueue: queues.create_queue,
    UpdateQueue: queues.update_queue,
    DeleteQueue: queues.delete_queue,
    PurgeQueue: queues.purge,
    PostMessages: messages.post,
    DeleteMessage: messages.delete_message,
    DeleteMessages: messages.delete_messages,
    PopMessages: messages.pop,
    CreateClaim: claims.create_claim,
    UpdateClaim: claims.update_claim,
    ReleaseClaim: claims.release_claim,
    CreateSubscription: subscriptions.create_subscription,
    UpdateSubscription: subscriptions.update_subscription,
    DeleteSubscription: subscriptions.delete_subscription,
    ConfirmSubscription: subscriptions.confirm_subscription,
    Sweep: upkeep.sweep,
    ImportDeadLetters: upkeep.import_dead_letters,
    OutboxDone: upkeep.outbox_done,
    DeliveryReport: delivery.report,
    FanOut: delivery.fan_out,
    SetRules: set_rules,
}


def apply_record(view: View, partition: int, offset: int, record: bytes) -> ChangeSet:
    """Fold one log record into the view: the changes, including the new applied offset."""
    tx = Overlay(view)
    apply_into(tx, partition, offset, record)
    return tx.changes


def apply_into(tx: Overlay, partition: int, offset: int, record: bytes) -> int:
    """``apply_record`` writing straight into a batch's overlay (no per-record copy).

    A refused command's writes are rolled back to the savepoint taken before it, so the
    result is the same as applying the record alone and merging its changes. Returns the
    partition's log time after the record (its meta record's ``time``), which the runner's
    snapshot duty needs per record and would otherwise read and decode again.
    """
    meta = read_meta(tx, partition)
    if offset <= meta["offset"]:
        return int(meta["time"])  # applied before (exactly-once, §2.4)
    meta["offset"] = offset
    meta["crc"] = zlib.crc32(record)
    try:
        cmd = decode_appended(record)
    except ValueError as exc:
        _quarantine(tx, partition, offset, record, f"decode: {exc}", meta)
        return int(meta["time"])
    now = max(cmd.time_ms, meta["time"])
    meta["time"] = now
    ctx = Context(partition, offset, now, versions.in_force(meta), int(meta.get("lq", 0)))
    generations = ctx.rules >= versions.OUTCOME_GENERATIONS
    if generations:
        outcomes.begin(meta, now)
        outcome_key = K.outcome_in(partition, outcomes.generation(now), cmd.id)
        seen = bool(cmd.id) and outcomes.find(tx, partition, meta, now, cmd.id) is not None
    else:
        outcome_key = K.outcome(partition, cmd.id)
        seen = bool(cmd.id) and tx.get(outcome_key) is not None
    if seen:
        tx.put(K.meta(partition), dumps(meta))  # a retry landed twice: keep first outcome
        return now
    counters = dict(meta)  # adopted only if the command succeeds
    tx.savepoint()
    try:
        outcome = apply(tx, cmd, ctx, counters)
        tx.release()
        meta = counters
    except Rejected as rejected:
        tx.rollback()  # a refusal changes nothing but is recorded
        outcome = {"error": rejected.error, "description": rejected.description}
    except versions.RulesTooNewError:
        tx.rollback()
        raise  # never quarantined: newer code folds this record; this code must stop
    except Exception as exc:
        tx.rollback()
        _quarantine(tx, partition, offset, record, f"apply: {type(exc).__name__}: {exc}", meta)
        return now
    if generations:
        if cmd.id:
            tx.put_new(outcome_key, dumps(outcome))  # looked up just now: absent
        outcomes.prune(tx, partition, now, meta)
    elif cmd.id:
        # Both keys are new (the outcome was just looked up; its expiry entry lives and dies
        # with it), so one pruned within this batch leaves nothing to commit.
        tx.put_new(outcome_key, dumps(outcome))
        tx.put_new(K.outcome_expiry(partition, now, cmd.id), b"")
    if not generations and now >= meta.get("prune", 0):
        if ctx.rules >= versions.BOUNDED or versions.in_force(meta) >= versions.BOUNDED:
            slack = PRUNE_SLACK_MS if versions.in_force(meta) >= versions.PRUNE_SLACK else 0
            meta["prune"] = _prune_outcomes_from_cursor(tx, partition, now, meta, slack)
        else:
            meta["prune"] = _prune_outcomes(tx, partition, now)
    tx.put(K.meta(partition), dumps(meta))
    return int(meta["time"])


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


PRUNE_SLACK_MS = 30_000
"""Rules >= PRUNE_SLACK: pruning waits until the oldest outcome is this much past the window,
then takes what is due in slices of PRUNE_PER_RECORD, so a slow partition does not pay a scan
per record for one outcome each (de-duplication still covers at least the window)."""


def _prune_outcomes_from_cursor(tx: Overlay, partition: int, now: int,
                                meta: dict[str, Any], slack_ms: int = 0) -> int:
    """``_prune_outcomes`` from the last key it consumed (rules >= 2), so no record walks the
    tombstones earlier prunes left (RocksDB keeps them until compaction: quadratic before)."""
    prefix = K.kind_prefix(partition, K.OUTEXP)
    before = now - OUTCOME_WINDOW_MS
    last = None
    due = now + OUTCOME_WINDOW_MS
    due_keys: list[bytes] = []
    for key, _ in tx.scan(prefix + bytes.fromhex(meta.get("po", "")), K.prefix_end(prefix)):
        stamped = K.U64.unpack_from(key, len(prefix))[0]
        if stamped > before:
            due = stamped + OUTCOME_WINDOW_MS + slack_ms
            break
        if len(due_keys) >= PRUNE_PER_RECORD:
            due = now  # more are due: go on with the next record
            break
        due_keys.append(key)
    # Deleted once the scan is done: a delete while the overlay scan is suspended makes it
    # re-read its pending side at every step (the same keys go either way).
    outcomes = K.kind_prefix(partition, K.OUTCOME)  # + the id: K.outcome without a decode
    for key in due_keys:
        tx.delete(key)
        tx.delete(outcomes + key[len(prefix) + 8 :])
        last = key
    if last is not None:
        meta["po"] = last[len(prefix):].hex()
    return due


def apply(tx: Overlay, cmd: Command, ctx: Context, meta: dict[str, Any]) -> Outcome:
    """Apply one decoded command; ``meta`` (the partition's counters) may be updated."""
    handler = HANDLERS.get(type(cmd))
    if handler is None:
        raise TypeError(f"no handler for {type(cmd).__name__}")
    outcome = handler(tx, cmd, ctx, meta)
    ctx.tally.flush(tx)  # the expiry-time counts the rule changed, each staged once
    return outcome
