"""Listing through the API steps over a bounded number of entries it may not show (the
caller's own with ``echo=false``, claimed ones): a short or empty page then carries a next
link that goes on from where it stopped, so a client following links still sees everything."""

from __future__ import annotations

import uuid

import pytest

from projections import queries
from tests.service.conftest import Service


async def follow(svc: Service, url: str, headers: dict[str, str]) -> tuple[list[str], int]:
    """Every message id found by following next links; and the number of responses."""
    found, responses = [], 0
    while url:
        r = await svc.client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        responses += 1
        found += [m["id"] for m in body["messages"]]
        links = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = links[0] if links else ""
        assert responses < 100
    return found, responses


@pytest.mark.parametrize("version", ["v2", "v1.1"])
async def test_echo_false_pages_over_own_messages_in_bounded_steps(
        svc: Service, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(queries, "SKIP_CAP", 7)
    await svc.client.put(f"/{version}/queues/own")
    for _ in range(4):  # 40 of our own
        r = await svc.client.post(f"/{version}/queues/own/messages",
                                  json={"messages": [{"body": i, "ttl": 300}
                                                     for i in range(10)]})
        assert r.status_code == 201
    other = {"Client-ID": str(uuid.uuid4())}
    r = await svc.client.post(f"/{version}/queues/own/messages", headers=other,
                              json={"messages": [{"body": "theirs", "ttl": 300}]})
    theirs = r.json()["resources"][0].rsplit("/", 1)[1]
    found, responses = await follow(svc, f"/{version}/queues/own/messages?echo=false",
                                    {})
    assert found == [theirs]
    assert responses >= 40 // 7  # stopped at the cap, went on through the links
    # the other client sees all 40 of ours, 10 a page, and never its own
    found, _ = await follow(svc, f"/{version}/queues/own/messages?echo=false", other)
    assert len(found) == 40 and theirs not in found
