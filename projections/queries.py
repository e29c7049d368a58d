"""Queries: every read is answered from the view with the current clock, never changing state.

Each function reads one view synchronously (no awaits), so it sees one consistent state:
between two commits, never half of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

import orjson

from projections import keys as K
from projections.rules import buckets, outcomes
from projections.rules.index import BLOCK_BITS
from projections.rules.state import get_queue, read_meta
from projections.store import View


def _loads(raw: bytes) -> Any:
    return orjson.loads(raw)


@dataclass(frozen=True, slots=True)
class Message:
    """A message as a read sees it at ``now``."""

    id: str
    body: Any
    ttl: int
    age: int
    created: int  # ms
    claim_id: str | None
    seq: int


def _message(raw: bytes, seq: int, now: int) -> Message:
    m = _loads(raw)
    live_claim = m["k"] if m["k"] and m["ke"] > now else None
    return Message(id=m["id"], body=m["body"], ttl=m["ttl"], age=max(0, (now - m["c"]) // 1000),
                   created=m["c"], claim_id=live_claim, seq=seq)


def _visible(m: dict[str, Any], now: int) -> bool:
    return m["e"] > now


def queue_exists(view: View, partition: int, project: str, name: str) -> bool:
    return get_queue(view, partition, project, name) is not None


def queue_metadata(view: View, partition: int, project: str, name: str) -> dict[str, Any] | None:
    q = get_queue(view, partition, project, name)
    return None if q is None else q["meta"]


# Topics are stored as queues named ``!<topic>`` (service/topics.py): ``!`` sorts before every
# character a queue name may start with, so each kind is one key range of the project.
TOPIC_MARK = b"!"


def _name_range(partition: int, project: str, topics: bool) -> tuple[bytes, bytes, int]:
    prefix = K.queues_of(partition, project)
    if topics:
        return prefix + TOPIC_MARK, K.prefix_end(prefix + TOPIC_MARK), len(prefix) + 1
    return K.prefix_end(prefix + TOPIC_MARK), K.prefix_end(prefix), len(prefix)


def queue_names(view: View, partition: int, project: str, *, after: str | None, limit: int,
                name_contains: str | None = None,
                filters: dict[str, Any] | None = None,
                topics: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``limit`` queues (or topics) of a project in one partition, by name, after
    ``after``."""
    lo, hi, skip = _name_range(partition, project, topics)
    start = lo if after is None else max(lo, lo[:skip] + after.encode() + b"\x00")
    out: list[tuple[str, dict[str, Any]]] = []
    for key, raw in view.scan(start, hi):
        name = key[skip:].decode()
        if name_contains and name_contains not in name:
            continue
        q = _loads(raw)
        if filters and any(q["meta"].get(k) != v for k, v in filters.items()):
            continue
        out.append((name, q["meta"]))
        if len(out) >= limit:
            break
    return out


def queue_count(view: View, partition: int, project: str, *, topics: bool = False) -> int:
    lo, hi, _ = _name_range(partition, project, topics)
    return sum(1 for _ in view.scan(lo, hi))


def stats(view: View, partition: int, project: str, name: str, now: int) -> dict[str, Any]:
    """claimed / free / total and the oldest and newest message, as of ``now``."""
    q = get_queue(view, partition, project, name)
    if q is None or q["count"] <= 0:  # empty: the scans below would only step on tombstones
        return {"claimed": 0, "free": 0, "total": 0}
    meta = read_meta(view, partition)
    if q.get("b"):
        claimed, total = _counted(view, partition, project, name, q, meta, now)
    else:
        claimed, total = _scanned(view, partition, project, name, q, meta, now)
    result: dict[str, Any] = {"claimed": claimed, "free": total - claimed, "total": total}
    if total > 0:
        oldest, newest = _ends(view, partition, project, name, q, now)
        if oldest is not None and newest is not None:
            result["oldest"] = oldest
            result["newest"] = newest
    return result


def _cursor_time(raw: bytes) -> int:
    return K.U64.unpack_from(raw)[0] if len(raw) >= 8 else 0


