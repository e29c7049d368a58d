"""Deliveries as state: what a post records, what a report does, as plain functions; and
the rules version that switches them on (an older log folds as it did)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from log.filelog import FileLog
from projections import delivery, queries
from projections import keys as K
from projections.apply import apply_record
from projections.commands import (
    ConfirmSubscription,
    CreateSubscription,
    DeleteSubscription,
    DeliveryReport,
    FanOut,
    NewMessage,
    PostMessages,
    SetRules,
    UpdateQueue,
    encode,
)
from projections.memstore import MemoryStore
from projections.rocksstore import RocksStore
from projections.rules import versions
from projections.runner import Runner, digest, wall_ms
from tests.projections.harness import Harness, P

DELIVERY_KINDS = range(K.DELIVERY, K.DELIVERY_REFS + 1)


def harness(rules: int = versions.NOTIFY) -> Harness:
    """A harness whose log starts by switching to ``rules``."""
    h = Harness()
    h.run(SetRules(id=h.id(), version=rules))
    return h


def post(h: Harness, *bodies: object, deliver: bool = True, confirm: bool = False) -> list[str]:
    ids = [h.id("m") for _ in bodies]
    h.run(PostMessages(id=h.id(), messages=[NewMessage(id=i, body=b) for i, b in
                                            zip(ids, bodies, strict=True)],
                       deliver=deliver, require_confirmation=confirm))
    return ids


def subscribe(h: Harness, sub_id: str, url: str = "http://example.com/", **kw: object) -> None:
    h.run(CreateSubscription(id=h.id(), subscription_id=sub_id, subscriber=url, **kw))


def pending(h: Harness) -> list[delivery.Pending]:
    return delivery.due(h.store, P, delivery.due_start(P, 0), 2**62, 10_000, h.now)


def report(h: Harness, *results: tuple[str, str, str], floor: int = 0) -> dict:
    return h.run(DeliveryReport(id=h.id(), results=[
        {"s": s, "i": i, "r": r, "status": 500 if r == "failed" else 200, "error": "boom"}
        for s, i, r in results], floor_ms=floor))


def delivery_keys(store: MemoryStore) -> list[bytes]:
    return [k for k, _ in store.scan(b"", b"\xff" * 4) if len(k) > 2 and k[2] in
            DELIVERY_KINDS]


def test_posts_without_the_stamp_fold_as_before() -> None:
    h = harness()
    subscribe(h, "s1")
    post(h, "old", deliver=False)
    assert delivery_keys(h.store) == []


def test_one_pending_delivery_per_message_and_live_subscription() -> None:
    h = harness()
    subscribe(h, "s2")
    subscribe(h, "s1", url="http://b.example.com/")
    subscribe(h, "s3", url="http://c.example.com/", ttl=60)
    h.tick(61)  # s3 expired
    m1, m2 = post(h, "a", "b")
    got = [(p.subscription_id, p.item, p.kind, p.failures) for p in pending(h)]
    assert got == [("s1", m1, "n", 0), ("s1", m2, "n", 0), ("s2", m1, "n", 0),
                   ("s2", m2, "n", 0)]
    assert all(p.message is not None and p.message["ttl"] == 3600 for p in pending(h))
    assert pending(h)[0].message == {"body": "a", "ttl": 3600}


def test_confirmation_required_skips_unconfirmed_and_queues_a_confirmation() -> None:
    h = harness()
    subscribe(h, "s1", require_confirmation=True)
    (confirm,) = pending(h)
    assert (confirm.item, confirm.kind) == (delivery.CONFIRM, "c")
    report(h, ("s1", delivery.CONFIRM, "delivered"))
    post(h, "x", confirm=True)
    assert pending(h) == []
    h.run(ConfirmSubscription(id=h.id(), subscription_id="s1", confirmed=True,
                              require_confirmation=True))
    (m,) = post(h, "y", confirm=True)
    assert [p.item for p in pending(h)] == [m]
    h.run(ConfirmSubscription(id=h.id(), subscription_id="s1", confirmed=False,
                              require_confirmation=True))
    assert delivery.UNSUBSCRIBE in [p.item for p in pending(h)]


def test_delivered_clears_and_the_body_goes_with_the_last_reference() -> None:
    h = harness()
    subscribe(h, "s1")
    subscribe(h, "s2", url="http://b.example.com/")
    (m,) = post(h, "x")
    body = delivery.body_key(P, h.project, h.queue, m)
    report(h, ("s1", m, "delivered"))
    assert h.store.get(body) is not None
    report(h, ("s2", m, "delivered"), ("s2", m, "delivered"))  # a duplicate is harmless
    assert h.store.get(body) is None
    assert pending(h) == []
    stats = delivery.subscription_stats(h.store, P, h.project, h.queue, "s1")
    assert stats is not None and (stats["delivered"], stats["pending"]) == (1, 0)


def test_failures_follow_the_queue_policy_at_log_time_then_give_up() -> None:
    h = harness()
    subscribe(h, "s1")
    h.run(UpdateQueue(id=h.id(), ops=[{"op": "add", "key": "_retry_policy", "value": {
        "retries_with_no_delay": 1, "minimum_delay_retries": 1, "minimum_delay": 2,
        "maximum_delay": 12, "maximum_delay_retries": 0}}]))
    (m,) = post(h, "x")
    expected = [0, 2, 2, 7]  # no delay, minimum, then linear range(2, 12, 5)
    for delay in expected:
        before = h.now
        out = report(h, ("s1", m, "failed"))
        assert out["retry"] == 1
        (p,) = pending(h)
        assert p.due == before + delay * 1000
        h.tick(delay)
    out = report(h, ("s1", m, "failed"))
    assert out["given_up"] == 1 and pending(h) == []
    stats = delivery.subscription_stats(h.store, P, h.project, h.queue, "s1")
    assert stats is not None
    assert (stats["failed"], stats["given_up"], stats["last_status"]) == (5, 1, 500)


def test_subscription_policy_overrides_unless_the_queue_says_ignore() -> None:
    h = harness()
    subscribe(h, "s1", options={"_retry_policy": {"retries_with_no_delay": 0,
                                                  "minimum_delay_retries": 1,
                                                  "minimum_delay": 9, "maximum_delay": 30}})
    (m,) = post(h, "x")
    start = h.now
    report(h, ("s1", m, "failed"))
    assert pending(h)[0].due == start + 9000
    h.run(UpdateQueue(id=h.id(), ops=[{"op": "add", "key": "_retry_policy", "value": {
        "retries_with_no_delay": 5, "ignore_subscription_override": True}}]))
    (m2,) = post(h, "y")
    report(h, ("s1", m2, "failed"))
    assert [p.due for p in pending(h) if p.item == m2] == [h.now]


def test_refused_is_final_and_a_deleted_subscription_is_not_retried() -> None:
    h = harness()
    subscribe(h, "s1")
    subscribe(h, "s2", url="http://b.example.com/")
    m1, m2 = post(h, "a", "b")
    report(h, ("s1", m1, "refused"))
    h.run(DeleteSubscription(id=h.id(), subscription_id="s2"))
    out = report(h, ("s2", m1, "failed"), ("s2", m2, "cancelled"))
    assert out["given_up"] == 1
    assert [(p.subscription_id, p.item) for p in pending(h)] == [("s1", m2)]


def test_replay_of_the_same_log_gives_the_same_state() -> None:
    h = harness()
    subscribe(h, "s1")
    subscribe(h, "s2", url="http://b.example.com/", require_confirmation=True)
    for n in range(20):
        (m,) = post(h, n)
        report(h, ("s1", m, "failed" if n % 3 else "delivered"), floor=h.now)
        h.tick(1)
    again = MemoryStore()
    for offset, record in enumerate(h.records):
        again.commit(apply_record(again, P, offset, record))
    assert digest(again) == digest(h.store)


def test_reports_keep_the_floor_the_next_owner_scans_from() -> None:
    h = harness()
    subscribe(h, "s1", ttl=10**7)
    for _ in range(50):
        (m,) = post(h, "x")
        h.tick(3600)  # hours of log time
        report(h, ("s1", m, "delivered"), floor=h.now)
    assert delivery.floor(h.store, P) == h.now
    (m,) = post(h, "late")
    found = delivery.due(h.store, P, delivery.due_start(P, delivery.floor(h.store, P)),
                         h.now, 100, h.now)
    assert [p.item for p in found] == [m]


def _old_log(h: Harness, stamped: bool) -> None:
    """Subscriptions and posts as an older log holds them, with or without the stamps."""
    subscribe(h, "s1")
    subscribe(h, "s2", url="http://b.example.com/", require_confirmation=stamped)
    post(h, "a", "b", deliver=stamped, confirm=stamped)
    h.run(ConfirmSubscription(id=h.id(), subscription_id="s2", confirmed=False,
                              require_confirmation=stamped))
    h.tick(5)
    post(h, "c", deliver=stamped)


def _state(store: MemoryStore) -> dict[bytes, Any]:
    """Every key and value, the meta record without the crc of the last record."""
    out: dict[bytes, Any] = dict(store.scan(b"", b"\xff" * 8))
    meta = orjson.loads(out.pop(K.meta(P)))
    meta.pop("crc")
    out[K.meta(P)] = meta
    return out


def test_a_rules_2_log_folds_with_no_deliveries_then_the_switch_turns_them_on() -> None:
    stamped, plain = harness(versions.BOUNDED), harness(versions.BOUNDED)
    _old_log(stamped, stamped=True)
    _old_log(plain, stamped=False)
    assert delivery_keys(stamped.store) == []
    assert _state(stamped.store) == _state(plain.store)  # the stamps change nothing there
    out = report(stamped, ("s1", "m000004", "failed"), floor=stamped.now)
    assert out == {"delivered": 0, "retry": 0, "given_up": 0, "unknown": 0}
    assert delivery_keys(stamped.store) == []

    stamped.run(SetRules(id=stamped.id(), version=versions.NOTIFY))
    (m,) = post(stamped, "d")
    assert [(p.subscription_id, p.item) for p in pending(stamped)] == [("s1", m), ("s2", m)]
    report(stamped, ("s1", m, "delivered"), ("s2", m, "delivered"))
    assert pending(stamped) == []
    stats = delivery.subscription_stats(stamped.store, P, stamped.project, stamped.queue, "s2")
    assert stats is not None and (stats["delivered"], stats["pending"]) == (1, 0)


async def test_a_live_partition_on_an_old_log_switches_to_deliveries(tmp_path: Path) -> None:
    """The runner folds a rules-2 log as it was, appends SetRules(latest), then posts
    record deliveries (from rules 5 through a fan-out entry that a FanOut expands)."""
    def stamp(cmd: Any) -> bytes:
        return encode(replace(cmd, project="p", queue="q", time_ms=wall_ms()))

    async with FileLog(tmp_path / "log", 1) as log:
        await log.append(0, [
            stamp(SetRules(id="r2", version=versions.BOUNDED)),
            stamp(CreateSubscription(id="c1", subscription_id="s1",
                                     subscriber="http://example.com/")),
            stamp(PostMessages(id="c2", messages=[NewMessage(id="m1", body="old")],
                               deliver=True)),
        ])
        store = RocksStore(tmp_path / "store")
        try:
            async with Runner(log, store, [0], sweep_interval=0) as runner:
                await runner.settled()
                assert queries.partition_state(store, 0)["rules"] == versions.LATEST
                assert delivery.pending_count(store, 0) == 0  # the old post stays as it was
                (offset,) = await log.append(0, [stamp(PostMessages(
                    id="c3", messages=[NewMessage(id="m2", body="new")], deliver=True))])
                await runner.applied(0, offset)
                assert delivery.pending_count(store, 0) == 0 and delivery.fanout_pending(store, 0)
                (offset,) = await log.append(0, [stamp(FanOut(id="c4"))])
                await runner.applied(0, offset)
                assert not delivery.fanout_pending(store, 0)
                found = delivery.due(store, 0, delivery.due_start(0, 0), 2**62, 10, 0)
                assert [(p.subscription_id, p.item) for p in found] == [("s1", "m2")]
        finally:
            store.close()
