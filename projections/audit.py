"""Audit: a queue's history replayed from the log, with what every command did.

Outcomes in the live store are kept only for a window (they back de-duplication), so the
history recomputes them: the queue's partition is folded into a scratch store and each
command's outcome is read right after it applies. Apply is deterministic, so these are the
outcomes the clients saw. Memory stays flat: the scratch store is RocksDB on disk and the log
is read in bounded batches.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from log import Log, partition_for
from projections import keys as K
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
                 scratch_dir: str | None = None) -> None:
        self._log = log
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
    ) -> AsyncIterator[Entry]:
        """Commands of the queue, oldest first, in ``[since_ms, until_ms]`` of effective time.

        ``stop(offset, time_ms)`` ends the replay before that record is applied (for point in
        time); ``progress(done, total)`` is called once per batch.
        """
        p = self.partition
        end = await self._log.end_offset(p)
        offset = 0
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
                    continue
                raw = tx.get(K.outcome(p, cmd.id))
                outcome = orjson.loads(raw) if raw is not None else {"duplicate": True}
                yield Entry(rec.offset, time_ms, cmd.project, cmd.queue, cmd.client_id,
                            cmd.TAG, essentials(cmd), brief(outcome))
            self.store.commit(tx.changes)
            offset = records[-1].offset + 1
            if progress is not None:
                progress(offset, end)

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
