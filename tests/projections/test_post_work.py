"""The work of applying posts (issue 15), counted: what a batch reads must not grow with the
posts in the batch or the messages in a post, beyond what each one writes.

Real overlays over a real MemoryStore; the counting subclasses only count calls.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from projections.apply import apply_into
from projections.commands import CreateSubscription, NewMessage, PostMessages, SetRules, encode
from projections.memstore import MemoryStore
from projections.overlay import Overlay
from projections.rules import versions
from projections.runner import digest

P = 0
T0 = 1_800_000_000_000


class CountingStore(MemoryStore):
    """A MemoryStore that counts the scans opened on it."""

    scans = 0

    def scan(self, start: bytes, stop: bytes, *,
             reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        self.scans += 1
        return super().scan(start, stop, reverse=reverse)


class CountingOverlay(Overlay):
    """An Overlay that counts the point reads made through it."""

    gets = 0

    def get(self, key: bytes) -> bytes | None:
        self.gets += 1
        return super().get(key)


def _post(n: int, messages: int = 1, ttls: int = 1) -> bytes:
    """A post of ``messages`` with ``ttls`` different TTLs."""
    return encode(PostMessages(
        id=f"post{n}", project="p", queue="q", client_id="c", time_ms=T0 + n, size=10,
        deliver=True, messages=[NewMessage(id=f"m{n}.{i}", body={"i": i}, ttl=60 + i % ttls)
                                for i in range(messages)]))


def _store(subscribed: bool) -> tuple[CountingStore, int]:
    """A store under the latest rules holding queue ``q`` (subscribed or not): next offset."""
    store = CountingStore()
    records = [encode(SetRules(id="r", time_ms=T0, version=versions.LATEST)), _post(-1)]
    if subscribed:
        records.append(encode(CreateSubscription(
            id="s", project="p", queue="q", time_ms=T0, subscription_id="sub",
            subscriber="http://h/x", ttl=3600)))
    tx = Overlay(store)
    for offset, record in enumerate(records):
        apply_into(tx, P, offset, record)
    store.commit(tx.changes)
    return store, len(records)


@pytest.mark.parametrize("subscribed", [False, True])
def test_a_batch_of_posts_scans_the_store_once_whatever_its_size(subscribed: bool) -> None:
    """Whether a queue has subscriptions is asked of the store once per batch, not once per
    post (a RocksDB iterator each); the fan-out entries are those of one post at a time."""
    for posts in (1, 8, 32):
        store, first = _store(subscribed)
        store.scans = 0
        tx = Overlay(store)
        for n in range(posts):
            apply_into(tx, P, first + n, _post(n))
        assert store.scans == 1, posts
        fanouts = sum(1 for key, value in tx.changes.items()
                      if key[2] == 0x86 and value is not None)
        assert fanouts == (posts if subscribed else 0)


def test_a_subscription_written_in_the_batch_is_seen_by_the_next_post() -> None:
    store, first = _store(False)
    tx = Overlay(store)
    apply_into(tx, P, first, _post(0))
    apply_into(tx, P, first + 1, encode(CreateSubscription(
        id="s2", project="p", queue="q", time_ms=T0 + 1, subscription_id="sub2",
        subscriber="http://h/y", ttl=3600)))
    apply_into(tx, P, first + 2, _post(1))
    fanouts = [key for key, value in tx.changes.items() if key[2] == 0x86 and value is not None]
    assert len(fanouts) == 1  # the second post only: the first saw no subscription


def test_reads_per_post_do_not_grow_with_its_messages() -> None:
    """A post's point reads are the same for 1 message and for 50 in one seq block with one
    TTL: the block's bound is read once, the queue once (it was read twice, the bound per
    message). Each more expiry time reads its counts once (at most three keys)."""
    gets = {}
    for messages in (1, 50):
        store, first = _store(False)
        tx = CountingOverlay(store)
        apply_into(tx, P, first, _post(0, messages))
        gets[messages] = tx.gets
    assert gets[50] == gets[1], gets
    store, first = _store(False)
    tx = CountingOverlay(store)
    apply_into(tx, P, first, _post(0, 50, ttls=3))
    assert tx.gets <= gets[1] + 2 * 3 + 2  # two more times: counts and a higher bound

def test_a_post_of_many_folds_like_posts_of_one() -> None:
    """Sanity of the counts above: 50 messages in one post and in 50 posts leave the same
    messages (ids, seqs, expiry index, bounds, counts) apart from the outcomes and offsets."""
    one, first = _store(False)
    tx = Overlay(one)
    apply_into(tx, P, first, _post(0, 50, ttls=3))
    one.commit(tx.changes)
    many, _ = _store(False)
    tx = Overlay(many)
    for i in range(50):
        record = encode(PostMessages(
            id=f"post0.{i}", project="p", queue="q", client_id="c", time_ms=T0, size=10,
            deliver=True, messages=[NewMessage(id=f"m0.{i}", body={"i": i}, ttl=60 + i % 3)]))
        apply_into(tx, P, first + i, record)
    many.commit(tx.changes)

    def messages(store: MemoryStore) -> str:
        state = MemoryStore({key: value for key, value in store.scan(b"", b"\xff" * 4)
                             if 0x20 <= key[2] < 0x30})
        return digest(state)

    assert messages(one) == messages(many)
