"""Subscription endpoints (zaqar-api.md §8.11)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.conftest import Service

SUB_KEYS = {"id", "source", "subscriber", "ttl", "age", "options", "confirmed"}


async def create(svc: Service, queue: str = "q", **body: Any) -> str:
    r = await svc.client.post(f"/v2/queues/{queue}/subscriptions",
                              json={"subscriber": "http://10.0.0.1:5679", **body})
    assert r.status_code == 201, r.text
    return str(r.json()["subscription_id"])


async def test_create_get_list_delete(svc: Service) -> None:
    r = await svc.client.post("/v2/queues/q/subscriptions",
                              json={"subscriber": "http://10.0.0.1:5679", "ttl": 600,
                                    "options": {"name": "test"}})
    assert r.status_code == 201
    assert r.headers["location"] == "/v2/queues/q/subscriptions"
    sid = r.json()["subscription_id"]
    assert r.json() == {"subscription_id": sid}
    assert [q["name"] for q in (await svc.client.get("/v2/queues")).json()["queues"]] == ["q"]
    r = await svc.client.get(f"/v2/queues/q/subscriptions/{sid}")
    shown = r.json()
    assert shown.pop("delivery")["pending"] == 0  # Marconi's delivery counters (extra key)
    assert shown == {"id": sid, "source": "q", "subscriber": "http://10.0.0.1:5679",
                     "ttl": 600, "age": 0, "options": {"name": "test"}, "confirmed": False}
    r = await svc.client.get("/v2/queues/q/subscriptions")
    body = r.json()
    assert [s["id"] for s in body["subscriptions"]] == [sid]
    assert set(body["subscriptions"][0]) == SUB_KEYS
    assert body["links"] == [{"rel": "next", "href": f"/v2/queues/q/subscriptions?marker={sid}"}]
    assert (await svc.client.delete(f"/v2/queues/q/subscriptions/{sid}")).status_code == 204
    assert (await svc.client.delete(f"/v2/queues/q/subscriptions/{sid}")).status_code == 204
    r = await svc.client.get(f"/v2/queues/q/subscriptions/{sid}")
    assert r.status_code == 404
    assert r.json() == {"title": "Not found", "description": f"Subscription {sid} does not exist"}


async def test_defaults_duplicates_and_confirm(svc: Service) -> None:
    sid = await create(svc)
    sub = (await svc.client.get(f"/v2/queues/q/subscriptions/{sid}")).json()
    assert (sub["ttl"], sub["options"]) == (3600, {})
    assert await create(svc) == sid  # unconfirmed duplicate: the existing id
    r = await svc.client.put(f"/v2/queues/q/subscriptions/{sid}/confirm",
                             json={"confirmed": True})
    assert r.status_code == 204
    assert r.headers["location"] == f"/v2/queues/q/subscriptions/{sid}/confirm"
    assert (await svc.client.get(f"/v2/queues/q/subscriptions/{sid}")).json()["confirmed"]
    r = await svc.client.post("/v2/queues/q/subscriptions",
                              json={"subscriber": "http://10.0.0.1:5679"})
    assert r.status_code == 409
    assert r.headers["location"] == "/v2/queues/q/subscriptions"
    assert r.json() == {"title": "Resource conflict", "description":
                        "Such subscription already exists.Subscriptions are unique by project + "
                        "queue + subscriber URI."}
    for body, description in [({"confirmed": "yes"}, "The 'confirmed' should be boolean."),
                               ({}, "The 'confirmed' should be boolean.")]:
        r = await svc.client.put(f"/v2/queues/q/subscriptions/{sid}/confirm", json=body)
        assert r.json() == {"title": "Invalid API request", "description": description}
    r = await svc.client.put("/v2/queues/q/subscriptions/nope/confirm", json={"confirmed": True})
    assert r.status_code == 404


async def test_list_pages(svc: Service) -> None:
    ids = sorted([await create(svc, subscriber=f"http://h/{i}") for i in range(5)])
    r = await svc.client.get("/v2/queues/q/subscriptions?limit=2&detailed=False")
    body = r.json()
    assert [s["id"] for s in body["subscriptions"]] == ids[:2]
    assert body["links"][0]["href"] == f"/v2/queues/q/subscriptions?limit=2&marker={ids[1]}"
    seen = []
    href = "/v2/queues/q/subscriptions?limit=2"
    while True:
        page = (await svc.client.get(href)).json()
        if not page["subscriptions"]:
            assert page["links"] == []
            break
        seen += [s["id"] for s in page["subscriptions"]]
        href = page["links"][0]["href"]
    assert seen == ids
    r = await svc.client.get("/v2/queues/missing/subscriptions")
    assert r.json() == {"subscriptions": [], "links": []}
    r = await svc.client.get("/v2/queues/q/subscriptions?limit=21")
    assert r.json() == {"title": "Invalid API request",
                        "description": "Limit must be at least 1 and may not be greater than 20."}


async def test_update(svc: Service) -> None:
    sid = await create(svc, ttl=600)
    other = await create(svc, subscriber="mailto:a@example.com")
    svc.clock.advance(100)
    r = await svc.client.patch(f"/v2/queues/q/subscriptions/{sid}",
                               json={"ttl": 900, "options": {"x": 1}, "ignored": True})
    assert r.status_code == 204
    assert r.headers["location"] == f"/v2/queues/q/subscriptions/{sid}"
    sub = (await svc.client.get(f"/v2/queues/q/subscriptions/{sid}")).json()
    assert (sub["ttl"], sub["options"]) == (900, {"x": 1})
    r = await svc.client.patch(f"/v2/queues/q/subscriptions/{sid}",
                               json={"subscriber": "mailto:a@example.com"})
    assert r.status_code == 409
    assert r.json()["description"] == ("Such subscription already exists. Subscriptions are "
                                       "unique by project + queue + subscriber URI.")
    r = await svc.client.patch(f"/v2/queues/q/subscriptions/{other}",
                               json={"subscriber": "https://new.example.com"})
    assert r.status_code == 204
    r = await svc.client.patch("/v2/queues/q/subscriptions/nope", json={"ttl": 100})
    assert r.status_code == 404
    r = await svc.client.patch(f"/v2/queues/other/subscriptions/{sid}", json={"ttl": 100})
    assert r.status_code == 404  # wrong queue


async def test_subscriptions_expire(svc: Service) -> None:
    sid = await create(svc, ttl=60)
    svc.clock.advance(61)
    assert (await svc.client.get(f"/v2/queues/q/subscriptions/{sid}")).status_code == 404
    assert (await svc.client.get("/v2/queues/q/subscriptions")).json()["subscriptions"] == []
    assert await create(svc) != sid  # the expired one no longer counts as a duplicate


TYPES = "['http', 'https', 'mailto', 'trust+http', 'trust+https']"


@pytest.mark.parametrize(("body", "title", "description"), [
    (None, "Invalid API request", "Missing parameter subscriber in body."),
    ({}, "Invalid API request", "Missing parameter subscriber in body."),
    ({"ttl": 100}, "Invalid API request", "Missing parameter subscriber in body."),
    ({"subscriber": "ftp://x"}, "Invalid API request",
     f"The subscriber type of subscription must be supported in the list {TYPES}."),
    ({"subscriber": "no-scheme"}, "Invalid API request",
     f"The subscriber type of subscription must be supported in the list {TYPES}."),
    ({"subscriber": 5}, "Invalid API request",
     f"The subscriber type of subscription must be supported in the list {TYPES}."),
    ({"subscriber": "http://x", "options": [1]}, "Invalid API request", "Options must be a dict."),
    ({"subscriber": "http://x", "options": {"_retry_policy": 3}}, "Invalid API request",
     "retry_policy must be a dict."),
    ({"subscriber": "http://x", "ttl": "100"}, "Invalid API request", "TTL must be an integer."),
    ({"subscriber": "http://x", "ttl": 59}, "Invalid API request",
     "The TTL for a subscription must be at least 60 seconds long."),
    ({"subscriber": "http://x", "ttl": 9_000_000_000_000}, "Invalid API request",
     "The TTL seconds for a subscription plus current time must be less than "
     "9999-12-31 23:59:59.999999."),
    ({"subscriber": "http://x", "ttl": 2**64}, "Invalid request body",
     "JSON contains integer that is too large."),
    ([{"subscriber": "http://x"}], "Invalid request body", "Document type not supported."),
])
async def test_create_bad_input(svc: Service, body: Any, title: str, description: str) -> None:
    before = await svc.ends()
    r = await svc.client.post("/v2/queues/q/subscriptions", json=body)
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}
    assert await svc.ends() == before


@pytest.mark.parametrize(("body", "description"), [
    (None, "No subscription to create."),
    ({}, "No subscription to create."),
    ([1], "Subscriptions must be a dict."),
    ({"ttl": 10}, "The TTL for a subscription must be at least 60 seconds long."),
    ({"subscriber": "gopher://x"},
     f"The subscriber type of subscription must be supported in the list {TYPES}."),
])
async def test_update_bad_input(svc: Service, body: Any, description: str) -> None:
    sid = await create(svc)
    before = await svc.ends()
    r = await svc.client.patch(f"/v2/queues/q/subscriptions/{sid}", json=body)
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": description}
    assert await svc.ends() == before


async def test_max_subscriptions_per_queue(make_service: Any) -> None:
    """One subscription past the cap is Zaqar's 400; it changes nothing (decided in apply);
    a topic has the same cap; another queue is not affected."""
    svc = await make_service(max_subscriptions_per_queue=2)
    for n in range(2):
        await create(svc, subscriber=f"http://10.0.0.{n + 1}:5679")
    r = await svc.client.post("/v2/queues/q/subscriptions",
                              json={"subscriber": "http://10.0.0.9:5679"})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": (
        "A queue may not have more than 2 subscriptions (max_subscriptions_per_queue).")}
    listed = (await svc.client.get("/v2/queues/q/subscriptions")).json()["subscriptions"]
    assert sorted(s["subscriber"] for s in listed) == ["http://10.0.0.1:5679",
                                                       "http://10.0.0.2:5679"]
    await create(svc, queue="other", subscriber="http://10.0.0.9:5679")
    for n in range(2):
        r = await svc.client.post("/v2/topics/t/subscriptions",
                                  json={"subscriber": f"http://10.0.0.{n + 1}:5679"})
        assert r.status_code == 201
    r = await svc.client.post("/v2/topics/t/subscriptions",
                              json={"subscriber": "http://10.0.0.9:5679"})
    assert r.status_code == 400
