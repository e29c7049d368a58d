"""Operations on a queue that does not exist (zaqar-api.md §10.1), row by row."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.conftest import Service
from tests.service.test_queues import DEFAULTS, PATCH_TYPE

Q = "/v2/queues/ghost"

# (method, path, kwargs, status, body or None, creates the queue)
TABLE: list[tuple[str, str, dict[str, Any], int, Any, bool]] = [
    ("GET", Q, {}, 200, DEFAULTS, False),
    ("GET", f"{Q}/stats", {}, 200, {"messages": {"claimed": 0, "free": 0, "total": 0}}, False),
    ("PATCH", Q, {"json": [{"op": "add", "path": "/metadata/k", "value": 1}],
                  "headers": PATCH_TYPE}, 404,
     {"title": "Not found", "description": "Queue ghost does not exist for project proj"}, False),
    ("DELETE", Q, {}, 204, None, False),
    ("GET", f"{Q}/messages", {}, 200, {"messages": [], "links": []}, False),
    ("GET", f"{Q}/messages?ids=a", {}, 404,
     {"title": "Not found",
      "description": "No messages with IDs: ['a'] found in the queue ghost for project proj."},
     False),
    ("GET", f"{Q}/messages/a", {}, 404,
     {"title": "Not found",
      "description": "Message a does not exist in queue ghost for project proj"}, False),
    ("DELETE", f"{Q}/messages/a", {}, 204, None, False),
    ("DELETE", f"{Q}/messages?ids=a,b", {}, 204, None, False),
    ("DELETE", f"{Q}/messages?pop=3", {}, 200, {"messages": []}, False),
    ("POST", f"{Q}/claims", {}, 204, None, False),
    ("GET", f"{Q}/claims/c", {}, 404,
     {"title": "Not found",
      "description": "Claim c does not exist in queue ghost for project proj"}, False),
    ("PATCH", f"{Q}/claims/c", {"json": {"ttl": 100}}, 404, None, False),
    ("DELETE", f"{Q}/claims/c", {}, 204, None, False),
    ("GET", f"{Q}/subscriptions", {}, 200, {"subscriptions": [], "links": []}, False),
    ("GET", f"{Q}/subscriptions/s", {}, 404,
     {"title": "Not found", "description": "Subscription s does not exist"}, False),
    ("PATCH", f"{Q}/subscriptions/s", {"json": {"ttl": 100}}, 404, None, False),
    ("PUT", f"{Q}/subscriptions/s/confirm", {"json": {"confirmed": True}}, 404, None, False),
    ("DELETE", f"{Q}/subscriptions/s", {}, 204, None, False),
    ("POST", f"{Q}/purge", {}, 204, None, False),
    ("POST", f"{Q}/messages", {"json": {"messages": [{"body": 1}]}}, 201, None, True),
    ("POST", f"{Q}/subscriptions", {"json": {"subscriber": "http://x"}}, 201, None, True),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "body", "creates"), TABLE)
async def test_lazy_queue(svc: Service, method: str, path: str, kwargs: dict[str, Any],
                          status: int, body: Any, creates: bool) -> None:
    r = await svc.client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    if body is not None:
        assert r.json() == body
    queues = [q["name"] for q in (await svc.client.get("/v2/queues")).json()["queues"]]
    assert queues == (["ghost"] if creates else [])
