"""One contract for every ViewStore (MemoryStore, RocksStore, and an Overlay over each).

Apply is tested on MemoryStore and runs in production on RocksStore through an Overlay; they
must agree on every read, or a test proves nothing about production (DESIGN §3, §7).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.memstore import MemoryStore
from projections.overlay import Overlay
from projections.rocksstore import BULK_CHUNK, RocksStore, StoreClosedError, StoreLockedError
from projections.store import ChangeSet, View, ViewStore, ranges_of
from projections.tombstones import TombstoneStore

REPO = Path(__file__).resolve().parents[2]

# Keys chosen to sit on every edge a bytes ordering has: empty, 0x00 runs, prefixes of each
# other, 0xff runs.
EDGE_KEYS = [
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x00\xff",
    b"a",
    b"a\x00",
    b"a\x00\x00",
    b"a\xff",
    b"a\xff\xff",
    b"ab",
    b"b",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\xff",
]
TOP = b"\xff\xff\xff\xff"  # above every key used here


class OverlayStore:
    """A ViewStore made of an Overlay over ``base``: reads go through the overlay.

    ``commit`` stages the changes in a child overlay first (so a bad batch is rejected before
    anything is touched), moves them into the overlay, then — when ``flush`` — commits
    ``overlay.changes`` to the base as the runner does. The pending writes are kept after a
    flush, so every read merges pending entries with the same base entries; with
    ``flush=False`` everything stays pending and the overlay alone must act as the store.
    """

    def __init__(self, base: ViewStore, flush: bool = True) -> None:
        self.base = base
        self.view = Overlay(base)
        self.flush = flush

    def get(self, key: bytes) -> bytes | None:
        return self.view.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return self.view.scan(start, stop, reverse=reverse)

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        child = Overlay(self.view)
        for start, stop in ranges_of(changes):  # a batch's range deletes come first
            child.delete_range(start, stop)
        for key, value in changes.items():
            if value is None:
                child.delete(key)
            else:
                child.put(key, value)  # type: ignore[arg-type]  # bad types raise here
        moved = child.changes
        for start, stop in moved.ranges:
            self.view.delete_range(start, stop)
        for key, value in moved.items():
            if value is None:
                self.view.delete(key)
            else:
                self.view.put(key, value)
        if self.flush:
            self.base.commit(self.view.changes)

    def close(self) -> None:
        self.base.close()


STORES = ["memory", "rocks", "overlay-memory", "overlay-rocks", "pending-memory"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ViewStore]:
    kind: str = request.param
    made: ViewStore
    if kind == "memory":
        made = MemoryStore()
    elif kind == "rocks":
        made = RocksStore(tmp_path / "store")
    elif kind == "overlay-memory":
        made = OverlayStore(MemoryStore())
    elif kind == "overlay-rocks":
        made = OverlayStore(RocksStore(tmp_path / "store"))
    else:
        made = OverlayStore(MemoryStore(), flush=False)
    yield made
    made.close()


def fill(store: ViewStore, keys: list[bytes]) -> dict[bytes, bytes]:
    """Commit ``key -> b"v:" + key`` for every key; returns the model dict."""
    model = {key: b"v:" + key for key in keys}
    store.commit(model)
    return model


def expected(
    model: Mapping[bytes, bytes], start: bytes, stop: bytes, reverse: bool = False
) -> list[tuple[bytes, bytes]]:
    return sorted(
        ((k, v) for k, v in model.items() if start <= k < stop), reverse=reverse
    )


def prefix_stop(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix`` (finite prefixes)."""
    stripped = prefix.rstrip(b"\xff")
    assert stripped, "an all-0xff prefix has no finite upper bound"
    return stripped[:-1] + bytes([stripped[-1] + 1])


# --- the contract -------------------------------------------------------------------------


def test_implements_the_protocols(store: ViewStore) -> None:
    assert isinstance(store, ViewStore)
    assert isinstance(store, View)


def test_get_missing_is_none(store: ViewStore) -> None:
    assert store.get(b"nope") is None
    assert list(store.scan(b"", b"\xff\xff")) == []


def test_put_get_overwrite_delete(store: ViewStore) -> None:
    store.commit({b"k1": b"one", b"k2": b"two"})
    assert store.get(b"k1") == b"one"
    assert store.get(b"k2") == b"two"
    store.commit({b"k1": b"uno", b"k2": None, b"never-there": None})
    assert store.get(b"k1") == b"uno"
    assert store.get(b"k2") is None
    assert store.get(b"never-there") is None
    assert list(store.scan(b"k", b"l")) == [(b"k1", b"uno")]


