"""Savepoints: a refused or failing command's writes are undone exactly (apply_into uses them)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.memstore import MemoryStore
from projections.overlay import Overlay

keys = st.binary(min_size=1, max_size=3)
ops = st.lists(st.tuples(keys, st.one_of(st.none(), st.binary(max_size=3))), max_size=30)


def _write(tx: Overlay, writes: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            tx.delete(key)
        else:
            tx.put(key, value)


@given(base=st.dictionaries(keys, st.binary(max_size=3), max_size=10), before=ops, during=ops,
       scan_between=st.booleans())
def test_rollback_restores_exactly_the_state_at_the_savepoint(
    base: dict[bytes, bytes], before: list, during: list, scan_between: bool
) -> None:
    store = MemoryStore()
    store.commit(base)
    tx = Overlay(store)
    _write(tx, before)
    if scan_between:
        list(tx.scan(b"", b"\xff" * 4))  # moves fresh keys into the sorted map
    expected_changes = tx.changes
    expected_scan = list(tx.scan(b"", b"\xff" * 4))
    tx.savepoint()
    _write(tx, during)
    tx.rollback()
    assert tx.changes == expected_changes
    assert list(tx.scan(b"", b"\xff" * 4)) == expected_scan
    for key, _ in during:
        assert tx.get(key) == (expected_changes[key] if key in expected_changes
                               else base.get(key))


def test_release_keeps_the_writes() -> None:
    tx = Overlay(MemoryStore())
    tx.savepoint()
    tx.put(b"a", b"1")
    tx.release()
    tx.savepoint()
    tx.rollback()
    assert tx.changes == {b"a": b"1"}


def test_a_key_put_new_and_deleted_in_one_overlay_commits_nothing() -> None:
    store = MemoryStore()
    store.commit({b"old": b"1"})
    tx = Overlay(store)
    tx.put_new(b"born", b"x")
    tx.put_new(b"twice", b"x")
    tx.put(b"twice", b"y")
    assert tx.get(b"born") == b"x"
    tx.delete(b"born")
    tx.delete(b"twice")
    assert tx.get(b"born") is None and tx.get(b"twice") is None
    assert list(tx.scan(b"a", b"z")) == [(b"old", b"1")]
    assert tx.changes == {}
    # A key pending as a tombstone over the base is not new: its delete must stay.
    tx.delete(b"old")
    tx.put_new(b"old", b"2")
    tx.delete(b"old")
    assert tx.changes == {b"old": None}


def test_rollback_brings_back_a_born_key_its_command_deleted() -> None:
    tx = Overlay(MemoryStore())
    tx.put_new(b"born", b"x")
    tx.savepoint()
    tx.delete(b"born")
    tx.rollback()
    assert tx.get(b"born") == b"x"
    assert tx.changes == {b"born": b"x"}
    tx.delete(b"born")  # no longer known as born: a harmless tombstone of an absent key
    assert tx.get(b"born") is None


puts = st.lists(st.tuples(keys, st.binary(max_size=3)), max_size=20)


@given(base=st.dictionaries(keys, st.binary(max_size=3), max_size=10), before=ops, many=puts,
       after=ops, rollback=st.booleans(), scan_between=st.booleans())
def test_put_many_is_each_put_in_order(
    base: dict[bytes, bytes], before: list, many: list, after: list, rollback: bool,
    scan_between: bool,
) -> None:
    """``put_many`` (a post's message keys, issue 15) leaves what a ``put`` of each pair in
    turn leaves: reads, scans, changes, and what a rollback undoes."""
    store = MemoryStore()
    store.commit(base)
    one, bulk = Overlay(store), Overlay(store)
    for tx in (one, bulk):
        _write(tx, before)
        if scan_between:
            list(tx.scan(b"", b"\xff" * 4))
        tx.savepoint()
    _write(one, many)
    bulk.put_many(many)
    for tx in (one, bulk):
        _write(tx, after)
        if rollback:
            tx.rollback()
    assert bulk.changes == one.changes
    assert list(bulk.scan(b"", b"\xff" * 4)) == list(one.scan(b"", b"\xff" * 4))
    for key, _ in [*before, *many, *after]:
        assert bulk.get(key) == one.get(key)


def test_put_many_checks_types_where_the_bug_is() -> None:
    tx = Overlay(MemoryStore())
    for bad in ([("k", b"v")], [(b"k", "v")]):
        with pytest.raises(TypeError, match="must be bytes"):
            tx.put_many(bad)  # type: ignore[arg-type]
