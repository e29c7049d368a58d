"""Rules versions: the one list of what each version of apply's rules changed (DESIGN §7).

A change to the rules that changes how an existing log folds ships behind a new version here.
The version in force is partition state (``"rules"`` in the meta record, so it is in the
digest); it changes only by a logged ``SetRules`` command, which the partition's owner appends
once caught up when its code knows a newer version. Records before that position fold under
the old rules, records after it under the new ones, so old and new code agree on replay.

Rule code asks ``ctx.rules >= SOME_VERSION``; never compare against ``LATEST`` (that would
change how old positions fold when the next version is added).

How to add a version: add a constant and a line to ``VERSIONS``, guard the new behaviour with
``ctx.rules >= CONSTANT`` and keep the old path, add a test that folds a log written under the
previous version the same as before.
"""

from __future__ import annotations

from typing import Any

ORIGINAL = 1
"""The rules as of the first release: no SetRules record in the log means these."""

BOUNDED = 2
"""Bounded work (issue 10): cursors instead of scans from the head of consumed ranges
(outcome pruning, claim and message expiry, free and delayed lists, GC); purge, queue GC and
expiry catch-up in slices; delayed messages in their own index moved to the free list when
due; a claim never expires more than a bounded number of messages inline; a message stamped
with a delay is claimable once that time has passed, whatever the queue's metadata says now."""

NOTIFY = 3
"""Notifications (issue 12, DESIGN §9): a post records one pending delivery per (message,
live subscription) — only confirmed ones when the post is stamped ``require_confirmation`` —
a subscription create/confirm stamped so queues its (Un)SubscriptionConfirmation, and a
``DeliveryReport`` clears, reschedules (Zaqar's retry policy at its log time) or gives up
deliveries. Before it, posts and subscriptions record no deliveries and a report is a no-op."""

PRUNE_SLACK = 4
"""Outcome pruning waits until the oldest outcome is ``PRUNE_SLACK_MS`` past the window, then
prunes what is due in slices: a partition taking a record every few seconds no longer pays an
outcome scan per record for one outcome each. De-duplication still covers at least the window."""

FANOUT = 5
"""Fan-out off the post (issue 12, DESIGN §7 "no single command does unbounded work"): a post
to a queue with subscriptions records one fan-out entry (the messages, once) instead of a
delivery per (message, subscription); the owner's ``FanOut`` commands expand the oldest
entries into pending deliveries in bounded slices, for the subscriptions that existed (and,
when confirmation is required, were confirmed) at the post's log position — subscriptions
record the offset that created (``o``) and confirmed (``co``) them. A subscription create is
refused (400) past the stamped ``max_subscriptions`` live subscriptions of its queue."""

LIVE_STATS = 6
"""Stats and listings bounded by what is live (issue 10): a queue created (or purged, or
posted to while empty) under these rules keeps ``ch``, the messages its claims hold, and
counts by expiry time of its messages and of its claims' messages (``rules/buckets.py``), so
stats read no claim and no expired message one by one; ``h``, a seq no present message is
below, advanced when the head goes, so listings and oldest start past consumed tombstones;
and per block of 1,024 seqs a time none of its messages lives until, so the oldest and newest
lookups skip blocks that have expired whole but are not swept."""

OUTCOME_GENERATIONS = 7
"""Outcomes by generation (issue 10): a command's outcome is kept under the generation of its
log time (``OUTCOME_GENERATION_MS``, the outcome window), with no expiry index entry; once a
generation is two old it goes in one range delete. A record no longer pays a delete per
outcome it prunes (two tombstones committed per record once a history spans the window). A
retry is looked up in this generation and the one before, so de-duplication still covers at
least the window (at most two). The outcomes stored before the switch are still looked up for
one window, then dropped in one range delete with their expiry index."""

LEAN_EXPIRY = 8
"""No per-queue message expiry index where nothing reads it (issue 15): a queue keeping
counters (rules >= 6) answers stats from its expiry buckets, so only a queue without them
reads its ``QEXP`` entries (``queries._scanned``). Under these rules a message posted to a
queue with counters gets none, and a claim that extends its life moves none: a post writes
4 keys a message instead of 5, a claim 4.5 instead of 6.5, a delete and an expiry one fewer.
The switch records the partition's next seq (``lq``): messages below it may have an entry,
which their delete, expiry or claim still removes."""

VERSIONS: dict[int, str] = {
    ORIGINAL: "first release",
    BOUNDED: "bounded work: cursors, sliced purge/GC/expiry, delayed index, free is free",
    NOTIFY: "notifications: pending deliveries at post time, delivery reports, confirmation",
    PRUNE_SLACK: "outcome pruning in slices, 30 s of slack past the window",
    FANOUT: "fan-out entries expanded by FanOut slices; a cap on subscriptions per queue",
    LIVE_STATS: "per-queue counters by expiry time for stats; a live head for listings",
    OUTCOME_GENERATIONS: "outcomes by generation, a generation pruned in one range delete",
    LEAN_EXPIRY: "no per-queue message expiry entries for queues that keep counters",
}
LATEST = max(VERSIONS)


class RulesTooNewError(Exception):
    """The log switches to rules this code does not know: folding on would diverge.

    Not quarantined (a newer node folds the record fine): the partition stops, and an operator
    upgrades this node.
    """


def in_force(meta: dict[str, Any]) -> int:
    """The rules version of a partition, from its meta record."""
    return int(meta.get("rules", ORIGINAL))
