"""``GET /v2/queues/{q}/history``: admin only, paged by log offset, entries as the audit
replay shows them, and sequential paging continues one replay instead of starting over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from log import partition_for
from projections.audit import History
from tests.service.test_metrics import PARTITIONS, PROJECT, Observed, close, observed_app

ADMIN = {"X-Roles": "admin"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Observed]:
    o = await observed_app(tmp_path)
    yield o
    await close(o)


async def _traffic(o: Observed) -> list[str]:
    """Posts, a claim and deletes on q, and noise on another queue of the same partition."""
    h = o.headers()
    p = partition_for(PROJECT, "q", PARTITIONS)
    other = next(name for name in (f"n{i}" for i in range(100))
                 if partition_for(PROJECT, name, PARTITIONS) == p)
    ids: list[str] = []
    for i in range(5):
        r = await o.client.post("/v2/queues/q/messages", headers=h,
                                json={"messages": [{"body": i}]})
        assert r.status_code == 201
        ids.append(r.json()["resources"][0].rsplit("/", 1)[1])
        await o.client.post(f"/v2/queues/{other}/messages", headers=h,
                            json={"messages": [{"body": i}]})
    r = await o.client.post("/v2/queues/q/claims?limit=2", headers=h, json={"ttl": 60})
    assert r.status_code == 201
    claim = r.json()["messages"][0]["href"].split("claim_id=")[1]
    r = await o.client.delete(f"/v2/queues/q/messages/{ids[0]}?claim_id={claim}", headers=h)
    assert r.status_code == 204
    r = await o.client.delete(f"/v2/queues/q/messages?ids={ids[3]},{ids[4]}", headers=h)
    assert r.status_code == 204
    return ids


async def test_history_pages_by_offset(node: Observed) -> None:
    ids = await _traffic(node)
    pages: list[list[dict]] = []
    url = "/v2/queues/q/history?limit=3"
    while True:
        r = await node.client.get(url, headers=node.headers(**ADMIN))
        assert r.status_code == 200, r.text
        body = r.json()
        if not body["history"]:
            assert body["links"] == []
            break
        pages.append(body["history"])
        (link,) = body["links"]
        assert link["rel"] == "next"
        query = parse_qs(urlsplit(link["href"]).query)
        assert query == {"limit": ["3"], "marker": [str(body["history"][-1]["offset"])]}
        url = link["href"]
    entries = [e for page in pages for e in page]
    assert [len(page) for page in pages] == [3, 3, 2]
    assert [e["command"] for e in entries] == (
        ["messages.post"] * 5 + ["claim.create", "message.delete", "messages.delete"])
    offsets = [e["offset"] for e in entries]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert all(e["queue"] == "q" and e["project"] == PROJECT for e in entries)
    assert [e["outcome"]["ids"] for e in entries[:5]] == [[i] for i in ids]
    assert entries[5]["outcome"]["messages"] == ids[:2]
    assert entries[6]["args"]["message_id"] == ids[0]
    # the same rows as the audit replay prints
    async with History(node.log, PROJECT, "q") as history:
        assert entries == [e.as_json() async for e in history.entries()]
    # paging continued parked replays: one for the walk, one for the final (empty) page
    assert node.history.replays == 2


async def test_history_random_access_and_bad_parameters(node: Observed) -> None:
    await _traffic(node)
    admin = node.headers(**ADMIN)
    full = (await node.client.get("/v2/queues/q/history?limit=100", headers=admin)).json()
    third = full["history"][2]["offset"]
    r = await node.client.get(f"/v2/queues/q/history?marker={third}&limit=2", headers=admin)
    assert r.json()["history"] == full["history"][3:5]
    for query, title in (("marker=abc", "Invalid parameter"), ("marker=-1", "Invalid parameter"),
                         ("limit=x", "Invalid parameter"), ("limit=0", "Invalid API request"),
                         ("limit=1001", "Invalid API request")):
        r = await node.client.get(f"/v2/queues/q/history?{query}", headers=admin)
        assert r.status_code == 400, query
        assert r.json()["title"] == title
    r = await node.client.get("/v2/queues/never-used/history", headers=admin)
    assert r.json() == {"history": [], "links": []}
    r = await node.client.get("/v2/queues/bad name!/history", headers=admin)
    assert r.status_code == 400


async def test_history_is_admin_only(node: Observed) -> None:
    for roles in (None, "member", "reader,observer"):
        headers = node.headers() if roles is None else node.headers(**{"X-Roles": roles})
        r = await node.client.get("/v2/queues/q/history", headers=headers)
        assert r.status_code == 403
        assert r.json() == {"title": "Not authorized",
                            "description": "You are not authorized to complete this action."}


async def test_history_is_routed_without_admin_mode(tmp_path: Path, node: Observed) -> None:
    assert (await node.client.get("/v2/health", headers=node.headers(**ADMIN))).status_code \
        == 404  # admin_mode is off ...
    r = await node.client.get("/v2/queues/q/history", headers=node.headers(**ADMIN))
    assert r.status_code == 200  # ... and history still answers admins
