"""Zaqar semantics of the pure fold, tested as plain functions on an in-memory store."""

from __future__ import annotations

import orjson
import pytest

from projections import keys as K
from projections import queries
from projections.apply import apply_record
from projections.commands import (
    CommandDecodeError,
    ConfirmSubscription,
    CreateClaim,
    CreateQueue,
    CreateSubscription,
    DeleteMessage,
    DeleteMessages,
    DeleteQueue,
    ImportDeadLetters,
    NewMessage,
    OutboxDone,
    PopMessages,
    PostMessages,
    PurgeQueue,
    ReleaseClaim,
    Sweep,
    UpdateClaim,
    UpdateQueue,
    UpdateSubscription,
    decode,
    encode,
)
from projections.memstore import MemoryStore
from projections.overlay import Overlay
from projections.runner import digest
from tests.projections.harness import Harness, P


def post(h: Harness, *bodies: object, ttl: int | None = None, **kw: object) -> list[str]:
    ids = [h.id("m") for _ in bodies]
    out = h.run(PostMessages(id=h.id(), messages=[
        NewMessage(id=i, body=b, ttl=ttl) for i, b in zip(ids, bodies, strict=True)], **kw))
    assert out == {"ids": ids}
    return ids


def listing(h: Harness, **kw: object) -> list[str]:
    args = {"marker": None, "limit": 20, "client_id": "someone-else", "echo": False,
            "include_claimed": False, "include_delayed": True, **kw}
    return [m.id for m in queries.list_messages(h.store, P, h.project, h.queue, h.now, **args)]


def stats(h: Harness) -> dict:
    s = queries.stats(h.store, P, h.project, h.queue, h.now)
    return {k: s[k] for k in ("claimed", "free", "total")}


def claim(h: Harness, limit: int = 10, ttl: int = 300, grace: int = 60) -> tuple[str, list[str]]:
    cid = h.id("c")
    out = h.run(CreateClaim(id=h.id(), claim_id=cid, ttl=ttl, grace=grace, limit=limit))
    return cid, [m["id"] for m in out["messages"]]


# -- queues ----------------------------------------------------------------------------------


def test_put_creates_once_and_ignores_metadata_of_an_existing_queue() -> None:
    h = Harness()
    assert h.run(CreateQueue(id="a", metadata={"k": 1})) == {"created": True}
    assert h.run(CreateQueue(id="b", metadata={"k": 2})) == {"created": False}
    assert queries.queue_metadata(h.store, P, "proj", "q") == {"k": 1}


def test_lazy_queue_reads_are_empty_and_post_creates() -> None:
    h = Harness()
    assert queries.queue_metadata(h.store, P, "proj", "q") is None
    assert stats(h) == {"claimed": 0, "free": 0, "total": 0}
    assert listing(h) == []
    assert h.run(CreateClaim(id="c", claim_id="cl")) == {"messages": []}
    assert h.run(PopMessages(id="p", count=5)) == {"messages": []}
    assert h.run(DeleteMessage(id="d", message_id="nope")) == {}
    post(h, "x")
    assert queries.queue_exists(h.store, P, "proj", "q")


def test_patch_semantics() -> None:
    h = Harness()
    limits = {"max_message_ttl": 1209600}
    out = h.run(UpdateQueue(id="u0", ops=[{"op": "add", "key": "a", "value": 1}]))
    assert out["error"] == "not_found"
    h.run(CreateQueue(id="c", metadata={"a": 1}))
    out = h.run(UpdateQueue(id="u1", limits=limits, ops=[
        {"op": "add", "key": "b", "value": 2},
        {"op": "replace", "key": "a", "value": 3},
        {"op": "replace", "key": "_max_claim_count", "value": 3},
        {"op": "remove", "key": "_dead_letter_queue"},
    ]))
    assert out == {"metadata": {"a": 3, "b": 2, "_max_claim_count": 3}}
    out = h.run(UpdateQueue(id="u2", ops=[{"op": "replace", "key": "zz", "value": 1}]))
    assert out == {"error": "conflict", "description": "Can't replace non-existent object zz."}
    out = h.run(UpdateQueue(id="u3", ops=[{"op": "remove", "key": "zz"}]))
    assert out["error"] == "conflict"
    out = h.run(UpdateQueue(id="u4", limits=limits,
                            ops=[{"op": "add", "key": "_default_message_ttl", "value": 5}]))
    assert out["error"] == "invalid"
    # refused patches change nothing
    assert queries.queue_metadata(h.store, P, "proj", "q") == {"a": 3, "b": 2,
                                                                "_max_claim_count": 3}


