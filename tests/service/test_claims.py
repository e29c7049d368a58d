"""Claim endpoints (zaqar-api.md §8.7-§8.10, §10.4, §10.5, §10.10)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.service.conftest import Service
from tests.service.test_messages import post


def claim_id_of(location: str) -> str:
    return location.rsplit("/", 1)[1]


async def test_claim_create_get_renew_release(svc: Service) -> None:
    ids = await post(svc, "q", "a", "b", "c", ttl=600)
    r = await svc.client.post("/v2/queues/q/claims?limit=2", json={"ttl": 120, "grace": 60})
    assert r.status_code == 201
    cid = claim_id_of(r.headers["location"])
    assert r.headers["location"] == f"/v2/queues/q/claims/{cid}"
    messages = r.json()["messages"]
    assert set(r.json()) == {"messages"}
    assert [m["id"] for m in messages] == ids[:2]
    assert messages[0] == {"id": ids[0], "href": f"/v2/queues/q/messages/{ids[0]}?claim_id={cid}",
                           "ttl": 600, "age": 0, "body": "a"}
    svc.clock.advance(10)
    r = await svc.client.get(f"/v2/queues/q/claims/{cid}")
    assert r.status_code == 200
    claim = r.json()
    assert set(claim) == {"age", "ttl", "messages", "href"}
    assert (claim["ttl"], claim["href"]) == (120, f"/v2/queues/q/claims/{cid}")
    assert claim["age"] >= 10
    assert [m["body"] for m in claim["messages"]] == ["a", "b"]
    assert all(m["href"].endswith(f"?claim_id={cid}") for m in claim["messages"])
    r = await svc.client.patch(f"/v2/queues/q/claims/{cid}", json={})
    assert r.status_code == 204
    claim = (await svc.client.get(f"/v2/queues/q/claims/{cid}")).json()
    assert (claim["ttl"], claim["age"]) == (300, 0)  # {} renews to the default ttl
    assert (await svc.client.delete(f"/v2/queues/q/claims/{cid}")).status_code == 204
    assert (await svc.client.get(f"/v2/queues/q/claims/{cid}")).status_code == 404
    r = await svc.client.post("/v2/queues/q/claims")  # released messages are claimable
    assert [m["body"] for m in r.json()["messages"]] == ["a", "b", "c"]


async def test_claim_204_cases(svc: Service) -> None:
    assert (await svc.client.post("/v2/queues/missing/claims")).status_code == 204
    await svc.client.put("/v2/queues/empty")
    assert (await svc.client.post("/v2/queues/empty/claims")).status_code == 204
    await post(svc, "q", 1)
    assert (await svc.client.post("/v2/queues/q/claims")).status_code == 201
    r = await svc.client.post("/v2/queues/q/claims")
    assert (r.status_code, r.content) == (204, b"")


async def test_claim_expiry_and_grace(svc: Service) -> None:
    await post(svc, "q", "short", ttl=60)
    await post(svc, "q", "long", ttl=1000)
    r = await svc.client.post("/v2/queues/q/claims")  # defaults: ttl 300, grace 60
    cid = claim_id_of(r.headers["location"])
    assert [m["ttl"] for m in r.json()["messages"]] == [360, 1000]
    svc.clock.advance(301)
    assert (await svc.client.get(f"/v2/queues/q/claims/{cid}")).status_code == 404
    r = await svc.client.patch(f"/v2/queues/q/claims/{cid}", json={"ttl": 100})
    assert r.status_code == 404
    assert r.json() == {"title": "Not found", "description":
                        f"Claim {cid} does not exist in queue q for project proj"}
    r = await svc.client.get("/v2/queues/q/messages?echo=true")
    assert [m["body"] for m in r.json()["messages"]] == ["short", "long"]  # grace kept "short"
    r = await svc.client.post("/v2/queues/q/claims")
    assert len(r.json()["messages"]) == 2


async def test_concurrent_claims_never_share_messages(svc: Service) -> None:
    await post(svc, "q", *range(30))
    responses = await asyncio.gather(*(svc.client.post("/v2/queues/q/claims?limit=5")
                                       for _ in range(8)))
    got = [m["id"] for r in responses if r.status_code == 201 for m in r.json()["messages"]]
    assert len(got) == len(set(got)) == 30


@pytest.mark.parametrize(("query", "body", "title", "description"), [
    ("?limit=0", None, "Invalid API request",
     "Limit must be at least 1 and may not be greater than 20."),
    ("?limit=21", None, "Invalid API request",
     "Limit must be at least 1 and may not be greater than 20."),
    ("?limit=a", None, "Invalid parameter",
     'The "limit" parameter is invalid. The value must be an integer.'),
    ("", {"ttl": None, "grace": None}, "Invalid request body",
     'The value of the "ttl" field must be a int.'),
    ("", {"ttl": 60, "grace": "60"}, "Invalid request body",
     'The value of the "grace" field must be a int.'),
    ("", [{"ttl": 60}], "Invalid request body", "Document type not supported."),
    ("", {"ttl": 59}, "Invalid API request",
     "The TTL for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."),
    ("", {"ttl": 43201}, "Invalid API request",
     "The TTL for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."),
    ("", {"grace": 59}, "Invalid API request",
     "The grace for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."),
    ("", {"ttl": 2**63}, "Invalid request body", "JSON contains integer that is too large."),
])
async def test_claim_create_bad_input(svc: Service, query: str, body: Any, title: str,
                                      description: str) -> None:
    await post(svc, "q", 1)
    before = await svc.ends()
    r = await svc.client.post(f"/v2/queues/q/claims{query}", json=body)
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}
    assert await svc.ends() == before


@pytest.mark.parametrize(("body", "title", "description"), [
    (b"", "Invalid request body", "Request body could not be parsed."),
    (b'{"ttl": 30}', "Invalid API request",
     "The TTL for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."),
    (b'{"ttl": "x"}', "Invalid request body", 'The value of the "ttl" field must be a int.'),
    (b"[]", "Invalid request body", "Document type not supported."),
])
async def test_claim_update_bad_input(svc: Service, body: bytes, title: str,
                                      description: str) -> None:
    await post(svc, "q", 1)
    cid = claim_id_of((await svc.client.post("/v2/queues/q/claims")).headers["location"])
    before = await svc.ends()
    r = await svc.client.patch(f"/v2/queues/q/claims/{cid}", content=body,
                               headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}
    assert await svc.ends() == before


async def test_claim_update_grace_is_not_range_checked(svc: Service) -> None:
    await post(svc, "q", 1, ttl=60)
    cid = claim_id_of((await svc.client.post("/v2/queues/q/claims")).headers["location"])
    for grace in (10, -5, 10**15):
        r = await svc.client.patch(f"/v2/queues/q/claims/{cid}",
                                   json={"ttl": 100, "grace": grace})
        assert r.status_code == 204
    claim = (await svc.client.get(f"/v2/queues/q/claims/{cid}")).json()
    assert claim["ttl"] == 100


async def test_release_unknown_claim_is_204(svc: Service) -> None:
    assert (await svc.client.delete("/v2/queues/q/claims/nope")).status_code == 204
    await svc.client.put("/v2/queues/q")
    assert (await svc.client.delete("/v2/queues/q/claims/nope")).status_code == 204
    r = await svc.client.get("/v2/queues/q/claims/nope")
    assert r.json() == {"title": "Not found",
                        "description": "Claim nope does not exist in queue q for project proj"}


async def test_dead_letter_queue(svc: Service) -> None:
    await svc.client.put("/v2/queues/dlq")
    await svc.client.put("/v2/queues/work", json={
        "_max_claim_count": 1, "_dead_letter_queue": "dlq",
        "_dead_letter_queue_messages_ttl": 120})
    (mid,) = await post(svc, "work", "poison")
    cid = claim_id_of((await svc.client.post("/v2/queues/work/claims")).headers["location"])
    await svc.client.delete(f"/v2/queues/work/claims/{cid}")  # every claim counts
    assert (await svc.client.post("/v2/queues/work/claims")).status_code == 204
    for _ in range(100):  # the move travels through the outbox, asynchronously
        r = await svc.client.get("/v2/queues/dlq/messages?echo=true")
        if r.json()["messages"]:
            break
        await asyncio.sleep(0.02)
    (moved,) = r.json()["messages"]
    assert (moved["id"], moved["body"], moved["ttl"]) == (mid, "poison", 120)
    stats = (await svc.client.get("/v2/queues/work/stats")).json()["messages"]
    assert stats["total"] == 0
