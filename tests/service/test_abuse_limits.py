"""Rate limits and token scoping (issue 9 items 6 and 7)."""

from __future__ import annotations

import pytest

from ops.settings import Settings, SettingsError, TokenGrant, load_settings
from service.ratelimit import TokenBucket
from tests.service.conftest import Factory


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.5) == 0.0  # one token back after 1/rate seconds
    assert bucket.take(100.5) > 0
    assert [bucket.take(200.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # capped at burst
    assert bucket.take(200.0) > 0


async def test_a_project_over_its_rate_gets_429(make_service: Factory) -> None:
    svc = await make_service(rate_limit=0.5, rate_burst=3)
    c = svc.client
    for _ in range(3):
        assert (await c.get("/v2/queues")).status_code == 200
    before = await svc.ends()
    r = await c.put("/v2/queues/over")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["title"] == "Too Many Requests"
    assert set(r.json()) == {"title", "description"}
    assert await svc.ends() == before  # refused before anything was appended
    # another project has its own bucket
    assert (await c.get("/v2/queues", headers={"X-Project-ID": "other"})).status_code == 200


async def test_rate_limit_off_by_default(make_service: Factory) -> None:
    svc = await make_service()
    for _ in range(50):
        assert (await svc.client.get("/v2/queues")).status_code == 200


def test_a_token_without_a_project_is_refused_at_load() -> None:
    with pytest.raises(SettingsError, match="any_project"):
        load_settings(env={"MARCONI_AUTH": "token",
                           "MARCONI_TOKENS": '{"t": {"roles": ["member"]}}'})
    with pytest.raises(SettingsError, match="any_project"):
        Settings(auth="token", tokens={"t": TokenGrant(roles=("member",))})
    ok = load_settings(env={"MARCONI_AUTH": "token",
                            "MARCONI_TOKENS": '{"t": {"any_project": true}}'})
    assert ok.tokens["t"].any_project


async def test_only_a_marked_token_picks_its_project(make_service: Factory) -> None:
    svc = await make_service(auth="token", tokens={
        "scoped": TokenGrant(project="mine", roles=("member",)),
        "operator": TokenGrant(roles=("admin",), any_project=True)})
    c = svc.client
    r = await c.put("/v2/queues/q", headers={"X-Auth-Token": "scoped", "X-Project-ID": "yours"})
    assert r.status_code == 201
    r = await c.get("/v2/queues", headers={"X-Auth-Token": "operator", "X-Project-ID": "yours"})
    assert r.json()["queues"] == []  # the scoped token's queue went to its own project
    r = await c.get("/v2/queues", headers={"X-Auth-Token": "operator", "X-Project-ID": "mine"})
    assert [q["name"] for q in r.json()["queues"]] == ["q"]