def test_queues_are_scoped_by_project() -> None:
    a = Harness(project="a")
    a.run(CreateQueue(id="1"))
    a.run(CreateQueue(id="2", project="a/b", queue="q"))
    assert [n for n, _ in queries.queue_names(a.store, P, "a", after=None, limit=10)] == ["q"]
    assert queries.queue_count(a.store, P, "a") == 1
    assert queries.queue_metadata(a.store, P, "b", "q") is None


def test_queue_delete_removes_messages_and_claims_and_garbage_is_collected() -> None:
    h = Harness()
    post(h, 1, 2, 3)
    cid, got = claim(h, limit=2)
    assert h.run(DeleteQueue(id=h.id())) == {"deleted": True}
    assert stats(h) == {"claimed": 0, "free": 0, "total": 0}
    assert queries.get_claim(h.store, P, "proj", "q", cid, h.now) is None
    assert queries.get_message(h.store, P, "proj", "q", got[0], h.now) is None
    post(h, 4)  # a new incarnation starts empty
    assert stats(h) == {"claimed": 0, "free": 1, "total": 1}
    out = h.run(Sweep(id=h.id(), cutoff_ms=h.now, max_count=2))
    assert out["garbage"] == 2
    while h.run(Sweep(id=h.id(), cutoff_ms=h.now, max_count=2))["garbage"]:
        pass
    assert not any(True for _ in h.store.scan(*_range(K.GARBAGE)))
    assert stats(h) == {"claimed": 0, "free": 1, "total": 1}


def _range(kind: int) -> tuple[bytes, bytes]:
    prefix = K.kind_prefix(P, kind)
    return prefix, K.prefix_end(prefix)


# -- messages --------------------------------------------------------------------------------


def test_fifo_listing_and_paging_by_marker() -> None:
    h = Harness()
    ids = post(h, *range(7))
    assert listing(h, limit=3) == ids[:3]
    page = queries.list_messages(h.store, P, "proj", "q", h.now, marker=None, limit=3,
                                 client_id=None, echo=True, include_claimed=False,
                                 include_delayed=True)
    nxt = [m.id for m in queries.list_messages(
        h.store, P, "proj", "q", h.now, marker=page[-1].seq, limit=10, client_id=None,
        echo=True, include_claimed=False, include_delayed=True)]
    assert nxt == ids[3:]


def test_echo_hides_own_messages_unless_asked() -> None:
    h = Harness(client="me")
    ids = post(h, "a")
    assert listing(h, client_id="me") == []
    assert listing(h, client_id="me", echo=True) == ids


def test_ttl_expiry_hides_and_sweep_removes() -> None:
    h = Harness()
    short = post(h, "short", ttl=60)
    long = post(h, "long", ttl=600)
    h.tick(61)
    assert listing(h) == long
    assert stats(h)["total"] == 1
    assert queries.get_message(h.store, P, "proj", "q", short[0], h.now) is None
    assert h.run(Sweep(id="s", cutoff_ms=h.now))["messages"] == 1
    assert stats(h)["total"] == 1


def test_queue_default_ttl_and_per_queue_post_size_cap() -> None:
    h = Harness()
    h.run(CreateQueue(id="c", metadata={"_default_message_ttl": 120,
                                        "_max_messages_post_size": 100}))
    out = h.run(PostMessages(id="p1", size=101, messages=[NewMessage(id="m", body="x")]))
    assert out["error"] == "invalid" and "max size for current queue is 100" in out["description"]
    assert stats(h)["total"] == 0
    post(h, "x", size=50)
    (msg,) = queries.list_messages(h.store, P, "proj", "q", h.now, marker=None, limit=5,
                                   client_id=None, echo=True, include_claimed=True,
                                   include_delayed=True)
    assert msg.ttl == 120


def test_delayed_queue() -> None:
    h = Harness()
    h.run(CreateQueue(id="c", metadata={"_default_message_delay": 30}))
    ids = post(h, "a")
    out = h.run(PostMessages(id="bad", messages=[NewMessage(id="m9", body=1, delay=901)]))
    assert out["error"] == "invalid"
    assert listing(h, include_delayed=False) == []
    assert listing(h, include_delayed=True) == ids
    assert claim(h)[1] == []
    h.tick(31)
    assert claim(h)[1] == ids


def test_delay_is_ignored_on_ordinary_queues() -> None:
    h = Harness()
    out = h.run(PostMessages(id="p", messages=[NewMessage(id="m", body=1, delay=901)]))
    assert out == {"ids": ["m"]}
    assert claim(h)[1] == ["m"]


