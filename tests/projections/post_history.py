"""A seeded log of posts and deletes, with subscriptions coming and going, for fold-equality
tests of the post path (issue 15) under any rules version.

Posts of 1 to 12 messages (TTLs mixed within a post, some delayed, some stamped ``deliver``
with or without ``require_confirmation``) to queues with and without subscriptions; a
subscription created, confirmed or deleted right before a post to its queue (so a batch
writes one and then asks whether the queue has any); deletes by id and in bulk, pops that
empty a queue before it is posted to again, queue deletes, FanOut and Sweep commands.
Built without folding: every command is valid to append whatever the state says.
"""

from __future__ import annotations

import random

from projections.commands import (
    Command,
    ConfirmSubscription,
    CreateQueue,
    CreateSubscription,
    DeleteMessage,
    DeleteMessages,
    DeleteQueue,
    DeleteSubscription,
    FanOut,
    NewMessage,
    PopMessages,
    PostMessages,
    SetRules,
    Sweep,
    encode,
)
from projections.rules import versions

P = 0
T0 = 1_800_000_000_000
QUEUES = ("watched", "plain", "late", "busy")  # "late": default delay 20 s


def history(seed: int, rules: int, commands: int = 1000) -> list[bytes]:
    """``commands`` encoded records of partition ``P``, starting with ``SetRules(rules)``."""
    rng = random.Random(seed)
    records: list[bytes] = []
    now = T0
    ids = iter(range(10**9))
    posted: dict[str, list[str]] = {q: [] for q in QUEUES}
    subs: dict[str, list[str]] = {q: [] for q in QUEUES}

    def new_id(prefix: str) -> str:
        return f"{prefix}{next(ids):07d}"

    def run(cmd: Command) -> None:
        object.__setattr__(cmd, "time_ms", now)
        records.append(encode(cmd))

    def post(queue: str) -> None:
        body = {"n": len(records), "pad": "x" * rng.randint(0, 40)}
        msgs = [NewMessage(id=new_id("m"), body=body,
                           ttl=rng.choice((None, 60, 300, 3600)),
                           delay=rng.choice((None, 0, 5)) if queue == "late" else None)
                for _ in range(rng.choice((1, 1, 2, 3, 10, 12)))]
        posted[queue].extend(m.id for m in msgs)
        run(PostMessages(id=new_id("c"), project="p", queue=queue, client_id="cl",
                         messages=msgs, size=100, deliver=rng.random() < 0.8,
                         require_confirmation=rng.random() < 0.3))

    def subscribe(queue: str) -> None:
        sub_id = new_id("s")
        subs[queue].append(sub_id)
        run(CreateSubscription(id=new_id("c"), project="p", queue=queue, subscription_id=sub_id,
                               subscriber=rng.choice(("http://h/x", "mailto:a@b", "queue:q")),
                               ttl=rng.choice((60, 100_000)),
                               require_confirmation=rng.random() < 0.5))

    if rules > versions.ORIGINAL:
        run(SetRules(id=new_id("r"), version=rules))
    run(CreateQueue(id=new_id("c"), project="p", queue="late",
                    metadata={"_default_message_delay": 20}))
    subscribe("watched")
    while len(records) < commands:
        now += rng.choice((0, 0, 1, 10, 500, 5_000, 90_000))
        queue = rng.choice(QUEUES)
        roll = rng.random()
        if roll < 0.50:
            post(queue)
        elif roll < 0.56:
            subscribe(queue)
            post(queue)  # the same batch writes a subscription, then asks for any
        elif roll < 0.60 and subs[queue]:
            sub_id = subs[queue].pop(rng.randrange(len(subs[queue])))
            run(DeleteSubscription(id=new_id("c"), project="p", queue=queue,
                                   subscription_id=sub_id))
            post(queue)
        elif roll < 0.62 and subs[queue]:
            run(ConfirmSubscription(id=new_id("c"), project="p", queue=queue,
                                    subscription_id=rng.choice(subs[queue]),
                                    confirmed=rng.random() < 0.8))
        elif roll < 0.75 and posted[queue]:
            run(DeleteMessage(id=new_id("c"), project="p", queue=queue,
                              message_id=rng.choice(posted[queue][-40:])))
        elif roll < 0.82 and posted[queue]:
            run(DeleteMessages(id=new_id("c"), project="p", queue=queue,
                               message_ids=rng.sample(posted[queue][-30:],
                                                      min(rng.randint(1, 8), len(posted[queue])))))
        elif roll < 0.87:
            run(PopMessages(id=new_id("c"), project="p", queue=queue, count=rng.randint(1, 40)))
        elif roll < 0.88:
            run(DeleteQueue(id=new_id("c"), project="p", queue=queue))
            posted[queue].clear()
        elif roll < 0.95:
            run(FanOut(id=new_id("c"), project="", queue="", max_count=rng.choice((3, 50, 500))))
        else:
            run(Sweep(id=new_id("c"), cutoff_ms=now, max_count=rng.choice((5, 50, 1000))))
    return records
