"""The local gateway: stamping time, barriers, outcomes (DESIGN.md §2.6, §2.7, §7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from log.filelog import FileLog
from projections import queries
from projections.commands import CreateQueue, NewMessage, PostMessages, SetRules, decode
from projections.memstore import MemoryStore
from projections.runner import Runner
from service.gateway import LocalGateway
from service.types import Gateway
from tests.service.conftest import Factory, Service


def test_local_gateway_implements_the_protocol(svc: Service) -> None:
    assert isinstance(svc.gateway, Gateway)
    assert svc.gateway.partitions == 4


async def test_stamped_time_never_goes_backwards(svc: Service) -> None:
    gw = svc.gateway
    p = gw.partition_of("proj", "q")
    first = gw.now_ms(p)
    svc.clock.advance(-3600)  # the wall clock jumps back an hour
    assert gw.now_ms(p) >= first
    future = first + 10_000_000
    await gw.execute(CreateQueue(id="c1", project="proj", queue="q", time_ms=future))
    assert queries.partition_state(svc.store, p)["time"] == future
    assert gw.now_ms(p) >= future  # a partition's log time bounds every later stamp
    _, partition, now = await gw.view_for("proj", "q")
    assert partition == p and now >= future


async def test_execute_returns_the_recorded_outcome(svc: Service) -> None:
    gw = svc.gateway
    cmd = PostMessages(id="post-1", project="proj", queue="q", client_id="c",
                       time_ms=gw.now_ms(gw.partition_of("proj", "q")),
                       messages=[NewMessage(id="m1", body=1)])
    assert await gw.execute(cmd) == {"ids": ["m1"]}
    again = PostMessages(id="post-1", project="proj", queue="q", client_id="c",
                         time_ms=cmd.time_ms, messages=[NewMessage(id="m2", body=2)])
    assert await gw.execute(again) == {"ids": ["m1"]}  # a retry answers the first outcome
    r = await svc.client.get("/v2/queues/q/messages?echo=true")
    assert [m["id"] for m in r.json()["messages"]] == ["m1"]


async def test_reads_see_their_own_writes(svc: Service) -> None:
    for i in range(20):
        await svc.client.post("/v2/queues/rw/messages", json={"messages": [{"body": i}]})
        r = await svc.client.get("/v2/queues/rw/stats")
        assert r.json()["messages"]["total"] == i + 1


async def test_views_all_barriers_every_partition(svc: Service) -> None:
    views = await svc.gateway.views_all()
    assert [p for p, _ in views] == [0, 1, 2, 3]
    assert await svc.gateway.reachable()


async def test_requests_waiting_at_shutdown_get_503(make_service: Factory) -> None:
    svc = await make_service(request_timeout=5)
    await svc.runner.stop()
    pending = asyncio.create_task(svc.client.put("/v2/queues/q"))
    await asyncio.sleep(0.1)  # appended; now waiting for the projection
    await svc.runner.stop()  # drops its waiters, as at shutdown
    r = await asyncio.wait_for(pending, 2)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"


async def test_commands_wait_until_the_partition_is_ready(tmp_path: Path) -> None:
    """A request that arrives while the owner is still starting is appended only after the
    owner's ``SetRules``, so it folds under the configured rules, not the old ones."""
    log = FileLog(tmp_path / "log", 2)
    await log.start()
    store = MemoryStore()
    runner = Runner(log, store, range(2), sweep_interval=0)
    await runner.start()  # not settled: the rules switch has not been appended yet
    gw = LocalGateway(log, runner, store, timeout=5.0)
    p = gw.partition_of("proj", "early")
    assert not runner.ready(p)
    cmd = PostMessages(id="early-1", project="proj", queue="early", client_id="c",
                       time_ms=gw.now_ms(p), messages=[NewMessage(id="m1", body=1)])
    assert await gw.execute(cmd) == {"ids": ["m1"]}
    kinds = [type(decode(rec.value)) for rec in await log.read(p, 0, 10)]
    assert kinds == [SetRules, PostMessages]
    await runner.stop()
    await log.stop()


async def test_a_stopped_runner_takes_no_commands(make_service: Factory) -> None:
    svc = await make_service(request_timeout=5)
    await svc.runner.stop()
    before = await svc.ends()
    r = await svc.client.put("/v2/queues/late")
    assert r.status_code == 503
    assert await svc.ends() == before  # refused before the append