def test_empty_value_and_empty_key_are_not_missing(store: ViewStore) -> None:
    store.commit({b"": b"empty key", b"e": b""})
    assert store.get(b"") == b"empty key"
    assert store.get(b"e") == b""
    assert list(store.scan(b"", b"f")) == [(b"", b"empty key"), (b"e", b"")]


def test_empty_commit_changes_nothing(store: ViewStore) -> None:
    model = fill(store, [b"a", b"b"])
    store.commit({})
    assert list(store.scan(b"", b"\xff")) == expected(model, b"", b"\xff")


@pytest.mark.parametrize("start, stop", [(b"a", b"b"), (b"", b"a"), (b"a\x00", b"\xff"),
                                         (b"\xff", TOP), (b"", TOP)])
def test_range_delete_drops_exactly_the_range(store: ViewStore, start: bytes,
                                              stop: bytes) -> None:
    model = fill(store, EDGE_KEYS)
    store.commit(ChangeSet(ranges=[(start, stop)]))
    left = {k: v for k, v in model.items() if not start <= k < stop}
    assert list(store.scan(b"", TOP)) == expected(left, b"", TOP)
    assert list(store.scan(b"", TOP, reverse=True)) == expected(left, b"", TOP, reverse=True)
    assert sorted(k for k in EDGE_KEYS if store.get(k) is not None) == sorted(left)


def test_range_delete_comes_before_the_point_writes_of_its_batch(store: ViewStore) -> None:
    fill(store, [b"a", b"a\x00", b"ab", b"b"])
    store.commit(ChangeSet({b"a\x00": b"new", b"b": None, b"c": b"3"}, [(b"a", b"b\x00")]))
    assert list(store.scan(b"", TOP)) == [(b"a\x00", b"new"), (b"c", b"3")]
    assert store.get(b"a") is None and store.get(b"a\x00") == b"new"


def test_empty_and_inverted_range_deletes_change_nothing(store: ViewStore) -> None:
    model = fill(store, [b"a", b"b"])
    store.commit(ChangeSet(ranges=[(b"b", b"a"), (b"a", b"a")]))
    assert list(store.scan(b"", TOP)) == expected(model, b"", TOP)


def test_a_bad_range_bound_rejects_the_whole_batch(store: ViewStore) -> None:
    model = fill(store, [b"a", b"b"])
    with pytest.raises(TypeError):
        store.commit(ChangeSet({b"c": b"3"}, [(b"a", "b")]))  # type: ignore[list-item]
    assert list(store.scan(b"", TOP)) == expected(model, b"", TOP)


def test_large_value_round_trips(store: ViewStore) -> None:
    value = os.urandom(1 << 20)
    store.commit({b"big": value})
    assert store.get(b"big") == value


BOUNDS = [
    (b"", b"\x00"),  # just the empty key
    (b"", b"\xff\xff\xff\xff"),  # everything
    (b"\x00", b"\x00\x00"),
    (b"\x00", b"\x00\x01"),
    (b"a", b"b"),  # prefix "a"
    (b"a", b"a\x00"),  # exactly "a"
    (b"a\x00", b"a\xff"),  # stop excludes the boundary key
    (b"a\x00", b"a\xff\x00"),
    (b"ab", b"ab\x00"),
    (b"0", b"9"),  # no keys inside
    (b"\xff", b"\xff\xff"),
    (b"\xff", b"\xff\xff\xff\xff"),
    (b"\xfe", b"\xff"),
    (b"\x00\xff", b"b"),
    (b"zz", b"\xff"),
]