def test_delete_message_claim_rules() -> None:
    h = Harness()
    a, b = post(h, "a", "b")
    cid, got = claim(h, limit=1)
    assert got == [a]
    assert h.run(DeleteMessage(id=h.id(), message_id=a))["error"] == "claimed"
    assert h.run(DeleteMessage(id=h.id(), message_id=a, claim_id="nope"))["error"] == "bad_claim"
    assert h.run(DeleteMessage(id=h.id(), message_id=b, claim_id=cid))["error"] == "not_claimed"
    cid2, got2 = claim(h, limit=1)
    assert got2 == [b]
    assert h.run(DeleteMessage(id=h.id(), message_id=a, claim_id=cid2))["error"] == "claimed"
    assert h.run(DeleteMessage(id=h.id(), message_id=a, claim_id=cid)) == {"deleted": True}
    assert h.run(DeleteMessage(id=h.id(), message_id=a)) == {}  # gone: idempotent
    assert queries.get_claim(h.store, P, "proj", "q", cid, h.now)["messages"] == []
    h.tick(301)  # claim 2 expired: its claim id is now refused
    assert h.run(DeleteMessage(id=h.id(), message_id=b, claim_id=cid2))["error"] == "bad_claim"
    assert h.run(DeleteMessage(id=h.id(), message_id=b)) == {"deleted": True}


def test_delete_by_ids_ignores_claims_and_pop_takes_unclaimed_oldest() -> None:
    h = Harness()
    ids = post(h, *range(5))
    claim(h, limit=1)
    assert h.run(DeleteMessages(id=h.id(), message_ids=[ids[0], "zzz"])) == {"deleted": 1}
    out = h.run(PopMessages(id=h.id(), count=2))
    assert [m["id"] for m in out["messages"]] == ids[1:3]
    assert stats(h) == {"claimed": 0, "free": 2, "total": 2}


# -- claims ----------------------------------------------------------------------------------


def test_claims_take_oldest_and_never_share_a_message() -> None:
    h = Harness()
    ids = post(h, *range(5))
    _c1, got1 = claim(h, limit=2)
    _c2, got2 = claim(h, limit=2)
    _c3, got3 = claim(h, limit=5)
    assert (got1, got2, got3) == (ids[:2], ids[2:4], ids[4:])
    assert claim(h)[1] == []
    assert stats(h) == {"claimed": 5, "free": 0, "total": 5}
    assert listing(h) == []
    assert listing(h, include_claimed=True) == ids


def test_claim_expiry_returns_messages_in_fifo_order() -> None:
    h = Harness()
    ids = post(h, *range(3))
    claim(h, limit=1, ttl=60)
    _, later = claim(h, limit=1, ttl=600)
    h.tick(61)
    assert stats(h)["claimed"] == 1
    _, again = claim(h, limit=5)
    assert later == [ids[1]]
    assert again == [ids[0], ids[2]]


def test_grace_extends_short_lived_messages_only() -> None:
    h = Harness()
    short, long = post(h, "s", ttl=60)[0], post(h, "l", ttl=3600)[0]
    claim(h, ttl=300, grace=60)
    by_id = {m.id: m for m in queries.list_messages(
        h.store, P, "proj", "q", h.now, marker=None, limit=10, client_id=None, echo=True,
        include_claimed=True, include_delayed=True)}
    assert by_id[short].ttl == 360
    assert by_id[long].ttl == 3600
    h.tick(300 + 59)
    assert queries.get_message(h.store, P, "proj", "q", short, h.now) is not None
    h.tick(2)
    assert queries.get_message(h.store, P, "proj", "q", short, h.now) is None


def test_renew_and_release() -> None:
    h = Harness()
    ids = post(h, 1, 2)
    cid, _ = claim(h, ttl=60)
    h.tick(50)
    assert h.run(UpdateClaim(id=h.id(), claim_id=cid, ttl=120, grace=60)) == {}
    h.tick(50)
    c = queries.get_claim(h.store, P, "proj", "q", cid, h.now)
    assert c is not None and c["ttl"] == 120 and c["age"] == 50
    assert h.run(ReleaseClaim(id=h.id(), claim_id=cid)) == {}
    assert queries.get_claim(h.store, P, "proj", "q", cid, h.now) is None
    assert claim(h)[1] == ids
    assert h.run(UpdateClaim(id=h.id(), claim_id="nope"))["error"] == "not_found"


