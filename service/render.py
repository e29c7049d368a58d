"""How resources look on the wire (zaqar-api.md §3): relative hrefs, exact key sets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from projections.queries import Message
from service import topics

STATS_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


V2 = "/v2"  # hrefs take the API's path prefix; v1.0 and v1.1 pass "/v1", "/v1.1"


def queue_href(queue: str, prefix: str = V2) -> str:
    """``<prefix>/queues/<q>``, or ``<prefix>/topics/<t>`` for a topic's internal name."""
    if topics.is_topic(queue):
        return prefix + topics.base_href(queue)[len(V2):]
    return f"{prefix}/queues/{queue}"  # what base_href gives a queue, without two calls


def posted(queue: str, ids: list[str], prefix: str = V2) -> tuple[str, dict[str, Any]]:
    """A message post's ``Location`` and body (§8.1): the messages' hrefs, one queue href
    worked out for all of them."""
    messages = f"{queue_href(queue, prefix)}/messages"
    return (f"{messages}?ids={','.join(ids)}",
            {"resources": [f"{messages}/{message_id}" for message_id in ids]})


def message_href(queue: str, message_id: str, claim_id: str | None = None,
                 prefix: str = V2) -> str:
    href = f"{queue_href(queue, prefix)}/messages/{message_id}"
    return href if claim_id is None else f"{href}?claim_id={claim_id}"


def claim_href(queue: str, claim_id: str, prefix: str = V2) -> str:
    return f"{queue_href(queue, prefix)}/claims/{claim_id}"


def subscriptions_href(queue: str) -> str:
    return f"{queue_href(queue)}/subscriptions"


def checksum(body: Any) -> str:
    """``MD5:<hex>`` over the JSON serialisation of the body (enable_checksum, §10.13)."""
    return "MD5:" + hashlib.md5(json.dumps(body).encode(), usedforsecurity=False).hexdigest()


def message(queue: str, m: Message, *, with_checksum: bool = False,
            prefix: str = V2) -> dict[str, Any]:
    """§3.1: id, href (with ?claim_id= while claimed), ttl, age, body — no other keys."""
    out: dict[str, Any] = {"id": m.id, "href": message_href(queue, m.id, m.claim_id, prefix),
                           "ttl": m.ttl, "age": m.age, "body": m.body}
    if with_checksum:
        out["checksum"] = checksum(m.body)
    return out


def snapshot(queue: str, snap: dict[str, Any], now: int, claim_id: str, *,
             with_checksum: bool = False, prefix: str = V2) -> dict[str, Any]:
    """A message as a claim outcome recorded it (``{id, body, ttl, c}``)."""
    return snapshots(queue, [snap], now, claim_id, with_checksum=with_checksum,
                     prefix=prefix)[0]


def snapshots(queue: str, snaps: Iterable[dict[str, Any]], now: int, claim_id: str, *,
              with_checksum: bool = False, prefix: str = V2) -> list[dict[str, Any]]:
    """``snapshot`` of each message of a claim, the queue's href worked out once for all."""
    messages = f"{queue_href(queue, prefix)}/messages"
    out = [{"id": snap["id"], "href": f"{messages}/{snap['id']}?claim_id={claim_id}",
            "ttl": snap["ttl"], "age": max(0, (now - snap["c"]) // 1000), "body": snap["body"]}
           for snap in snaps]
    if with_checksum:
        for item in out:
            item["checksum"] = checksum(item["body"])
    return out


def popped(snap: dict[str, Any], now: int) -> dict[str, Any]:
    """§3.2: the raw form pop returns — no href, claim_id null, claim_count 0."""
    return {"id": snap["id"], "age": max(0, (now - snap["c"]) // 1000), "ttl": snap["ttl"],
            "body": snap["body"], "claim_id": None, "claim_count": 0}


def utc_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(STATS_DATE_FORMAT)


def stats(queue: str, raw: dict[str, Any], prefix: str = V2) -> dict[str, Any]:
    """§5.6: counts, and oldest/newest as exactly {age, created, href}."""
    out: dict[str, Any] = {"claimed": raw["claimed"], "free": raw["free"], "total": raw["total"]}
    for key in ("oldest", "newest"):
        m = raw.get(key)
        if m is not None:
            out[key] = {"age": m.age, "created": utc_text(m.created),
                        "href": message_href(queue, m.id, prefix=prefix)}
    return {"messages": out}


def next_link(path: str, params: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """``links`` of a non-empty page: one ``next`` repeating the query with a new marker."""
    return [{"rel": "next", "href": f"{path}?{urlencode(list(params))}"}]


def bool_text(value: bool) -> str:
    return "true" if value else "false"