@pytest.mark.parametrize(("start", "stop"), BOUNDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_scan_bounds(store: ViewStore, start: bytes, stop: bytes, reverse: bool) -> None:
    model = fill(store, EDGE_KEYS)
    got = list(store.scan(start, stop, reverse=reverse))
    assert got == expected(model, start, stop, reverse)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_start_inclusive_stop_exclusive(store: ViewStore, reverse: bool) -> None:
    fill(store, [b"k1", b"k2", b"k3"])
    keys = [k for k, _ in store.scan(b"k1", b"k3", reverse=reverse)]
    assert keys == ([b"k2", b"k1"] if reverse else [b"k1", b"k2"])


@pytest.mark.parametrize(
    ("start", "stop"), [(b"a", b"a"), (b"b", b"a"), (b"", b""), (b"\xff", b"\x00")]
)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_empty_and_inverted_ranges(
    store: ViewStore, start: bytes, stop: bytes, reverse: bool
) -> None:
    fill(store, EDGE_KEYS)
    assert list(store.scan(start, stop, reverse=reverse)) == []


@pytest.mark.parametrize("prefix", [b"a", b"a\x00", b"a\xff", b"\x00", b"\xfe"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_prefix_ranges(store: ViewStore, prefix: bytes, reverse: bool) -> None:
    model = fill(store, EDGE_KEYS)
    got = [k for k, _ in store.scan(prefix, prefix_stop(prefix), reverse=reverse)]
    want = sorted((k for k in model if k.startswith(prefix)), reverse=reverse)
    assert got == want


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_many_keys_in_order(store: ViewStore, reverse: bool) -> None:
    keys = [i.to_bytes(2, "big") for i in range(0, 3000, 3)]
    model = fill(store, keys)
    start, stop = (100).to_bytes(2, "big"), (2500).to_bytes(2, "big")
    assert list(store.scan(start, stop, reverse=reverse)) == expected(model, start, stop, reverse)


@pytest.mark.parametrize(
    "bad",
    [
        {b"k1": b"new", b"k2": "text", b"a": None},
        {b"k1": b"new", b"k2": 5, b"a": None},
        {b"k1": b"new", "text-key": b"x", b"a": None},
        {b"k1": b"new", b"k2": bytearray(b"x")},
    ],
    ids=["str-value", "int-value", "str-key", "bytearray-value"],
)
def test_commit_is_atomic(store: ViewStore, bad: dict) -> None:  # type: ignore[type-arg]
    model = fill(store, [b"a", b"k1"])
    with pytest.raises(TypeError):
        store.commit(bad)
    assert store.get(b"k1") == model[b"k1"]
    assert store.get(b"a") == model[b"a"]
    assert list(store.scan(b"", b"\xff")) == expected(model, b"", b"\xff")
    store.commit({b"k1": b"after"})  # the store still works
    assert store.get(b"k1") == b"after"


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_scan_stopped_early(store: ViewStore, reverse: bool) -> None:
    model = fill(store, [i.to_bytes(3, "big") for i in range(5000)])
    scan = store.scan(b"", b"\xff", reverse=reverse)
    assert list(islice(scan, 20)) == expected(model, b"", b"\xff", reverse)[:20]
    store.commit({b"\x00\x00\x05": b"changed"})  # an abandoned scan blocks nothing
    assert store.get(b"\x00\x00\x05") == b"changed"


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_scan_survives_commits_between_items(store: ViewStore, reverse: bool) -> None:
    """Every store tolerates commits while a scan is suspended: order holds, no repeats,
    and keys the commits never touched are all seen (snapshot or cursor semantics)."""
    keys = [b"k%03d" % i for i in range(300)]
    fill(store, keys)
    scan = store.scan(b"k", b"l", reverse=reverse)
    seen = [k for k, _ in islice(scan, 10)]
    touched = {b"k%03d" % i for i in range(0, 300, 7)} | {b"k050x", b"k250x"}
    store.commit({k: (None if k in keys else b"new") for k in touched})
    seen += [k for k, _ in scan]
    assert seen == sorted(set(seen), reverse=reverse)
    assert set(keys) - touched <= set(seen)


# --- Overlay ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "rocks"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ViewStore]:
    made: ViewStore = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "b")
    yield made
    made.close()


def both(view: View, start: bytes = b"", stop: bytes = b"\xff") -> tuple[list[bytes], list[bytes]]:
    """Keys of a scan forwards and backwards."""
    return (
        [k for k, _ in view.scan(start, stop)],
        [k for k, _ in view.scan(start, stop, reverse=True)],
    )


def test_overlay_pending_deletes_hide_base_keys(base: ViewStore) -> None:
    fill(base, [b"a", b"b", b"c", b"d"])
    overlay = Overlay(base)
    overlay.delete(b"b")
    overlay.delete(b"d")
    overlay.delete(b"zz")  # deleting a key the base never had is harmless
    assert overlay.get(b"b") is None
    assert base.get(b"b") == b"v:b"
    assert both(overlay) == ([b"a", b"c"], [b"c", b"a"])
    assert overlay.changes == {b"b": None, b"d": None, b"zz": None}


def test_overlay_pending_puts_interleave_and_override(base: ViewStore) -> None:
    fill(base, [b"b", b"d", b"f"])
    overlay = Overlay(base)
    overlay.put(b"a", b"new-a")
    overlay.put(b"d", b"new-d")
    overlay.put(b"e", b"new-e")
    overlay.put(b"g", b"new-g")
    want = [(b"a", b"new-a"), (b"b", b"v:b"), (b"d", b"new-d"), (b"e", b"new-e"),
            (b"f", b"v:f"), (b"g", b"new-g")]
    assert list(overlay.scan(b"", b"\xff")) == want
    assert list(overlay.scan(b"", b"\xff", reverse=True)) == want[::-1]
    assert list(overlay.scan(b"b", b"f")) == want[1:4]
    assert list(overlay.scan(b"b", b"f", reverse=True)) == want[1:4][::-1]
    assert overlay.get(b"d") == b"new-d"
    assert base.get(b"d") == b"v:d"


def test_overlay_put_after_delete_and_delete_after_put(base: ViewStore) -> None:
    fill(base, [b"a", b"b"])
    overlay = Overlay(base)
    overlay.delete(b"a")
    overlay.put(b"a", b"back")
    overlay.put(b"c", b"new")
    overlay.delete(b"c")
    assert overlay.get(b"a") == b"back"
    assert overlay.get(b"c") is None
    assert list(overlay.scan(b"", b"\xff")) == [(b"a", b"back"), (b"b", b"v:b")]
    assert overlay.changes == {b"a": b"back", b"c": None}


def test_overlay_commit_and_clear(base: ViewStore) -> None:
    fill(base, [b"a", b"b"])
    overlay = Overlay(base)
    overlay.put(b"c", b"3")
    overlay.delete(b"a")
    before = list(overlay.scan(b"", b"\xff"))
    base.commit(overlay.changes)
    overlay.clear()
    assert overlay.changes == {}
    assert list(overlay.scan(b"", b"\xff")) == before == list(base.scan(b"", b"\xff"))


def test_overlay_range_delete_hides_base_keys_and_keeps_later_writes(base: ViewStore) -> None:
    fill(base, [b"a", b"b", b"b1", b"b2", b"c"])
    overlay = Overlay(base)
    overlay.put(b"b3", b"before")  # written before the range delete: gone with it
    overlay.put(b"c1", b"outside")
    overlay.delete_range(b"b", b"c")
    overlay.put(b"b2", b"after")  # written after it: kept
    assert both(overlay) == ([b"a", b"b2", b"c", b"c1"], [b"c1", b"c", b"b2", b"a"])
    assert overlay.get(b"b") is None and overlay.get(b"b3") is None
    assert overlay.get(b"b2") == b"after"
    assert overlay.ranges == [(b"b", b"c")]
    view = list(overlay.scan(b"", b"\xff"))
    base.commit(overlay.changes)
    assert list(base.scan(b"", b"\xff")) == view


def test_overlay_range_delete_is_undone_by_a_rollback(base: ViewStore) -> None:
    fill(base, [b"a", b"b", b"c"])
    overlay = Overlay(base)
    overlay.put(b"b1", b"kept")
    overlay.savepoint()
    overlay.delete_range(b"b", b"c")
    overlay.put(b"b2", b"gone")
    overlay.rollback()
    assert both(overlay)[0] == [b"a", b"b", b"b1", b"c"]
    assert overlay.ranges == [] and overlay.changes == {b"b1": b"kept"}


def test_overlay_range_delete_during_its_own_scan(base: ViewStore) -> None:
    fill(base, [b"a", b"b", b"c", b"d"])
    overlay = Overlay(base)
    scan = overlay.scan(b"", b"\xff")
    assert next(scan)[0] == b"a"
    overlay.delete_range(b"b", b"d")  # ahead of the scan: not seen
    assert [k for k, _ in scan] == [b"d"]


def test_stacked_overlays_carry_range_deletes(base: ViewStore) -> None:
    fill(base, [b"a", b"b", b"c"])
    parent = Overlay(base)
    parent.put(b"b1", b"p")
    child = Overlay(parent)
    child.delete_range(b"b", b"c")
    assert both(child)[0] == [b"a", b"c"]
    assert both(parent)[0] == [b"a", b"b", b"b1", b"c"]
    assert child.changes.ranges == [(b"b", b"c")]


def test_tombstone_store_counts_range_deleted_keys_as_dead() -> None:
    store = TombstoneStore()
    store.commit({b"a": b"1", b"b": b"2", b"c": b"3"})
    store.commit(ChangeSet(ranges=[(b"a", b"c")]))
    assert list(store.scan(b"", TOP)) == [(b"c", b"3")]
    assert store.dead == 2 and store.stepped == 3


def test_overlay_changes_is_a_copy(base: ViewStore) -> None:
    overlay = Overlay(base)
    overlay.put(b"a", b"1")
    overlay.changes[b"b"] = b"2"
    assert overlay.changes == {b"a": b"1"}


def test_overlay_rejects_non_bytes(base: ViewStore) -> None:
    overlay = Overlay(base)
    with pytest.raises(TypeError):
        overlay.put(b"a", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        overlay.put("a", b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        overlay.delete("a")  # type: ignore[arg-type]
    assert overlay.changes == {}


def test_stacked_overlays(base: ViewStore) -> None:
    fill(base, [b"a", b"b", b"c"])
    middle = Overlay(base)
    middle.delete(b"a")
    middle.put(b"d", b"mid-d")
    top = Overlay(middle)
    top.put(b"a", b"top-a")
    top.delete(b"c")
    top.put(b"e", b"top-e")
    assert top.base is middle
    want = [(b"a", b"top-a"), (b"b", b"v:b"), (b"d", b"mid-d"), (b"e", b"top-e")]
    assert list(top.scan(b"", b"\xff")) == want
    assert list(top.scan(b"", b"\xff", reverse=True)) == want[::-1]
    assert both(middle) == ([b"b", b"c", b"d"], [b"d", b"c", b"b"])
    assert top.changes == {b"a": b"top-a", b"c": None, b"e": b"top-e"}
    # fold top into middle, middle into the base: the base ends as top saw it
    for key, value in top.changes.items():
        if value is None:
            middle.delete(key)
        else:
            middle.put(key, value)
    base.commit(middle.changes)
    assert list(base.scan(b"", b"\xff")) == want


class CountingView:
    """A real View (a MemoryStore) that counts the items its scans hand out."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.pulled = 0

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        for item in self.inner.scan(start, stop, reverse=reverse):
            self.pulled += 1
            yield item


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_overlay_scan_is_lazy(reverse: bool) -> None:
    inner = MemoryStore({i.to_bytes(4, "big"): b"x" for i in range(100_000)})
    counting = CountingView(inner)
    overlay = Overlay(counting)
    for i in range(0, 100_000, 1000):
        overlay.delete(i.to_bytes(4, "big"))
    first = list(islice(overlay.scan(b"", b"\xff", reverse=reverse), 20))
    assert len(first) == 20
    assert counting.pulled <= 23  # 20 taken, one deleted, one look-ahead


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_overlay_writes_during_its_own_scan(base: ViewStore, reverse: bool) -> None:
    """Apply claims messages while scanning them: writes ahead of the scan are seen,
    writes behind it are not revisited, nothing repeats or goes out of order."""
    fill(base, [b"m%03d" % i for i in range(0, 200, 2)])
    overlay = Overlay(base)
    for i in range(1, 200, 10):
        overlay.put(b"m%03d" % i, b"pending")
    seen: list[bytes] = []
    for key, _ in overlay.scan(b"m", b"n", reverse=reverse):
        seen.append(key)
        n = int(key[1:])
        ahead, behind = (n - 3, n + 3) if reverse else (n + 3, n - 3)
        if 0 <= ahead < 200:
            overlay.put(b"m%03d" % ahead, b"ahead")
        if 0 <= behind < 200:
            overlay.put(b"m%03d" % behind, b"behind")
        overlay.delete(b"m%03d" % (n - 1 if reverse else n + 1))  # hide the next key
        overlay.put(key, b"claimed")
    assert seen == sorted(set(seen), reverse=reverse)
    assert all(overlay.get(k) == b"claimed" for k in seen)


# --- property: Overlay over MemoryStore against a dict ------------------------------------

keys_st = st.binary(max_size=3)
ops_st = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]), st.integers(0, 1), keys_st, st.binary(max_size=4)
    ),
    max_size=60,
)


def apply_op(overlay: Overlay, op: str, key: bytes, value: bytes) -> None:
    if op == "put":
        overlay.put(key, value)
    elif op == "delete":
        overlay.delete(key)
    else:
        overlay.clear()


def model_apply(model: dict[bytes, bytes], op: str, key: bytes, value: bytes) -> None:
    if op == "put":
        model[key] = value
    else:
        model.pop(key, None)


@settings(max_examples=300, deadline=None)
@given(
    base_items=st.dictionaries(keys_st, st.binary(max_size=4), max_size=40),
    ops=ops_st,
    start=keys_st,
    stop=keys_st,
)
def test_property_stacked_overlays_match_a_dict(
    base_items: dict[bytes, bytes],
    ops: list[tuple[str, int, bytes, bytes]],
    start: bytes,
    stop: bytes,
) -> None:
    bottom = Overlay(MemoryStore(base_items))
    top = Overlay(bottom)
    bottom_model = dict(base_items)
    top_ops = []
    for op, layer, key, value in ops:
        if layer == 0:
            apply_op(bottom, op, key, value)
            model_apply(bottom_model, op, key, value)
        else:
            apply_op(top, op, key, value)
            top_ops.append((op, key, value))
    top_model = dict(bottom_model)
    for op, key, value in top_ops:
        model_apply(top_model, op, key, value)
    for view, model in ((bottom, bottom_model), (top, top_model)):
        for reverse in (False, True):
            assert list(view.scan(start, stop, reverse=reverse)) == expected(
                model, start, stop, reverse
            )
            assert list(view.scan(b"", b"\xff\xff\xff\xff", reverse=reverse)) == expected(
                model, b"", b"\xff\xff\xff\xff", reverse
            )
        for _, _, key, _ in ops:
            assert view.get(key) == model.get(key)


def check_cursor_semantics(
    make_scan: Callable[[], Iterator[tuple[bytes, bytes]]],
    write: Callable[[str, bytes, bytes], None],
    model: dict[bytes, bytes],
    ops: list[tuple[str, bytes, bytes]],
    start: bytes,
    stop: bytes,
    reverse: bool,
    base_items: Mapping[bytes, bytes] | None = None,
) -> None:
    """One write after each item (``clear`` resets the model to ``base_items``).

    Cursor semantics: every item is current when yielded, order holds, and every key that was
    present ahead of the scan's position at some moment and stayed present is yielded.
    """

    def in_range_ahead(key: bytes, position: bytes | None) -> bool:
        if not start <= key < stop:
            return False
        return position is None or (key < position if reverse else key > position)

    scan = make_scan()
    must = {k for k in model if in_range_ahead(k, None)}
    seen: list[bytes] = []
    todo = list(ops)
    for key, value in scan:
        assert value == model.get(key)
        seen.append(key)
        if todo:
            op, k, v = todo.pop(0)
            write(op, k, v)
            if op == "clear":
                model.clear()
                model.update(base_items or {})
            else:
                model_apply(model, op, k, v)
            must = {m for m in must if m in model}
            must |= {m for m in model if in_range_ahead(m, key)}
    assert seen == sorted(set(seen), reverse=reverse)
    assert all(start <= k < stop for k in seen)
    assert must <= set(seen)


write_ops = st.tuples(st.sampled_from(["put", "delete"]), keys_st, st.binary(max_size=2))


@settings(max_examples=300, deadline=None)
@given(
    base_items=st.dictionaries(keys_st, st.binary(max_size=2), max_size=30),
    pre=st.lists(write_ops),
    during=st.lists(
        st.one_of(write_ops, write_ops, write_ops, st.just(("clear", b"", b""))), max_size=30
    ),
    start=keys_st,
    stop=st.one_of(keys_st, st.just(TOP)),
    reverse=st.booleans(),
)
def test_property_writes_during_scans(
    base_items: dict[bytes, bytes],
    pre: list[tuple[str, bytes, bytes]],
    during: list[tuple[str, bytes, bytes]],
    start: bytes,
    stop: bytes,
    reverse: bool,
) -> None:
    # an overlay written (and cleared) while its own scan is suspended
    overlay = Overlay(MemoryStore(base_items))
    model = dict(base_items)
    for op, key, value in pre:
        apply_op(overlay, op, key, value)
        model_apply(model, op, key, value)
    check_cursor_semantics(
        lambda: overlay.scan(start, stop, reverse=reverse),
        lambda op, k, v: apply_op(overlay, op, k, v),
        model, during, start, stop, reverse, base_items,
    )
    # a MemoryStore committed to while its scan is suspended
    memory = MemoryStore(base_items)
    commits = [o for o in during if o[0] != "clear"]
    check_cursor_semantics(
        lambda: memory.scan(start, stop, reverse=reverse),
        lambda op, k, v: memory.commit({k: v if op == "put" else None}),
        dict(base_items), commits, start, stop, reverse,
    )


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_cursor_semantics_across_chunks(reverse: bool) -> None:
    """Hundreds of keys on both sides, so scans refill their chunks while being written."""
    base_items = {b"k%04d" % i: b"b" for i in range(0, 1000, 2)}
    overlay = Overlay(MemoryStore(base_items))
    model = dict(base_items)
    for i in range(1, 1000, 3):
        overlay.put(b"k%04d" % i, b"p")
        model[b"k%04d" % i] = b"p"
    for i in range(0, 1000, 5):
        overlay.delete(b"k%04d" % i)
        model.pop(b"k%04d" % i, None)
    during = [("put" if i % 2 else "delete", b"k%04d" % (i * 7 % 1000), b"d") for i in range(300)]
    during[150] = ("clear", b"", b"")
    check_cursor_semantics(
        lambda: overlay.scan(b"k", b"l", reverse=reverse),
        lambda op, k, v: apply_op(overlay, op, k, v),
        model, during, b"k", b"l", reverse, base_items,
    )


# --- RocksStore ---------------------------------------------------------------------------


def test_rocks_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with RocksStore(path) as store:
        model = fill(store, EDGE_KEYS)
        store.commit({b"a": None})
        del model[b"a"]
    with RocksStore(path) as store:
        assert list(store.scan(b"", TOP)) == expected(model, b"", TOP)
        assert store.get(b"a") is None


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_rocks_scans_span_memtable_and_files(tmp_path: Path, reverse: bool) -> None:
    with RocksStore(tmp_path / "store") as store:
        model = fill(store, [b"k%04d" % i for i in range(0, 2000, 2)])
        store.flush()
        changes: dict[bytes, bytes | None] = {b"k%04d" % i: b"late" for i in range(1, 2000, 4)}
        changes.update({b"k%04d" % i: None for i in range(0, 2000, 10)})
        store.commit(changes)
        for key, value in changes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        for start, stop in [(b"k", b"l"), (b"k0100", b"k1001"), (b"k0101", b"k0102")]:
            got = list(store.scan(start, stop, reverse=reverse))
            assert got == expected(model, start, stop, reverse)


@pytest.mark.slow
def test_rocks_second_process_gets_store_locked_error(tmp_path: Path) -> None:
    path = tmp_path / "store"
    script = textwrap.dedent(
        """
        import sys
        from projections.rocksstore import RocksStore, StoreLockedError
        try:
            RocksStore(sys.argv[1])
        except StoreLockedError as error:
            print(error)
            sys.exit(3)
        sys.exit(0)
        """
    )
    with RocksStore(path) as store:
        store.commit({b"a": b"1"})
        held = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert held.returncode == 3, held.stderr
        assert str(path) in held.stdout
    free = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert free.returncode == 0, free.stdout + free.stderr


def test_rocks_second_open_in_this_process_is_locked(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "store"), pytest.raises(StoreLockedError, match="store"):
        RocksStore(tmp_path / "store")


def test_rocks_close_releases_the_lock_despite_open_readers(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = RocksStore(path)
    fill(store, EDGE_KEYS)
    scan = store.scan(b"", b"\xff")
    next(scan)
    unstarted = store.scan(b"", b"\xff", reverse=True)
    view = store.snapshot_view()
    view_scan = view.scan(b"", b"\xff")
    next(view_scan)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        next(scan)
    with pytest.raises(StoreClosedError):
        next(unstarted)
    with pytest.raises(StoreClosedError):
        next(view_scan)
    with pytest.raises(StoreClosedError):
        view.get(b"a")
    with pytest.raises(StoreClosedError):
        store.get(b"a")
    with pytest.raises(StoreClosedError):
        store.commit({b"a": b"1"})
    with RocksStore(path) as again:  # the LOCK was released
        assert again.get(b"a") == b"v:a"


def test_rocks_scan_reads_the_state_at_scan_time(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "store") as store:
        model = fill(store, [b"a", b"b", b"c", b"d"])
        scan = store.scan(b"", b"\xff")
        assert next(scan) == (b"a", b"v:a")
        store.commit({b"b": None, b"bb": b"new", b"c": b"changed"})
        assert list(scan) == expected(model, b"b", b"\xff")


def test_rocks_bulk_scan_is_scan_as_of_the_call(tmp_path: Path) -> None:
    """The export's scan: the same pairs as ``scan``, over more than one of its chunks, and
    none of what commits after the call change (read later, in the export's thread)."""
    many = [b"k%06d" % i for i in range(2 * BULK_CHUNK + 7)]
    with RocksStore(tmp_path / "store") as store:
        model = fill(store, [*EDGE_KEYS, *many])
        for start, stop in [(b"", b"\xff"), (b"a", b"b"), (b"k000100", b"k009000"),
                            (b"k", b"k"), (b"z", b"a")]:
            bulk = store.bulk_scan(start, stop)
            store.commit({b"k000200": None, b"k000100x": b"new", b"a": b"changed"})
            assert list(bulk) == expected(model, start, stop)
            store.commit({b"k000200": model[b"k000200"], b"k000100x": None, b"a": model[b"a"]})


def test_rocks_bulk_scan_ends_with_an_error_when_the_store_closes(tmp_path: Path) -> None:
    """Cut off by a close, it fails: an export never takes part of a range for all of it."""
    store = RocksStore(tmp_path / "store")
    fill(store, [b"k%06d" % i for i in range(3 * BULK_CHUNK)])
    pairs = iter(store.bulk_scan(b"", b"\xff"))
    assert next(pairs) == (b"k000000", b"v:k000000")
    store.close()
    with pytest.raises(StoreClosedError):
        list(pairs)


def test_rocks_snapshot_view_ignores_later_commits(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "store") as store:
        model = fill(store, [b"a", b"b", b"c", b"d"])
        with store.snapshot_view() as view:
            assert isinstance(view, View)
            store.commit({b"a": None, b"b": b"changed", b"bb": b"new"})
            store.flush()
            store.commit({b"c": None, b"e": b"later"})
            assert view.get(b"a") == b"v:a"
            assert view.get(b"b") == b"v:b"
            assert view.get(b"bb") is None
            assert view.get(b"e") is None
            assert both(view) == (sorted(model), sorted(model, reverse=True))
            assert list(view.scan(b"b", b"d")) == expected(model, b"b", b"d")
            assert list(view.scan(b"b", b"d", reverse=True)) == expected(model, b"b", b"d", True)
            assert list(view.scan(b"c", b"c")) == []
            # the live store moved on
            assert store.get(b"a") is None
            assert [k for k, _ in store.scan(b"", b"\xff")] == [b"b", b"bb", b"d", b"e"]


def test_rocks_snapshot_view_interleaved_reads(tmp_path: Path) -> None:
    """Scans and gets share one iterator inside a snapshot view; each must stay on course."""
    with RocksStore(tmp_path / "store") as store:
        model = fill(store, [b"k%02d" % i for i in range(40)])
        view = store.snapshot_view()
        store.commit({b"k05": None, b"k06": b"x"})
        forward = view.scan(b"k", b"l")
        backward = view.scan(b"k10", b"k30", reverse=True)
        got_f: list[tuple[bytes, bytes]] = []
        got_b: list[tuple[bytes, bytes]] = []
        for _ in range(25):  # alternate the two scans and point reads on one iterator
            got_f.append(next(forward))
            got_b.extend(islice(backward, 1))
            assert view.get(b"k05") == b"v:k05"
            assert view.get(b"k05x") is None
        got_f += list(forward)
        got_b += list(backward)
        assert got_f == expected(model, b"k", b"l")
        assert got_b == expected(model, b"k10", b"k30", True)
        view.close()
        with pytest.raises(StoreClosedError):
            view.get(b"k01")


def test_rocks_checkpoint_opens_with_the_same_data(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "store") as store:
        model = fill(store, EDGE_KEYS)
        store.checkpoint(tmp_path / "ckpt")
        store.commit({b"a": None, b"after": b"checkpoint"})
        with pytest.raises(FileExistsError):
            store.checkpoint(tmp_path / "ckpt")
    with RocksStore(tmp_path / "ckpt") as copy:
        assert list(copy.scan(b"", TOP)) == expected(model, b"", TOP)
        assert copy.get(b"after") is None


def test_rocks_destroy(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = RocksStore(path)
    fill(store, [b"a"])
    with pytest.raises(StoreLockedError):
        RocksStore.destroy(path)
    store.close()
    RocksStore.destroy(path)
    assert not path.exists()
    with RocksStore(path) as fresh:
        assert fresh.get(b"a") is None