def test_dead_letter_after_max_claim_count_via_outbox() -> None:
    h = Harness()
    h.run(CreateQueue(id="c", metadata={"_max_claim_count": 2, "_dead_letter_queue": "dlq",
                                        "_dead_letter_queue_messages_ttl": 120}))
    (mid,) = post(h, "poison")
    for _ in range(2):
        cid, got = claim(h, ttl=60)
        assert got == [mid]
        h.run(ReleaseClaim(id=h.id(), claim_id=cid))  # every claim counts, release included
    assert claim(h)[1] == []  # third attempt moves it
    assert stats(h)["total"] == 0
    (origin, entry), = queries.outbox(h.store, P)
    move = ImportDeadLetters(id=h.id(), project="proj", queue="dlq", source_partition=P,
                             origin_offset=origin, messages=entry["messages"])
    assert h.run(move)["imported"] == 1
    again = ImportDeadLetters(id=h.id(), project="proj", queue="dlq", source_partition=P,
                              origin_offset=origin, messages=entry["messages"])
    assert h.run(again)["imported"] == 0  # a re-send after a crash is a no-op
    h.run(OutboxDone(id=h.id(), origin_offset=origin))
    assert queries.outbox(h.store, P) == []
    (m,) = queries.list_messages(h.store, P, "proj", "dlq", h.now, marker=None, limit=5,
                                 client_id=None, echo=True, include_claimed=False,
                                 include_delayed=True)
    assert (m.id, m.ttl) == (mid, 120)


def test_purge_keeps_claimed_messages() -> None:
    h = Harness()
    ids = post(h, *range(4))
    claim(h, limit=1)
    h.run(CreateSubscription(id=h.id(), subscription_id="s1", subscriber="http://x"))
    assert h.run(PurgeQueue(id=h.id(), resource_types=["messages"]))["purged"] == 3
    assert listing(h, include_claimed=True) == ids[:1]
    assert len(queries.list_subscriptions(h.store, P, "proj", "q", h.now, marker=None,
                                          limit=10)) == 1
    h.run(PurgeQueue(id=h.id(), resource_types=["subscriptions"]))
    assert queries.list_subscriptions(h.store, P, "proj", "q", h.now, marker=None,
                                      limit=10) == []


# -- subscriptions ---------------------------------------------------------------------------


def test_subscription_uniqueness_and_updates() -> None:
    h = Harness()
    out = h.run(CreateSubscription(id="a", subscription_id="s1", subscriber="http://a", ttl=600))
    assert out == {"subscription_id": "s1", "created": True}
    assert queries.queue_exists(h.store, P, "proj", "q")  # lazily created
    out = h.run(CreateSubscription(id="b", subscription_id="s2", subscriber="http://a"))
    assert out == {"subscription_id": "s1", "created": False}  # unconfirmed: same id
    h.run(ConfirmSubscription(id="c", subscription_id="s1", confirmed=True))
    out = h.run(CreateSubscription(id="d", subscription_id="s3", subscriber="http://a"))
    assert out["error"] == "conflict"
    h.run(CreateSubscription(id="e", subscription_id="s4", subscriber="http://b"))
    out = h.run(UpdateSubscription(id="f", subscription_id="s4",
                                   changes={"subscriber": "http://a"}))
    assert out["error"] == "conflict"
    h.run(UpdateSubscription(id="g", subscription_id="s4", changes={"ttl": 60,
                                                                    "options": {"x": 1}}))
    sub = queries.get_subscription(h.store, P, "proj", "q", "s4", h.now)
    assert sub is not None and sub["ttl"] == 60 and sub["options"] == {"x": 1}
    h.tick(61)
    assert queries.get_subscription(h.store, P, "proj", "q", "s4", h.now) is None
    assert h.run(ConfirmSubscription(id="h", subscription_id="s4"))["error"] == "not_found"


# -- the fold itself -------------------------------------------------------------------------


def test_duplicate_command_id_keeps_first_outcome_and_changes_nothing() -> None:
    h = Harness()
    (_mid,) = post(h, "x")
    first = h.run(CreateClaim(id="same", claim_id="c1", limit=1))
    before = digest(h.store)
    meta_before = queries.partition_state(h.store, P)
    again = h.run(CreateClaim(id="same", claim_id="c2", limit=1))
    assert again == first
    assert queries.partition_state(h.store, P)["offset"] == meta_before["offset"] + 1
    assert queries.get_claim(h.store, P, "proj", "q", "c2", h.now) is None
    assert before != digest(h.store)  # only the applied offset moved


def test_record_at_or_below_applied_offset_is_skipped() -> None:
    h = Harness()
    post(h, "x")
    record = h.records[-1]
    assert apply_record(h.store, P, 0, record) == {}


