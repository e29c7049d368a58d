"""Per-project quotas (issue 9 item 6): queues per project, messages per queue.

Before: one tenant posted 180,870 messages in 60 s and created 10,000 queues. Quotas are
off by default; refusals are recorded outcomes of apply (400 Invalid API request).
"""

from __future__ import annotations

import httpx

from log import partition_for
from tests.service.conftest import PARTITIONS, PROJECT, Factory, Service


def _names_on_distinct_partitions(count: int) -> list[str]:
    """Queue names of PROJECT on ``count`` different partitions (the quota spans them)."""
    seen: dict[int, str] = {}
    i = 0
    while len(seen) < count:
        name = f"q{i}"
        seen.setdefault(partition_for(PROJECT, name, PARTITIONS), name)
        i += 1
    return list(seen.values())


def _quota_refusal(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["title"] == "Invalid API request"
    assert "quota exceeded" in r.json()["description"]


async def _queue_names(svc: Service, project: str = PROJECT) -> list[str]:
    r = await svc.client.get("/v2/queues?limit=20", headers={"X-Project-ID": project})
    return sorted(q["name"] for q in r.json()["queues"])


async def test_queues_per_project_across_partitions(make_service: Factory) -> None:
    svc = await make_service(max_queues_per_project=3)
    c = svc.client
    a, b, d, e = _names_on_distinct_partitions(4)
    for name in (a, b, d):
        assert (await c.put(f"/v2/queues/{name}")).status_code == 201
    assert (await c.put(f"/v2/queues/{a}")).status_code == 204  # existing: not a new queue
    # every way of creating a queue is refused, whichever partition it lands on
    _quota_refusal(await c.put(f"/v2/queues/{e}"))
    _quota_refusal(await c.post(f"/v2/queues/{e}/messages",
                                json={"messages": [{"body": 1}]}))
    _quota_refusal(await c.post(f"/v2/queues/{e}/subscriptions",
                                json={"subscriber": "http://127.0.0.1:9/x"}))
    assert await _queue_names(svc) == sorted((a, b, d))
    # existing queues keep working; other projects have their own quota
    assert (await c.post(f"/v2/queues/{a}/messages",
                         json={"messages": [{"body": 1}]})).status_code == 201
    assert (await c.put(f"/v2/queues/{e}", headers={"X-Project-ID": "other"})).status_code \
        == 201
    # deleting one makes room again
    assert (await c.delete(f"/v2/queues/{b}")).status_code == 204
    assert (await c.put(f"/v2/queues/{e}")).status_code == 201


async def test_messages_per_queue(make_service: Factory) -> None:
    svc = await make_service(max_messages_per_queue=3)
    c = svc.client
    post = "/v2/queues/q/messages"
    assert (await c.post(post, json={"messages": [{"body": 1}, {"body": 2}]})).status_code \
        == 201
    _quota_refusal(await c.post(post, json={"messages": [{"body": 3}, {"body": 4}]}))
    stats = (await c.get("/v2/queues/q/stats")).json()["messages"]
    assert stats["total"] == 2  # the refused batch changed nothing
    assert (await c.post(post, json={"messages": [{"body": 3}]})).status_code == 201
    _quota_refusal(await c.post(post, json={"messages": [{"body": 4}]}))
    r = await c.delete("/v2/queues/q/messages?pop=1")
    assert r.status_code == 200
    assert (await c.post(post, json={"messages": [{"body": 4}]})).status_code == 201


async def test_quotas_are_off_by_default(make_service: Factory) -> None:
    svc = await make_service()
    for i in range(30):
        assert (await svc.client.put(f"/v2/queues/many{i}")).status_code == 201
    r = await svc.client.post("/v2/queues/many0/messages",
                              json={"messages": [{"body": i} for i in range(50)]})
    assert r.status_code == 201