def _counted(view: View, partition: int, project: str, name: str, q: dict[str, Any],
             meta: dict[str, Any], now: int) -> tuple[int, int]:
    """Rules >= 6 (a queue keeping counters): the fold's totals minus what expired by ``now``
    but is not swept yet, read from the expiry buckets (``rules/buckets.py``) from the sweep
    cursors on — bounded by the backlog's time span, not by its size. Exact."""
    inc = q["inc"]
    expired = buckets.due(view, K.scope(partition, K.QEXB, project, name, inc),
                          _cursor_time(_cursor(meta, "sm")), now)
    # Claims expiring before either cursor are dropped (Sweep's, or the queue's own).
    swept = max(_cursor_time(_cursor(meta, "sc")), _cursor_time(_cursor(q, "cx")))
    lapsed = buckets.due(view, K.scope(partition, K.QCLB, project, name, inc), swept, now)
    return q["ch"] - lapsed, q["count"] - expired


STATS_CAP = 1000
"""Queues from before rules 6 only: entries ``stats`` steps over at most, expired-but-not-swept
messages it counts and those it passes looking for the oldest and the newest. Beyond it — only
while the owner's Sweeps catch up with a mass expiry, seconds — the total still counts the
rest and the oldest and newest may be left out: a stats read on the event loop costs a
bounded amount, not the backlog (99k expired: ~0.8 s under load, and every partition's reads
waited behind it). A queue keeping counters (rules >= 6) answers exactly at a bounded cost."""


def _scanned(view: View, partition: int, project: str, name: str, q: dict[str, Any],
             meta: dict[str, Any], now: int, cap: int | None = STATS_CAP) -> tuple[int, int]:
    """A queue from before rules 6 (until it is empty at a post, or purged): count by scans
    (``cap``: at most that many expired, None for the exact count)."""
    inc = q["inc"]
    expired_prefix = K.scope(partition, K.QEXP, project, name, inc)
    # Everything before the partition's message-expiry cursor is swept (rules >= 2): count
    # the expired-but-not-swept from there, not over the tombstones of every earlier Sweep.
    swept = _cursor(meta, "sm")[:8]
    expired = sum(1 for _ in islice(
        view.scan(expired_prefix + swept, expired_prefix + K.u64(now + 1)), cap))
    claims_prefix = K.scope(partition, K.QCLEXP, project, name, inc)
    # Live claims (expiring after now) with the count of messages each holds.
    claimed = sum(K.U64.unpack(held)[0] for _, held in
                  view.scan(claims_prefix + K.u64(now + 1), K.prefix_end(claims_prefix)))
    return claimed, q["count"] - expired


def _ends(view: View, partition: int, project: str, name: str, q: dict[str, Any],
          now: int) -> tuple[Message | None, Message | None]:
    """The oldest and the newest message not expired at ``now``.

    Rules >= 6 (a queue keeping counters): from the head ``h``, block by block of seqs,
    skipping each block whose expiry bound has passed (``rules.index.raise_bound``), so
    neither consumed tombstones nor what has expired but is not swept are stepped on one by
    one. Older queues: from both ends of the message range.
    """
    msg_scope = K.scope(partition, K.MSG, project, name, q["inc"])
    if not q.get("b"):
        return (_first_visible(view, msg_scope, msg_scope, K.prefix_end(msg_scope), now,
                               reverse=False, cap=STATS_CAP),
                _first_visible(view, msg_scope, msg_scope, K.prefix_end(msg_scope), now,
                               reverse=True, cap=STATS_CAP))
    head = q.get("h", 0)
    return (_by_blocks(view, partition, project, name, q, msg_scope, head, now, reverse=False),
            _by_blocks(view, partition, project, name, q, msg_scope, head, now, reverse=True))


def _by_blocks(view: View, partition: int, project: str, name: str, q: dict[str, Any],
               msg_scope: bytes, head: int, now: int, *, reverse: bool) -> Message | None:
    blocks = K.scope(partition, K.QSEQB, project, name, q["inc"])
    for key, raw in view.scan(blocks + K.u64(head >> BLOCK_BITS), K.prefix_end(blocks),
                              reverse=reverse):
        if K.U64.unpack(raw)[0] <= now:
            continue  # every message of the block has expired
        block = K.U64.unpack_from(key, len(blocks))[0]
        lo = msg_scope + K.u64(max(head, block << BLOCK_BITS))
        found = _first_visible(view, msg_scope, lo, msg_scope + K.u64((block + 1) << BLOCK_BITS),
                               now, reverse=reverse)
        if found is not None:
            return found
    return None


def _first_visible(view: View, msg_scope: bytes, start: bytes, stop: bytes, now: int, *,
                   reverse: bool, cap: int | None = None) -> Message | None:
    for key, raw in islice(view.scan(start, stop, reverse=reverse), cap):
        if _visible(_loads(raw), now):
            return _message(raw, K.U64.unpack_from(key, len(msg_scope))[0], now)
    return None


