"""A seeded random workload of commands over several projects and queues, with a clock."""

from __future__ import annotations

import random
from collections.abc import Iterator

from projections.commands import (
    Command,
    CreateClaim,
    CreateQueue,
    CreateSubscription,
    DeleteMessage,
    DeleteMessages,
    DeleteQueue,
    NewMessage,
    PopMessages,
    PostMessages,
    PurgeQueue,
    ReleaseClaim,
    SetRules,
    Sweep,
    UpdateClaim,
    UpdateQueue,
)

PROJECTS = ("alpha", "beta", "alpha/x")
QUEUES = ("jobs", "events", "q.dot", "dlq")


class Workload:
    """Generates commands; remembers ids it handed out so later commands can refer to them."""

    def __init__(self, seed: int, start_ms: int = 1_700_000_000_000, rules: int = 1) -> None:
        """``rules`` >= 2 starts the log with ``SetRules`` and adds delayed queues (the
        ``events`` queue's default delay is PATCHed on and off) to the mix."""
        self.rules = rules
        self.rng = random.Random(seed)
        self.now = start_ms
        self.counter = 0
        self.messages: list[tuple[str, str, str]] = []  # project, queue, id
        self.claims: list[tuple[str, str, str]] = []

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:08x}"

    def commands(self, n: int) -> Iterator[Command]:
        for _ in range(n):
            yield self.next()

    def next(self) -> Command:
        rng = self.rng
        if self.rules >= 2 and self.counter == 0:
            return SetRules(id=self._id("cmd"), time_ms=self.now, version=self.rules)
        if self.rules >= 2 and rng.random() < 0.05:
            self.now += 1000
            value = rng.choice((None, 0, 20, 120))
            op = ({"op": "remove", "key": "_default_message_delay"} if value is None
                  else {"op": "add", "key": "_default_message_delay", "value": value})
            return UpdateQueue(id=self._id("cmd"), project=rng.choice(PROJECTS), queue="events",
                               time_ms=self.now, ops=[op],
                               limits={"max_message_ttl": 1209600})
        self.now += rng.choice((0, 1, 5, 50, 500, 5000, 30_000))
        project, queue = rng.choice(PROJECTS), rng.choice(QUEUES)
        base = {"id": self._id("cmd"), "project": project, "queue": queue,
                "client_id": rng.choice(("c1", "c2")), "time_ms": self.now}
        roll = rng.random()
        if roll < 0.35:
            msgs = [NewMessage(id=self._id("m"), body={"n": self.counter, "pad": "x" * 20},
                               ttl=rng.choice((None, 60, 120, 3600)),
                               delay=rng.choice((None, 0, 10, 60)) if self.rules >= 2 else None)
                    for _ in range(rng.randint(1, 5))]
            self.messages.extend((project, queue, m.id) for m in msgs)
            return PostMessages(messages=msgs, size=200, **base)
        if roll < 0.55:
            cid = self._id("cl")
            self.claims.append((project, queue, cid))
            return CreateClaim(claim_id=cid, ttl=rng.choice((60, 120, 300)),
                               grace=60, limit=rng.randint(1, 10), **base)
        if roll < 0.70 and self.messages:
            p, q, mid = rng.choice(self.messages)
            claim_id = None
            if self.claims and rng.random() < 0.6:
                claim_id = rng.choice(self.claims)[2]
            return DeleteMessage(message_id=mid, claim_id=claim_id,
                                 **{**base, "project": p, "queue": q})
        if roll < 0.75 and self.claims:
            p, q, cid = rng.choice(self.claims)
            if rng.random() < 0.5:
                return ReleaseClaim(claim_id=cid, **{**base, "project": p, "queue": q})
            return UpdateClaim(claim_id=cid, ttl=120, grace=60,
                               **{**base, "project": p, "queue": q})
        if roll < 0.80:
            return PopMessages(count=rng.randint(1, 5), **base)
        if roll < 0.84 and self.messages:
            picks = [m for m in rng.sample(self.messages, min(3, len(self.messages)))]
            p, q, _ = picks[0]
            return DeleteMessages(message_ids=[m[2] for m in picks if m[:2] == (p, q)],
                                  **{**base, "project": p, "queue": q})
        if roll < 0.88:
            meta = {"_max_claim_count": 2, "_dead_letter_queue": "dlq"} if queue == "jobs" else {}
            return CreateQueue(metadata=meta, **base)
        if roll < 0.90:
            return UpdateQueue(ops=[{"op": "add", "key": "tag", "value": rng.randint(0, 3)}],
                               limits={"max_message_ttl": 1209600}, **base)
        if roll < 0.92:
            return CreateSubscription(subscription_id=self._id("s"),
                                      subscriber=f"http://h/{rng.randint(0, 3)}", ttl=600,
                                      **base)
        if roll < 0.94:
            return PurgeQueue(resource_types=rng.choice((["messages"], ["subscriptions"])),
                              **base)
        if roll < 0.95:
            return DeleteQueue(**base)
        return Sweep(id=base["id"], time_ms=self.now, cutoff_ms=self.now, max_count=50)
