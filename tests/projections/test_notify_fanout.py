"""Rules 5: a post records its messages once, ``FanOut`` expands them in bounded slices, a
queue's subscriptions are capped — by counting work (keys read and written), never by timing;
and histories of rules 3 and 4 fold to the digests they folded to before rules 5."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projections import delivery
from projections import keys as K
from projections.apply import apply_into, apply_record
from projections.commands import (
    ConfirmSubscription,
    CreateSubscription,
    DeliveryReport,
    FanOut,
    NewMessage,
    PostMessages,
    encode,
)
from projections.memstore import MemoryStore
from projections.overlay import Overlay
from projections.rules import versions
from projections.runner import digest
from projections.store import View
from tests.projections.harness import Harness, P
from tests.projections.notify_history import history
from tests.projections.test_notify_delivery import delivery_keys, harness, pending

# Folded with the code of a6441d9 (before rules 5): see tests/projections/notify_history.py.
DIGESTS_BEFORE_RULES_5 = {
    versions.NOTIFY: "1882dddcbab06a05394166832302f2688ad0027680009b89c6d373222af8f452",
    versions.PRUNE_SLACK: "eba10356351e36bd8059d4488fde8e3ddd78e033e9cdf3541deba514428234fa",
}


class Counting:
    """A view that counts what apply reads from it: point reads and keys scanned."""

    def __init__(self, view: View) -> None:
        self._view = view
        self.gets = 0
        self.scanned = 0

    def get(self, key: bytes) -> bytes | None:
        self.gets += 1
        return self._view.get(key)

    def scan(self, start: bytes, stop: bytes, *,
             reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        for item in self._view.scan(start, stop, reverse=reverse):
            self.scanned += 1
            yield item


def subscribe_many(h: Harness, n: int, **kw: object) -> list[str]:
    ids = [f"s{i:04d}" for i in range(n)]
    for sub_id in ids:
        h.run(CreateSubscription(id=h.id(), subscription_id=sub_id,
                                 subscriber=f"http://{sub_id}.example.com/", **kw))
    return ids


def post_cost(rules: int, subs: int, messages: int = 3) -> tuple[int, int, int]:
    """(keys written, point reads, keys scanned) of one post to a queue with ``subs``."""
    h = harness(rules)
    subscribe_many(h, subs)
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id=h.id("m"), body="warm")],
                       deliver=True))
    cmd = PostMessages(id=h.id(), project=h.project, queue=h.queue, client_id=h.client,
                       time_ms=h.now, deliver=True,
                       messages=[NewMessage(id=h.id("m"), body={"k": k}) for k in
                                 range(messages)])
    view = Counting(h.store)
    changes = apply_record(view, P, h.offset, encode(cmd))
    assert not [k for k in changes if k[2] == K.QUARANTINE]
    return len(changes), view.gets, view.scanned


def expand_all(h: Harness, max_count: int) -> list[dict]:
    outs = []
    while delivery.fanout_pending(h.store, P):
        outs.append(h.run(FanOut(id=h.id(), max_count=max_count)))
        assert len(outs) < 10_000
    return outs


def test_a_post_costs_the_same_with_0_or_100_subscriptions() -> None:
    none, hundred = post_cost(versions.FANOUT, 0), post_cost(versions.FANOUT, 100)
    assert hundred[0] - none[0] == 1  # keys written: the one fan-out entry
    assert hundred[1] == none[1]  # point reads
    assert hundred[2] - none[2] <= 2  # scanned: one seek (the overlay merge reads one ahead)
    assert post_cost(versions.FANOUT, 1000) == hundred


def test_before_rules_5_a_post_wrote_a_delivery_per_subscription() -> None:
    """The contrast that shows the counting above can fail: rules 3 fan out in the post."""
    none, hundred = post_cost(versions.NOTIFY, 0), post_cost(versions.NOTIFY, 100)
    assert hundred[0] - none[0] >= 2 * 3 * 100  # a record and an index key per delivery
    assert hundred[2] - none[2] >= 100


def test_fan_out_slices_are_bounded_and_add_up() -> None:
    h = harness(versions.FANOUT)
    subs = subscribe_many(h, 100)
    ids = [h.id("m") for _ in range(3)]
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id=i, body=i) for i in ids],
                       deliver=True))
    assert delivery_keys(h.store) == []  # nothing per subscription at the post
    slices = []
    while delivery.fanout_pending(h.store, P):
        cmd = FanOut(id=h.id(), project=h.project, queue=h.queue, time_ms=h.now,
                     max_count=50)
        changes = apply_record(h.store, P, h.offset, encode(cmd))
        h.store.commit(changes)
        h.offset += 1
        slices.append(len(changes))
        assert len(slices) < 100
    # 50 units (a delivery made or a subscription examined) and at most one subscription's
    # messages past them: 13 subscriptions (52 units) a slice, 100 in 8 slices
    assert len(slices) == 8
    assert max(slices) <= 2 * 13 * 3 + 13 + 3 * 2 + 10  # rows, stats, bodies, meta
    found = pending(h)
    assert sorted((p.subscription_id, p.item) for p in found) == sorted(
        (s, m) for s in subs for m in ids)
    bodies = [k for k in delivery_keys(h.store) if k[2] == K.DELIVERY_BODY]
    assert len(bodies) == 3  # once per message, never per subscription
    assert all(p.message is not None and p.message["body"] == p.item for p in found)


def test_subscriptions_that_do_not_take_an_entry_still_bound_a_slice() -> None:
    """Subscriptions created after the post are examined and skipped: each FanOut examines
    at most its count of them, so an entry nobody takes still costs bounded commands."""
    h = harness(versions.FANOUT)
    subscribe_many(h, 1)
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id="m1", body=1)], deliver=True))
    for i in range(100):
        h.run(CreateSubscription(id=h.id(), subscription_id=f"late{i:03d}",
                                 subscriber=f"http://late{i}.example.com/"))
    outs = expand_all(h, 10)
    assert len(outs) == 11  # 101 subscriptions, 10 examined a slice
    assert sum(o["deliveries"] for o in outs) == 1
    assert [(p.subscription_id, p.item) for p in pending(h)] == [("s0000", "m1")]


def test_fan_out_goes_to_the_subscriptions_of_the_posts_position() -> None:
    h = harness(versions.FANOUT)
    subscribe_many(h, 3)
    h.run(CreateSubscription(id=h.id(), subscription_id="unconfirmed",
                             subscriber="http://u.example.com/"))
    h.run(CreateSubscription(id=h.id(), subscription_id="short",
                             subscriber="http://short.example.com/", ttl=1))
    h.tick(2)  # "short" has expired by the post
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id="m1", body=1)], deliver=True,
                       require_confirmation=True))
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id="m2", body=2)], deliver=True))
    # After the posts, before any FanOut: a new subscription and a confirmation.
    h.run(CreateSubscription(id=h.id(), subscription_id="late",
                             subscriber="http://late.example.com/"))
    h.run(ConfirmSubscription(id=h.id(), subscription_id="s0000", confirmed=True))
    expand_all(h, 4)
    got = sorted((p.subscription_id, p.item) for p in pending(h))
    # m1 needed confirmation: nobody was confirmed when it was posted. m2 did not.
    assert got == [("s0000", "m2"), ("s0001", "m2"), ("s0002", "m2"), ("unconfirmed", "m2")]
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id="m3", body=3)], deliver=True,
                       require_confirmation=True))
    expand_all(h, 4)
    assert ("s0000", "m3") in {(p.subscription_id, p.item) for p in pending(h)}
    assert ("late", "m3") not in {(p.subscription_id, p.item) for p in pending(h)}


def test_a_body_outlives_a_sliced_fan_out_that_delivers_midway() -> None:
    h = harness(versions.FANOUT)
    subs = subscribe_many(h, 4)
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id="m1", body="b")], deliver=True))
    h.run(FanOut(id=h.id(), max_count=4))  # s0000, s0001 (a delivery and a look each)
    h.run(DeliveryReport(id=h.id(), results=[
        {"s": s, "i": "m1", "r": "delivered", "status": 200, "error": ""} for s in subs[:2]]))
    assert [k for k in delivery_keys(h.store) if k[2] == K.DELIVERY_BODY] == []
    expand_all(h, 2)
    found = pending(h)
    assert [(p.subscription_id, p.message) for p in found] == [
        (s, {"body": "b", "ttl": 3600}) for s in subs[2:]]
    h.run(DeliveryReport(id=h.id(), results=[
        {"s": s, "i": "m1", "r": "delivered", "status": 200, "error": ""} for s in subs[2:]]))
    left = {k[2] for k in delivery_keys(h.store)}
    assert left <= {K.DELIVERY_STATS, K.DELIVERY_FLOOR}  # nothing pending, no body, no refs


def test_fan_out_is_a_no_op_before_rules_5() -> None:
    h = harness(versions.PRUNE_SLACK)
    subscribe_many(h, 2)
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id="m1", body=1)], deliver=True))
    before = len(pending(h))
    assert h.run(FanOut(id=h.id())) == {"deliveries": 0, "entries": 0}
    assert len(pending(h)) == before == 2  # rules 4 fanned out in the post itself


def test_the_subscription_cap() -> None:
    h = harness(versions.FANOUT)
    subscribe_many(h, 3, max_subscriptions=3, ttl=60)
    out = h.run(CreateSubscription(id=h.id(), subscription_id="fourth", max_subscriptions=3,
                                   subscriber="http://fourth.example.com/"))
    assert out["error"] == "invalid" and "3 subscriptions" in out["description"]
    assert h.store.get(K.sub_scope(P, K.SUB, h.project, h.queue) + b"fourth") is None
    # The existing one re-sent while unconfirmed is not a new one: still answered.
    again = h.run(CreateSubscription(id=h.id(), subscription_id="x", max_subscriptions=3,
                                     subscriber="http://s0000.example.com/"))
    assert again == {"subscription_id": "s0000", "created": False}
    h.tick(61)  # expired ones do not count
    assert h.run(CreateSubscription(id=h.id(), subscription_id="fourth", max_subscriptions=3,
                                    subscriber="http://fourth.example.com/"))["created"]


def test_the_cap_is_not_applied_before_rules_5() -> None:
    h = harness(versions.PRUNE_SLACK)
    subscribe_many(h, 3, max_subscriptions=2)
    assert h.store.get(K.sub_scope(P, K.SUB, h.project, h.queue) + b"s0002") is not None


@pytest.mark.parametrize("rules", sorted(DIGESTS_BEFORE_RULES_5))
def test_rules_3_and_4_histories_fold_as_before(rules: int) -> None:
    store = MemoryStore()
    for offset, record in enumerate(history(rules)):
        store.commit(apply_record(store, P, offset, record))
    assert not [k for k, _ in store.scan(b"", b"\xff" * 4) if k[2] == K.QUARANTINE]
    assert digest(store) == DIGESTS_BEFORE_RULES_5[rules]


def test_the_same_history_under_rules_5_differs_and_folds_alike_in_one_batch() -> None:
    """Rules 5 change the fold (the pinned digests above are not vacuous), and a batch that
    sees itself folds the same as record by record (DESIGN §7)."""
    records = [r.replace(b'"version":4', b'"version":5') for r in history(4)]
    one_by_one = MemoryStore()
    for offset, record in enumerate(records):
        one_by_one.commit(apply_record(one_by_one, P, offset, record))
    assert digest(one_by_one) not in DIGESTS_BEFORE_RULES_5.values()
    batched = MemoryStore()
    tx = Overlay(batched)
    for offset, record in enumerate(records):
        apply_into(tx, P, offset, record)
    batched.commit(tx.changes)
    assert digest(batched) == digest(one_by_one)

