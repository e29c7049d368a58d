"""Audit: a queue's history replayed from the log, with what every command did.

Outcomes in the live store are kept only for a window (they back de-duplication), so the
history recomputes them: the queue's partition is folded into a scratch store and each
command's outcome is read right after it applies. Apply is deterministic, so these are the
outcomes the clients saw. Memory stays flat: the scratch store is RocksDB on disk and the log
is read in bounded batches.

With snapshots (DESIGN.md §8) the replay starts from the newest snapshot at or before the
window (restored into the scratch store) instead of offset 0, so its cost is the window plus
at most one snapshot interval, however long the history. A window before what is retained
(the log start, or the oldest snapshot once the log has been cut) is ``NotRetainedError``
saying what is retained — never a partial answer.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from log import Log, partition_for
from projections import queries
from projections.apply import apply_into
from projections.commands import (
    Command,
    CommandDecodeError,
    CreateClaim,
    CreateQueue,
    CreateSubscription,
    DeleteMessage,
    DeleteMessages,
    DeliveryReport,
    ImportDeadLetters,
    PopMessages,
    PostMessages,
    PurgeQueue,
    UpdateClaim,
    UpdateQueue,
    decode,
)
from projections.overlay import Overlay
from projections.rocksstore import RocksStore
from projections.snapshots import (
    SnapshotError,
    SnapshotInfo,
    SnapshotStore,
    log_start,
    newest_at_or_before,
    restore,
)


class NotRetainedError(SnapshotError):
    """The asked-for window starts before the retained history; the message says what is."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One command in a queue's history."""

    offset: int
    time_ms: int  # effective time: stamped, clamped monotone per partition
    project: str
    queue: str
    client_id: str
    command: str
    args: dict[str, Any]
    outcome: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "time_ms": self.time_ms, "project": self.project,
                "queue": self.queue, "client_id": self.client_id, "command": self.command,
                "args": self.args, "outcome": self.outcome}


def essentials(cmd: Command) -> dict[str, Any]:
    """The arguments an auditor wants to see, without message bodies."""
    if isinstance(cmd, PostMessages):
        return {"message_ids": [m.id for m in cmd.messages],
                "ttls": [m.ttl for m in cmd.messages]}
    if isinstance(cmd, DeleteMessage):
        return {"message_id": cmd.message_id, "claim_id": cmd.claim_id}
    if isinstance(cmd, DeleteMessages):
        return {"message_ids": cmd.message_ids}
    if isinstance(cmd, PopMessages):
        return {"count": cmd.count}
    if isinstance(cmd, CreateClaim):
        return {"claim_id": cmd.claim_id, "ttl": cmd.ttl, "grace": cmd.grace,
                "limit": cmd.limit}
    if isinstance(cmd, UpdateClaim):
        return {"claim_id": cmd.claim_id, "ttl": cmd.ttl, "grace": cmd.grace}
    if isinstance(cmd, CreateQueue):
        return {"metadata": cmd.metadata}
    if isinstance(cmd, UpdateQueue):
        return {"ops": cmd.ops}
    if isinstance(cmd, PurgeQueue):
        return {"resource_types": cmd.resource_types}
    if isinstance(cmd, CreateSubscription):
        return {"subscription_id": cmd.subscription_id, "subscriber": cmd.subscriber,
                "ttl": cmd.ttl}
    if isinstance(cmd, DeliveryReport):  # who was notified of what, with which answer
        return {"attempts": [{"subscription_id": r.get("s"), "item": r.get("i"),
                              "outcome": r.get("r"), "status": r.get("status"),
                              "error": r.get("error")} for r in cmd.results]}
    if isinstance(cmd, ImportDeadLetters):
        return {"message_ids": [m["id"] for m in cmd.messages],
                "source_partition": cmd.source_partition, "origin_offset": cmd.origin_offset}
    fields = {k: getattr(cmd, k) for k in ("claim_id", "subscription_id", "confirmed")
              if hasattr(cmd, k)}
    return fields


def brief(outcome: dict[str, Any]) -> dict[str, Any]:
    """An outcome without message bodies: who got which message ids."""
    out = dict(outcome)
    if "messages" in out:
        out["messages"] = [m["id"] for m in out["messages"]]
    return out


