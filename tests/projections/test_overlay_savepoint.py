"""Savepoints: a refused or failing command's writes are undone exactly (apply_into uses them)."""

from __future__ import annotations

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
