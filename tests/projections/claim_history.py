"""A seeded log of message and claim traffic under any rules (the latest by default), for
fold-equality tests.

Posts (some delayed, TTLs from a minute to an hour), claims of 1 to 20 with TTLs shorter and
longer than their messages' (so grace extends some), claim updates, releases and expiry,
deletes by id with and without the claim, bulk deletes, pops, queue deletes and Sweeps, over
stamped times spanning many hours. The generator folds as it goes (batch 1) to pick claimed
messages to delete from the claims' outcomes, so deletes by claim mostly succeed.
"""

from __future__ import annotations

import random

from projections import queries
from projections.apply import apply_record
from projections.commands import (
    Command,
    CreateClaim,
    CreateQueue,
    DeleteMessage,
    DeleteMessages,
    DeleteQueue,
    NewMessage,
    PopMessages,
    PostMessages,
    ReleaseClaim,
    SetRules,
    Sweep,
    UpdateClaim,
    encode,
)
from projections.memstore import MemoryStore
from projections.rules import versions

P = 0
T0 = 1_800_000_000_000
QUEUES = ("work", "late", "dead")  # plain; default delay 30 s; dead-letters after 2 claims


def history(seed: int, commands: int = 3000, rules: int = versions.LATEST) -> list[bytes]:
    """``commands`` encoded records (partition ``P``) starting with ``SetRules(rules)``."""
    rng = random.Random(seed)
    store = MemoryStore()
    records: list[bytes] = []
    now = T0
    ids = iter(range(10**9))
    posted: dict[str, list[str]] = {q: [] for q in QUEUES}
    claimed: list[tuple[str, str, list[str]]] = []  # queue, claim id, its message ids

    def new_id(prefix: str) -> str:
        return f"{prefix}{next(ids):07d}"

    def run(cmd: Command) -> None:
        object.__setattr__(cmd, "time_ms", now)
        record = encode(cmd)
        store.commit(apply_record(store, P, len(records), record))
        records.append(record)

    run(SetRules(id=new_id("r"), version=rules))
    for queue, meta in (("late", {"_default_message_delay": 30}),
                        ("dead", {"_max_claim_count": 2, "_dead_letter_queue": "work"})):
        run(CreateQueue(id=new_id("c"), project="p", queue=queue, metadata=meta))
    while len(records) < commands:
        now += rng.choice((0, 1, 10, 200, 2_000, 20_000, 120_000))
        if rng.random() < 0.01:
            now += 3_600_000  # an idle hour: claims and messages lapse unswept
        queue = rng.choice(QUEUES)
        base = {"id": new_id("c"), "project": "p", "queue": queue, "client_id": "cl"}
        roll = rng.random()
        if roll < 0.35:
            msgs = [NewMessage(id=new_id("m"), body={"n": len(records)},
                               ttl=rng.choice((60, 120, 600, 3600)),
                               delay=rng.choice((None, 0, 5, 60)) if queue == "late" else None)
                    for _ in range(rng.randint(1, 10))]
            posted[queue].extend(m.id for m in msgs)
            run(PostMessages(messages=msgs, size=100, **base))
        elif roll < 0.60:
            claim = CreateClaim(claim_id=new_id("k"), ttl=rng.choice((30, 60, 300, 900)),
                                grace=rng.choice((0, 30, 120)), limit=rng.randint(1, 20),
                                **base)
            run(claim)
            out = queries.outcome(store, P, claim.id) or {}
            taken = [m["id"] for m in out.get("messages", [])]
            if taken:
                claimed.append((queue, claim.claim_id, taken))
        elif roll < 0.78 and claimed:
            queue, claim_id, taken = rng.choice(claimed[-20:])
            message_id = rng.choice(taken)
            run(DeleteMessage(message_id=message_id, claim_id=claim_id,
                              **{**base, "queue": queue}))
        elif roll < 0.83 and posted[queue]:
            run(DeleteMessage(message_id=rng.choice(posted[queue][-50:]), **base))
        elif roll < 0.86 and posted[queue]:
            run(DeleteMessages(message_ids=rng.sample(posted[queue][-30:],
                                                      min(3, len(posted[queue]))), **base))
        elif roll < 0.91 and claimed:
            queue, claim_id, _ = rng.choice(claimed[-20:])
            if rng.random() < 0.5:
                run(ReleaseClaim(claim_id=claim_id, **{**base, "queue": queue}))
            else:
                run(UpdateClaim(claim_id=claim_id, ttl=rng.choice((60, 600)), grace=60,
                                **{**base, "queue": queue}))
        elif roll < 0.94:
            run(PopMessages(count=rng.randint(1, 5), **base))
        elif roll < 0.945:
            run(DeleteQueue(**base))
        else:
            run(Sweep(id=base["id"], cutoff_ms=now, max_count=rng.choice((5, 50, 1000))))
    return records
