"""Rules 8 (``versions.LEAN_EXPIRY``): queues that keep counters get no per-queue message
expiry entries (``QEXP``). The state must be what rules 7 fold the same log to, less those
entries, checkpoint by checkpoint — from a log's start and across a switch in its middle,
where messages from before the switch keep theirs until consumed — and every answer the
same. Work is counted (keys written), never timed."""

from __future__ import annotations

import orjson
import pytest

from projections import keys as K
from projections import queries
from projections.apply import apply_record
from projections.commands import CreateClaim, NewMessage, PostMessages, SetRules, decode, encode
from projections.memstore import MemoryStore
from projections.rules import versions
from tests.projections import claim_history, post_history

LEAN, BEFORE = versions.LEAN_EXPIRY, versions.OUTCOME_GENERATIONS
EVERY = 100  # records between state comparisons


def _state(store: MemoryStore) -> dict[bytes, bytes]:
    return dict(store.scan(b"", b"\xff" * 16))


def _comparable(state: dict[bytes, bytes], lean: bool) -> dict[bytes, bytes]:
    """The state without what the rules version itself changes: its QEXP entries, the meta
    record's ``rules`` and ``lq``, the ``SetRules`` outcome; and without the garbage of dropped
    queue incarnations, whose collection goes faster with fewer keys to collect (the GC's
    progress, its cursor and the Sweeps' counts of it)."""
    out = {}
    for key, value in state.items():
        kind = key[2]
        if kind == K.QEXP or kind in (K.GCQ, K.GARBAGE):
            continue
        if kind in K.INCARNATION_KINDS:
            project, name, inc, _ = K.parse_scope(key)
            queue = state.get(K.queue(0, project, name))
            if queue is None or orjson.loads(queue)["inc"] != inc:
                continue  # a dropped incarnation's: garbage
        if key == K.meta(0):
            meta = orjson.loads(value)
            for field in ("rules", "lq", "gq"):
                meta.pop(field, None)
            value = orjson.dumps(meta)
        elif lean and value == orjson.dumps({"rules": LEAN}):
            value = orjson.dumps({"rules": BEFORE})
        elif value.startswith(b"{") and b'"garbage"' in value:
            outcome = orjson.loads(value)
            outcome.pop("garbage", None)
            value = orjson.dumps(outcome)
        out[key] = value
    return out


def _qexp(state: dict[bytes, bytes]) -> set[bytes]:
    return {key for key in state if key[2] == K.QEXP}


def _fold_both(before: list[bytes], lean: list[bytes]) -> list[tuple[dict, dict]]:
    """Fold the two logs record by record; their states every ``EVERY`` records."""
    stores = MemoryStore(), MemoryStore()
    states = []
    for offset, pair in enumerate(zip(before, lean, strict=True)):
        for store, record in zip(stores, pair, strict=True):
            store.commit(apply_record(store, 0, offset, record))
        if (offset + 1) % EVERY == 0 or offset + 1 == len(before):
            states.append((_state(stores[0]), _state(stores[1])))
    return states


def _switched(records: list[bytes], at: int, version: int) -> list[bytes]:
    """``records`` with the one at ``at`` replaced by a ``SetRules(version)`` (same offsets)."""
    cmd = decode(records[at])
    switch = SetRules(id=f"switch-{at}", time_ms=cmd.time_ms, version=version)
    return [*records[:at], encode(switch), *records[at + 1:]]


HISTORIES = {
    "claims": lambda rules: claim_history.history(11, 2000, rules=rules),
    "posts": lambda rules: post_history.history(15, rules),
}


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_from_the_start_the_state_is_rules_7_less_the_queue_expiry_entries(name: str) -> None:
    make = HISTORIES[name]
    before, lean = make(BEFORE), make(LEAN)
    assert [decode(r) for r in before[1:]] == [decode(r) for r in lean[1:]]  # one workload
    states = _fold_both(before, lean)
    assert any(_qexp(b) for b, _ in states)  # rules 7 kept entries this test could miss
    for b, lean_state in states:
        assert not _qexp(lean_state)
        assert _comparable(b, lean=False) == _comparable(lean_state, lean=True)


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_across_a_switch_earlier_messages_keep_their_entries_until_consumed(name: str) -> None:
    records = HISTORIES[name](BEFORE)
    at = len(records) // 3
    before, lean = _switched(records, at, BEFORE), _switched(records, at, LEAN)
    states = _fold_both(before, lean)
    lq = orjson.loads(_state_after(lean)[K.meta(0)])["lq"]
    assert lq > 0
    carried = 0
    for b, lean_state in states:
        assert _comparable(b, lean=False) == _comparable(lean_state, lean=True)
        # Only entries rules 7 has too (none left behind), all of messages from before.
        assert _qexp(lean_state) <= _qexp(b)
        assert all(K.U64.unpack(key[-8:])[0] < lq for key in _qexp(lean_state))
        carried = max(carried, len(_qexp(lean_state)))
    assert carried > 0  # the switch found messages with entries


def _state_after(records: list[bytes]) -> dict[bytes, bytes]:
    store = MemoryStore()
    for offset, record in enumerate(records):
        store.commit(apply_record(store, 0, offset, record))
    return _state(store)


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_stats_answer_the_same(name: str) -> None:
    make = HISTORIES[name]
    before, lean = _state_after(make(BEFORE)), _state_after(make(LEAN))
    stores = []
    for state in (before, lean):
        store = MemoryStore()
        store.commit(state)
        stores.append(store)
    queues = {K.parse_scope(key)[:2] for key in before if key[2] == K.MSG}
    assert queues
    last = orjson.loads(before[K.meta(0)])["time"]
    for project, queue in sorted(queues):
        for now in (last, last + 61_000, last + 3_600_000):
            assert (queries.stats(stores[0], 0, project, queue, now)
                    == queries.stats(stores[1], 0, project, queue, now))


def test_a_post_and_a_claim_write_fewer_keys() -> None:
    """Keys a post of 10 and a claim of them write, rules 7 against rules 8."""
    def keys_written(rules: int) -> tuple[int, int]:
        store, t = MemoryStore(), 1_900_000_000_000
        counts = []
        cmds = [SetRules(id="r", time_ms=t, version=rules),
                PostMessages(id="p", time_ms=t, project="p", queue="q", client_id="c",
                             messages=[NewMessage(id=f"m{i}", body={}, ttl=300)
                                       for i in range(10)]),
                CreateClaim(id="c", time_ms=t + 1, project="p", queue="q", claim_id="k",
                            ttl=300, grace=60, limit=10)]
        for offset, cmd in enumerate(cmds):
            changes = apply_record(store, 0, offset, encode(cmd))
            store.commit(changes)
            counts.append(len(changes))
        return counts[1], counts[2]

    (post7, claim7), (post8, claim8) = keys_written(BEFORE), keys_written(LEAN)
    assert post8 == post7 - 10  # one entry a message
    assert claim8 == claim7 - 20  # two a message: the old entry's delete, the new one's put
