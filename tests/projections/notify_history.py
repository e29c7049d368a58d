"""A notification history written the way rules 3/4 code wrote it, for the fold-compatibility
test of rules 5 (``test_notify_fanout``).

Kept to what that code had: the record fields of then (a ``CreateSubscription`` had no
``max_subscriptions``), no ``FanOut``. The digests it folds to were computed with the code of
commit a6441d9 (before rules 5) and are pinned in the test.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from projections.commands import (
    ConfirmSubscription,
    CreateSubscription,
    DeleteSubscription,
    DeliveryReport,
    NewMessage,
    PostMessages,
    SetRules,
    Sweep,
    UpdateSubscription,
    encode,
)

NEW_FIELDS = {"subscription.create": ("max_subscriptions",)}


def _old(cmd: object) -> bytes:
    """The record as the code before rules 5 encoded it (without fields added since)."""
    data = orjson.loads(encode(cmd))  # type: ignore[arg-type]
    for name in NEW_FIELDS.get(data["t"], ()):
        data.pop(name, None)
    return orjson.dumps(data)


def history(rules: int) -> list[bytes]:
    """Subscriptions (one needing confirmation), posts with and without delivery, reports
    that deliver, fail, refuse and cancel, a confirm and an unconfirm, an update, a delete and
    a sweep past a subscription's expiry — under ``rules``."""
    now = 1_000_000
    out: list[bytes] = []

    def add(cmd: object, advance: int = 10) -> None:
        nonlocal now
        now += advance
        base = {"project": "p", "queue": "q", "client_id": "c"} if not isinstance(
            cmd, (SetRules, Sweep)) else {}
        out.append(_old(replace(cmd, time_ms=now, **base)))  # type: ignore[type-var]

    add(SetRules(id="r", version=rules))
    for i in range(4):
        add(CreateSubscription(id=f"cs{i}", subscription_id=f"s{i}",
                               subscriber=f"http://h{i}.example.com/", ttl=60 + i * 600,
                               require_confirmation=i == 3))
    for n in range(6):
        add(PostMessages(id=f"pm{n}", messages=[NewMessage(id=f"m{n}{k}", body={"n": n, "k": k},
                                                           ttl=300) for k in range(n % 3 + 1)],
                         deliver=n != 2, require_confirmation=n >= 4))
    add(DeliveryReport(id="dr1", results=[
        {"s": "s0", "i": "m00", "r": "delivered", "status": 200, "error": ""},
        {"s": "s1", "i": "m00", "r": "failed", "status": 503, "error": "busy"},
        {"s": "s2", "i": "m00", "r": "refused", "status": 404, "error": "HTTP 404"},
        {"s": "s3", "i": "~confirm", "r": "delivered", "status": 200, "error": ""},
        {"s": "s0", "i": "m10", "r": "cancelled", "status": None, "error": "gone"},
    ], floor_ms=now))
    add(ConfirmSubscription(id="cf1", subscription_id="s3", confirmed=True,
                            require_confirmation=True))
    add(PostMessages(id="pm9", messages=[NewMessage(id="m90", body="after confirm")],
                     deliver=True, require_confirmation=True))
    add(UpdateSubscription(id="us1", subscription_id="s1", changes={"ttl": 3000}))
    add(DeliveryReport(id="dr2", results=[
        {"s": "s1", "i": "m00", "r": "failed", "status": 500, "error": "again"},
        {"s": "s3", "i": "m90", "r": "delivered", "status": 200, "error": ""},
    ], floor_ms=now), advance=5_000)
    add(ConfirmSubscription(id="cf2", subscription_id="s3", confirmed=False,
                            require_confirmation=True))
    add(DeleteSubscription(id="ds1", subscription_id="s2"))
    add(Sweep(id="sw1", cutoff_ms=now + 100_000, max_count=100), advance=100_000)
    add(PostMessages(id="pm10", messages=[NewMessage(id="mA0", body="late")], deliver=True))
    return out
