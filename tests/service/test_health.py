"""``/v2/health``: Zaqar's body (§4.4) plus each partition's log and projection state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from log import partition_for
from tests.service.test_metrics import PARTITIONS, PROJECT, Observed, close, observed_app

OPERATIONS = {"create_queue", "post_messages", "claim_messages", "list_messages",
              "delete_messages", "delete_claim", "bulk_delete_messages", "delete_queue"}


@pytest.fixture
async def admin_node(tmp_path: Path) -> AsyncIterator[Observed]:
    o = await observed_app(tmp_path, admin_mode=True)
    yield o
    await close(o)


async def test_health_reports_every_partition(admin_node: Observed) -> None:
    o = admin_node
    h = o.headers()
    for _ in range(2):
        r = await o.client.post("/v2/queues/q/messages", headers=h,
                                json={"messages": [{"body": 1}]})
        assert r.status_code == 201
    p = partition_for(PROJECT, "q", PARTITIONS)
    (bad,) = await o.log.append(p, [b"\x00garbage"])
    await o.runner.applied(p, bad, timeout=10)

    r = await o.client.get("/v2/health", headers=o.headers(**{"X-Roles": "admin"}))
    assert r.status_code == 200
    body = r.json()
    assert body["storage_reachable"] is True
    assert set(body["operation_status"]) == OPERATIONS
    assert all(op["succeeded"] for op in body["operation_status"].values())
    parts = body["partitions"]
    assert sorted(parts, key=int) == [str(i) for i in range(PARTITIONS)]
    for key, row in parts.items():
        assert row["partition"] == int(key)
        assert row["owner"] == "test-node"
        assert row["end_offset"] == await o.log.end_offset(int(key))
        assert row["applied_offset"] == row["end_offset"] - 1  # the probe read caught up
        assert row["lag"] == 0
        assert row["outbox"] == 0
        assert row["quarantined"] == (1 if int(key) == p else 0)


async def test_health_detail_is_admin_only(admin_node: Observed) -> None:
    r = await admin_node.client.get("/v2/health", headers=admin_node.headers())
    assert r.status_code == 403
    assert r.json() == {"title": "Not authorized",
                        "description": "You are not authorized to complete this action."}