def test_bad_records_are_quarantined_and_the_partition_moves_on() -> None:
    h = Harness()
    store = h.store
    store.commit(apply_record(store, P, 0, b"not json"))
    store.commit(apply_record(store, P, 1, orjson.dumps({"v": 99, "t": "queue.create"})))
    bad_ttl = encode(PostMessages(id="x", project="p", queue="q", messages=[]))
    store.commit(apply_record(store, P, 2, bad_ttl.replace(b'"messages":[]',
                                                           b'"messages":[{"nope":1}]')))
    assert [o for o, _ in queries.quarantined(store, P)] == [0, 1, 2]
    assert queries.partition_state(store, P)["offset"] == 2
    h.offset = 3
    post(h, "fine")
    assert stats(h)["total"] == 1


def test_unknown_version_is_rejected_clearly() -> None:
    with pytest.raises(CommandDecodeError, match="unknown command version 2"):
        decode(orjson.dumps({"v": 2, "t": "queue.create", "id": "x"}))


def test_time_is_clamped_monotone_per_partition() -> None:
    h = Harness()
    h.run(PostMessages(id="a", time_ms=5_000_000, messages=[NewMessage(id="m1", body=1,
                                                                       ttl=60)]))
    h.run(PostMessages(id="b", time_ms=1_000, messages=[NewMessage(id="m2", body=2, ttl=60)]))
    state = queries.partition_state(h.store, P)
    assert state["time"] == 5_000_000
    m2 = queries.get_message(h.store, P, "proj", "q", "m2", 5_000_000)
    assert m2 is not None and m2.created == 5_000_000


def test_batches_see_themselves() -> None:
    """One log applied with batch size 1 and as one big batch digests equal (DESIGN §7)."""
    h = Harness()
    post(h, *range(10))
    for _ in range(4):
        claim(h, limit=3)
    h.run(PopMessages(id=h.id(), count=2))
    h.run(DeleteQueue(id=h.id(), queue="other"))
    one_by_one = MemoryStore()
    for offset, record in enumerate(h.records):
        one_by_one.commit(apply_record(one_by_one, P, offset, record))
    batched = MemoryStore()
    tx = Overlay(batched)
    for offset, record in enumerate(h.records):
        changes = apply_record(tx, P, offset, record)
        for lo, hi in changes.ranges:  # the range deletes first
            tx.delete_range(lo, hi)
        for key, value in changes.items():
            if value is None:
                tx.delete(key)
            else:
                tx.put(key, value)
    batched.commit(tx.changes)
    assert digest(one_by_one) == digest(batched) == digest(h.store)


def test_a_command_failing_midway_is_quarantined_with_its_writes_undone() -> None:
    h = Harness()
    broken = ImportDeadLetters(id="imp", project="proj", queue="dlq", source_partition=P,
                               origin_offset=5, messages=[{"id": "m", "body": 1}])  # no ttl
    h.store.commit(apply_record(h.store, P, 0, encode(broken)))
    assert [o for o, _ in queries.quarantined(h.store, P)] == [0]
    assert h.store.get(K.hwm(P, P)) is None  # written before the failure, rolled back
    assert not queries.queue_exists(h.store, P, "proj", "dlq")
    assert queries.outcome(h.store, P, "imp") is None


def test_sweep_does_bounded_work() -> None:
    h = Harness()
    post(h, *range(5), ttl=60)
    h.tick(61)
    assert h.run(Sweep(id=h.id(), cutoff_ms=h.now, max_count=2))["messages"] == 2
    assert h.run(Sweep(id=h.id(), cutoff_ms=h.now, max_count=2))["messages"] == 2
    assert h.run(Sweep(id=h.id(), cutoff_ms=h.now, max_count=2))["messages"] == 1
    assert h.run(Sweep(id=h.id(), cutoff_ms=h.now, max_count=2))["messages"] == 0


def test_out_of_range_grace_is_clamped_not_quarantined() -> None:
    h = Harness()
    post(h, "x", ttl=60)
    cid, _ = claim(h, ttl=60)
    h.tick(100)
    h.run(UpdateClaim(id=h.id(), claim_id=cid, ttl=60, grace=-10**9))
    assert queries.quarantined(h.store, P) == []


def test_dead_letter_queue_must_be_a_queue_name() -> None:
    h = Harness()
    h.run(CreateQueue(id="c"))
    for bad in (5, "", "no/slash", "x" * 65):
        out = h.run(UpdateQueue(id=h.id(), limits={}, ops=[
            {"op": "add", "key": "_dead_letter_queue", "value": bad}]))
        assert out["error"] == "invalid", bad
    out = h.run(UpdateQueue(id=h.id(), limits={}, ops=[
        {"op": "add", "key": "_dead_letter_queue", "value": "dead.letters-1"}]))
    assert out["metadata"]["_dead_letter_queue"] == "dead.letters-1"
