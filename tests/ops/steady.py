"""A steady post / claim / delete load with stamped times, for retention and audit tests.

Every second of server time each queue gets a post of ``per_post`` messages (1 KB bodies by
default), a claim of a few, a delete of the claimed messages by id and, every ten seconds, a
Sweep: state stays about constant while the log grows with time.
"""

from __future__ import annotations

from collections.abc import Iterator

from log import partition_for
from projections.commands import (
    Command,
    CreateClaim,
    DeleteMessage,
    NewMessage,
    PostMessages,
    Sweep,
    encode,
)

T0 = 1_900_000_000_000


class Steady:
    """Commands second by second from ``T0``; ``records(seconds)`` yields (partition, bytes)."""

    def __init__(self, partitions: int, queues: tuple[str, ...] = ("q0", "q1", "q2"), *,
                 project: str = "p", body_bytes: int = 1000, per_post: int = 2,
                 start_ms: int = T0) -> None:
        self.partitions = partitions
        self.queues = queues
        self.project = project
        self.pad = "x" * body_bytes
        self.per_post = per_post
        self.now = start_ms
        self.n = 0
        self._posted: dict[str, list[str]] = {q: [] for q in queues}

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n:010d}"

    def second(self) -> Iterator[tuple[int, Command]]:
        """One second of load on every queue: (partition, command) pairs."""
        self.now += 1000
        for q in self.queues:
            p = partition_for(self.project, q, self.partitions)
            base = {"project": self.project, "queue": q, "client_id": "steady-client",
                    "time_ms": self.now}
            msgs = [NewMessage(id=self._id("m"), body={"pad": self.pad}, ttl=120)
                    for _ in range(self.per_post)]
            self._posted[q].extend(m.id for m in msgs)
            yield p, PostMessages(id=self._id("c"), messages=msgs, size=1200, **base)
            claim = self._id("k")
            yield p, CreateClaim(id=self._id("c"), claim_id=claim, ttl=60, grace=30, limit=2,
                                 **base)
            # delete the oldest posted messages (claimed by the claim above, or not: both
            # are normal traffic; a refused delete is recorded like any outcome)
            for mid in self._posted[q][:2]:
                yield p, DeleteMessage(id=self._id("c"), message_id=mid, claim_id=claim,
                                       **base)
            del self._posted[q][:2]
        if (self.now // 1000) % 10 == 0:
            for p in range(self.partitions):
                yield p, Sweep(id=self._id("s"), time_ms=self.now, cutoff_ms=self.now,
                               max_count=1000)

    def records(self, seconds: int) -> Iterator[tuple[int, bytes]]:
        for _ in range(seconds):
            for p, cmd in self.second():
                yield p, encode(cmd)