SKIP_CAP = 1000
"""Entries a listing may step over (expired, claimed, delayed, with ``echo=false`` the
caller's own) before it answers with what it found and a marker to go on from: the cost of a
page is bounded by the page, not by the queue."""


@dataclass(frozen=True, slots=True)
class Page:
    """A page of messages and where the next one starts (None: the queue ended)."""

    messages: list[Message]
    marker: int | None  # the seq to list after: the last message's, or the last one stepped
    capped: bool = False  # the skip cap ended the page before it filled


def list_page(view: View, partition: int, project: str, name: str, now: int, *,
              marker: int | None, limit: int, client_id: str | None, echo: bool,
              include_claimed: bool, include_delayed: bool,
              skip_cap: int | None = SKIP_CAP) -> Page:
    """A page in queue order after ``marker``: filled to ``limit`` unless the queue ends or
    ``skip_cap`` entries were stepped over (None: no cap, for tools that want everything)."""
    q = get_queue(view, partition, project, name)
    if q is None or q["count"] <= 0:
        # An emptied queue holds only the tombstones of what it held: nothing to step on.
        return Page([], None)
    msg_scope = K.scope(partition, K.MSG, project, name, q["inc"])
    # Rules >= 6: no message is below the head ``h``, so never step on what was consumed.
    first = max(q.get("h", 0), 0 if marker is None else marker + 1)
    start = msg_scope + K.u64(first) if first else msg_scope
    page: list[Message] = []
    skipped = 0
    for key, raw in view.scan(start, K.prefix_end(msg_scope)):
        m = _loads(raw)
        seq = K.U64.unpack_from(key, len(msg_scope))[0]
        if ((m["e"] <= now)
                or (not include_claimed and m["k"] and m["ke"] > now)
                or (not include_delayed and m["d"] > now)
                or (not echo and client_id is not None and m["cl"] == client_id)):
            skipped += 1
            if skip_cap is not None and skipped >= skip_cap:
                return Page(page, seq, capped=True)
            continue
        page.append(_message(raw, seq, now))
        if len(page) >= limit:
            break
    return Page(page, page[-1].seq if page else None)


def list_messages(view: View, partition: int, project: str, name: str, now: int, *,
                  marker: int | None, limit: int, client_id: str | None, echo: bool,
                  include_claimed: bool, include_delayed: bool) -> list[Message]:
    """The messages of ``list_page`` with no skip cap (audit state, tests)."""
    return list_page(view, partition, project, name, now, marker=marker, limit=limit,
                     client_id=client_id, echo=echo, include_claimed=include_claimed,
                     include_delayed=include_delayed, skip_cap=None).messages


def get_message(view: View, partition: int, project: str, name: str, message_id: str,
                now: int) -> Message | None:
    q = get_queue(view, partition, project, name)
    if q is None:
        return None
    raw_seq = view.get(K.scope(partition, K.MSGID, project, name, q["inc"]) + message_id.encode())
    if raw_seq is None:
        return None
    seq = K.U64.unpack(raw_seq)[0]
    raw = view.get(K.scope(partition, K.MSG, project, name, q["inc"]) + K.u64(seq))
    if raw is None or not _visible(_loads(raw), now):
        return None
    return _message(raw, seq, now)