class History:
    """Replays one partition into a scratch store; use as an async context manager."""

    def __init__(self, log: Log, project: str, queue: str, *, batch: int = 2000,
                 scratch_dir: str | None = None,
                 snapshots: SnapshotStore | None = None) -> None:
        self._log = log
        self._snapshots = snapshots
        self.replayed = 0  # records read and applied (tests count the work)
        self.started_from: SnapshotInfo | None = None  # the snapshot the replay began at
        self.project = project
        self.queue = queue
        self.partition = partition_for(project, queue, log.partitions)
        self._batch = batch
        self._dir = tempfile.mkdtemp(prefix="marconi-replay-", dir=scratch_dir)
        self.store = RocksStore(self._dir, memory_mb=8)  # scratch: memory stays flat

    async def __aenter__(self) -> History:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.store.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def entries(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        stop: Callable[[int, int], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
        at_offset: int | None = None,
        at_ms: int | None = None,
        after_offset: int | None = None,
    ) -> AsyncIterator[Entry]:
        """Commands of the queue, oldest first, in ``[since_ms, until_ms]`` of effective time.

        ``stop(offset, time_ms)`` ends the replay before that record is applied (for point in
        time); ``progress(done, total)`` is called once per batch. ``at_offset`` / ``at_ms``
        (the point a ``stop`` ends at) and ``after_offset`` (only entries after it are
        wanted) let the replay start from a snapshot instead of offset 0.
        """
        p = self.partition
        end = await self._log.end_offset(p)
        offset = await self._start(since_ms=since_ms, until_ms=until_ms, at_offset=at_offset,
                                   at_ms=at_ms, after_offset=after_offset)
        while offset < end:
            records = await self._log.read(p, offset, min(self._batch, end - offset))
            if not records:
                break
            tx = Overlay(self.store)
            for rec in records:
                try:
                    cmd: Command | None = decode(rec.value)
                except CommandDecodeError:
                    cmd = None
                if stop is not None and cmd is not None and stop(rec.offset, cmd.time_ms):
                    self.store.commit(tx.changes)
                    return
                apply_into(tx, p, rec.offset, rec.value)
                if cmd is None or (cmd.project, cmd.queue) != (self.project, self.queue):
                    continue
                time_ms = queries.partition_state(tx, p)["time"]
                if since_ms is not None and time_ms < since_ms:
                    continue
                if until_ms is not None and time_ms > until_ms:
                    self.store.commit(tx.changes)
                    return  # effective time is monotone: nothing later is in the window
                outcome = queries.outcome(tx, p, cmd.id)
                if outcome is None:
                    outcome = {"duplicate": True}
                yield Entry(rec.offset, time_ms, cmd.project, cmd.queue, cmd.client_id,
                            cmd.TAG, essentials(cmd), brief(outcome))
            self.store.commit(tx.changes)
            self.replayed += len(records)
            offset = records[-1].offset + 1
            if progress is not None:
                progress(offset, end)

    async def _start(self, *, since_ms: int | None, until_ms: int | None = None,
                     at_offset: int | None, at_ms: int | None,
                     after_offset: int | None) -> int:
        """Seed the scratch store from the best snapshot; returns the offset to read next."""
        p = self.partition
        start = await log_start(self._log, p)
        infos = await self._snapshots.list(p) if self._snapshots is not None else []
        usable = [i for i in infos if i.offset + 1 >= start]
        bounded = not (since_ms is None and at_offset is None and at_ms is None
                       and after_offset is None)
        chosen = None
        if bounded:
            limit = at_offset if after_offset is None else (
                after_offset if at_offset is None else min(at_offset, after_offset))
            chosen = newest_at_or_before(usable, offset=limit, time_ms=at_ms,
                                         before_ms=since_ms)
        if chosen is None and start == 0:
            return 0  # the log is whole: replay from the beginning
        if chosen is None and not bounded and usable:
            chosen = usable[0]  # the whole retained history: from the oldest snapshot
        if chosen is None:
            raise NotRetainedError(retained_text(p, start, usable))
        if start > 0 and until_ms is not None and until_ms <= usable[0].time_ms:
            # the window ends before the first retained time: none of it can be replayed
            raise NotRetainedError(retained_text(p, start, usable))
        assert self._snapshots is not None
        blob = await self._snapshots.load(chosen)
        await restore(self.store, blob, identity=(self._log.log_id, self._log.partitions))
        self.started_from = chosen
        return chosen.offset + 1

    def state(self, now_ms: int) -> dict[str, Any]:
        """The queue as the scratch store holds it, judged at ``now_ms``: stats, messages,
        claims (the point-in-time view after ``entries`` stopped)."""
        p = self.partition
        messages = queries.list_messages(
            self.store, p, self.project, self.queue, now_ms, marker=None, limit=10**9,
            client_id=None, echo=True, include_claimed=True, include_delayed=True)
        claims: dict[str, list[str]] = {}
        for m in messages:
            if m.claim_id:
                claims.setdefault(m.claim_id, []).append(m.id)
        stats = queries.stats(self.store, p, self.project, self.queue, now_ms)
        for end in ("oldest", "newest"):
            if end in stats:
                stats[end] = {"id": stats[end].id, "age": stats[end].age}
        return {
            "metadata": queries.queue_metadata(self.store, p, self.project, self.queue),
            "stats": stats,
            "messages": [{"id": m.id, "age": m.age, "ttl": m.ttl, "claim_id": m.claim_id,
                          "body": m.body} for m in messages],
            "claims": claims,
        }


def retained_text(partition: int, start: int, usable: list[SnapshotInfo]) -> str:
    """One line for an operator: what history of ``partition`` can still be replayed."""
    from datetime import UTC, datetime

    if not usable:
        return (f"history of partition {partition} is not retained before offset {start} and "
                "no snapshot covers it (nothing can be replayed)")
    first = usable[0]
    # The first whole second a window may start at: after the oldest snapshot's time (a
    # window must start after it, see ``newest_at_or_before``), so the time printed here,
    # passed back as --since, is accepted.
    when = datetime.fromtimestamp(first.time_ms // 1000 + 1, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    return (f"history of partition {partition} is retained from {when} (offset "
            f"{first.offset + 1}) on; ask for a window at or after that")
