"""A history spanning many outcome windows, for the fold-compatibility test of rules 7
(``test_outcome_generations``): ``marconi bench history``'s mix (posts, 60 s claims, deletes
on four queues, a Sweep every 100) with retries of earlier commands mixed in.

Kept to what the code before rules 7 had; the digests it folds to under rules 2 and 5 were
computed with the code of commit 2194432 (before rules 7) and are pinned in the test.
"""

from __future__ import annotations

from typing import Any

from projections.commands import (
    Command,
    CreateClaim,
    DeleteMessages,
    NewMessage,
    PostMessages,
    SetRules,
    Sweep,
    encode,
)

T0 = 1_800_000_000_000


def history(rules: int, commands: int = 3000, spacing_ms: int = 2880, *,
            retries: bool = True) -> list[bytes]:
    """``commands`` records ``spacing_ms`` apart under ``rules`` (2.88 s: 24 h for 30,000);
    with ``retries`` every 37th command is sent again 5 records later (a retry within the
    window)."""
    records = [encode(SetRules(id="rules", time_ms=T0, version=rules))]
    posted: dict[str, list[str]] = {f"q{i}": [] for i in range(4)}
    sent: list[bytes] = []
    for i in range(commands):
        t, q = T0 + i * spacing_ms, f"q{i % 4}"
        base: dict[str, Any] = {"id": f"c{i:08d}", "project": "p", "queue": q,
                                "client_id": "c", "time_ms": t}
        step = (i // 4) % 3
        cmd: Command
        if i % 100 == 99:
            cmd = Sweep(id=base["id"], time_ms=t, cutoff_ms=t, max_count=1000)
        elif step == 0 or not posted[q]:
            posted[q].append(f"m{i:08d}")
            cmd = PostMessages(messages=[NewMessage(id=posted[q][-1], body={"n": i}, ttl=3600)],
                               size=20, **base)
        elif step == 1:
            cmd = CreateClaim(claim_id=f"k{i:08d}", ttl=60, grace=60, limit=2, **base)
        else:
            cmd = DeleteMessages(message_ids=[posted[q].pop(0)], **base)
        sent.append(encode(cmd))
        records.append(sent[-1])
        if retries and i % 37 == 36 and len(sent) > 5:
            records.append(sent[-6])  # the same command again: a no-op
    return records