def get_claim(view: View, partition: int, project: str, name: str, claim_id: str,
              now: int) -> dict[str, Any] | None:
    """A live claim: ttl, age, and the messages it still holds."""
    q = get_queue(view, partition, project, name)
    if q is None:
        return None
    raw = view.get(K.scope(partition, K.CLAIM, project, name, q["inc"]) + claim_id.encode())
    if raw is None:
        return None
    claim = _loads(raw)
    if claim["e"] <= now:
        return None
    msg_scope = K.scope(partition, K.MSG, project, name, q["inc"])
    messages = []
    for seq in claim["m"]:
        m = view.get(msg_scope + K.u64(seq))
        if m is not None and _visible(_loads(m), now) and _loads(m)["k"] == claim_id:
            messages.append(_message(m, seq, now))
    return {"ttl": claim["ttl"], "age": max(0, (now - claim["u"]) // 1000),
            "messages": messages}


def list_subscriptions(view: View, partition: int, project: str, name: str, now: int, *,
                       marker: str | None, limit: int) -> list[dict[str, Any]]:
    prefix = K.sub_scope(partition, K.SUB, project, name)
    start = prefix if marker is None else prefix + marker.encode() + b"\x00"
    out = []
    for _, raw in view.scan(start, K.prefix_end(prefix)):
        sub = _loads(raw)
        if sub["e"] <= now:
            continue
        out.append(subscription_view(sub, name, now))
        if len(out) >= limit:
            break
    return out


def get_subscription(view: View, partition: int, project: str, name: str, sub_id: str,
                     now: int) -> dict[str, Any] | None:
    raw = view.get(K.sub_scope(partition, K.SUB, project, name) + sub_id.encode())
    if raw is None:
        return None
    sub = _loads(raw)
    return None if sub["e"] <= now else subscription_view(sub, name, now)


def subscription_view(sub: dict[str, Any], source: str, now: int) -> dict[str, Any]:
    return {"id": sub["id"], "source": source, "subscriber": sub["subscriber"],
            "ttl": sub["ttl"], "age": max(0, (now - sub["c"]) // 1000),
            "options": sub["options"], "confirmed": sub["confirmed"]}


def outcome(view: View, partition: int, command_id: str) -> dict[str, Any] | None:
    """The stored outcome of a command applied in the last outcome window (or None)."""
    raw = outcome_raw(view, partition, command_id)
    return None if raw is None else _loads(raw)


def outcome_raw(view: View, partition: int, command_id: str,
                time_ms: int | None = None) -> bytes | None:
    """The outcome as apply stored it (JSON): what the core of ``--workers N`` relays.

    ``time_ms``, the command's stamped time: from rules 7 its outcome is under the generation
    of its effective time, which is that time unless a later-stamped command was applied
    before it — so looked for there first, in one point read without the meta record (an id
    has one outcome in the window: any key found is it).
    """
    if time_ms is not None:
        raw = view.get(K.outcome_in(partition, outcomes.generation(time_ms), command_id))
        if raw is not None:
            return raw
    meta = read_meta(view, partition)
    if "og" in meta:  # rules >= 7: by generation (``rules.outcomes``)
        return outcomes.find(view, partition, meta, meta["time"], command_id)
    return view.get(K.outcome(partition, command_id))


def partition_state(view: View, partition: int) -> dict[str, Any]:
    """Applied offset, effective time and counters of one partition."""
    return read_meta(view, partition)


def outbox(view: View, partition: int, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
    """Pending cross-partition moves, in origin-offset order."""
    prefix = K.kind_prefix(partition, K.OUTBOX)
    out = []
    for key, raw in view.scan(prefix, K.prefix_end(prefix)):
        out.append((K.U64.unpack_from(key, len(prefix))[0], _loads(raw)))
        if len(out) >= limit:
            break
    return out


def quarantined(view: View, partition: int) -> list[tuple[int, dict[str, Any]]]:
    prefix = K.kind_prefix(partition, K.QUARANTINE)
    return [(K.U64.unpack_from(key, len(prefix))[0], _loads(raw))
            for key, raw in view.scan(prefix, K.prefix_end(prefix))]


SWEEP_LAG_MS = 60_000  # rules >= 2: sweep at least this often, to move the expiry cursors


def _cursor(meta: dict[str, Any], field: str) -> bytes:
    return bytes.fromhex(meta.get(field, ""))


def sweep_due(view: View, partition: int, cutoff: int) -> bool:
    """Whether a Sweep at ``cutoff`` would remove anything (so idle partitions append none).

    Each index is read from the cursor the last Sweep left (rules >= 2), never from its
    head: the head is where every earlier Sweep left its tombstones. A Sweep is also due
    when the cursors lag ``SWEEP_LAG_MS`` behind, so the tombstones of messages deleted
    before they expired are passed once, not walked by every check.
    """
    meta = read_meta(view, partition)
    for kind, field in ((K.PEXP, "sm"), (K.PCLEXP, "sc"), (K.PSUBEXP, "ss")):
        prefix = K.kind_prefix(partition, kind)
        start = _cursor(meta, field)
        if field in meta and K.U64.unpack_from(start)[0] + SWEEP_LAG_MS < cutoff:
            return True
        for _ in view.scan(prefix + start, prefix + K.u64(cutoff + 1)):
            return True
    prefix = K.kind_prefix(partition, K.GCQ)
    for _ in view.scan(prefix + _cursor(meta, "gq"), K.prefix_end(prefix)):
        return True
    prefix = K.kind_prefix(partition, K.GARBAGE)
    return any(True for _ in view.scan(prefix, K.prefix_end(prefix)))
