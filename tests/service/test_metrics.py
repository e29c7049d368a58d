"""``/metrics``: the numbers move when traffic flows (requests, latency, appends, applies,
sweeps, quarantine), and lag reads end - applied - 1 per partition."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from log import partition_for
from log.filelog import FileLog
from ops.settings import Settings
from projections.memstore import MemoryStore
from projections.runner import Runner
from service.app import create_app
from service.gateway import LocalGateway
from service.history import HistoryReader
from service.metrics import CountingLog, LocalStatus, Metrics, parse_samples
from tests.service.conftest import Clock

PARTITIONS = 4
PROJECT = "proj"


@dataclass
class Observed:
    """An app wired like ``marconi serve`` wires it: counted log, status, history."""

    client: httpx.AsyncClient
    log: CountingLog
    raw_log: FileLog
    runner: Runner
    store: MemoryStore
    clock: Clock
    history: HistoryReader

    def headers(self, **extra: str) -> dict[str, str]:
        return {"X-Project-ID": PROJECT, **extra}


async def observed_app(path: Path, **overrides: Any) -> Observed:
    raw = FileLog(path / "log", PARTITIONS)
    await raw.start()
    log = CountingLog(raw)
    store = MemoryStore()
    clock = Clock()
    runner = Runner(log, store, range(PARTITIONS), clock=clock, sweep_interval=0)
    await runner.start()
    await runner.settled()  # the owner's SetRules are in before a test counts records
    await log.refresh()
    settings = Settings(data=str(path), partitions=PARTITIONS, **overrides)
    gateway = LocalGateway(log, runner, store, clock, timeout=settings.request_timeout)
    status = LocalStatus(log, runner, store, owner="test-node")
    history = HistoryReader(log, batch=8)
    app = create_app(settings, gateway, history_reader=history, status=status,
                     metrics=Metrics(log=log, status=status))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://marconi.test",
                               headers={"Client-ID": str(uuid.uuid4())})
    return Observed(client, log, raw, runner, store, clock, history)


async def close(o: Observed) -> None:
    await o.client.aclose()
    await o.history.close()
    await o.runner.stop()
    await o.raw_log.stop()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Observed]:
    o = await observed_app(tmp_path)
    yield o
    await close(o)


async def scrape(o: Observed) -> dict[tuple[str, frozenset], float]:
    r = await o.client.get("/metrics", headers={"Client-ID": ""})  # no Zaqar checks here
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {(name, frozenset(labels.items())): value
            for name, labels, value in parse_samples(r.text)}


def value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


MSGS_ROUTE = "/v2/queues/{queue_name}/messages"


async def test_metrics_move_when_traffic_flows(node: Observed) -> None:
    before = await scrape(node)
    h = node.headers()
    for i in range(3):
        r = await node.client.post("/v2/queues/q/messages", headers=h,
                                   json={"messages": [{"body": i}, {"body": -i}]})
        assert r.status_code == 201
    assert (await node.client.get("/v2/queues/q/messages", headers=h)).status_code == 200
    assert (await node.client.get("/v2/nowhere/at/all", headers=h)).status_code == 404
    assert (await node.client.get("/v2/queues/q/messages",
                                  headers={"Client-ID": ""})).status_code == 400
    after = await scrape(node)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("marconi_http_requests_total", method="POST", route=MSGS_ROUTE,
                 status="201") == 3
    assert moved("marconi_http_requests_total", method="GET", route=MSGS_ROUTE,
                 status="200") == 1
    assert moved("marconi_http_requests_total", method="GET", route=MSGS_ROUTE,
                 status="400") == 1
    assert moved("marconi_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert moved("marconi_http_request_duration_seconds_count", method="POST",
                 route=MSGS_ROUTE) == 3
    assert moved("marconi_http_request_duration_seconds_bucket", method="POST",
                 route=MSGS_ROUTE, le="+Inf") == 3
    assert moved("marconi_log_appends_total") == 3
    assert moved("marconi_log_appended_records_total") == 3
    p = str(partition_for(PROJECT, "q", PARTITIONS))
    assert moved("marconi_projection_records_applied_total", partition=p) == 3
    # offset 0 is the owner's SetRules (the rules version switch), then the 3 posts
    assert value(after, "marconi_projection_applied_offset", partition=p) == 3
    assert value(after, "marconi_log_end_offset", partition=p) == 4
    for q in range(PARTITIONS):
        assert value(after, "marconi_projection_lag", partition=str(q)) == 0
    # a scrape is not a request of the API
    assert not any(name == "marconi_http_requests_total" and ("route", "/metrics") in labels
                   for name, labels in after)


async def test_sweeps_and_quarantine_are_counted(node: Observed) -> None:
    h = node.headers()
    r = await node.client.post("/v2/queues/q/messages", headers=h,
                               json={"messages": [{"body": 1, "ttl": 60}]})
    assert r.status_code == 201
    p = partition_for(PROJECT, "q", PARTITIONS)
    node.clock.advance(120)
    assert await node.runner.sweep(p)
    (bad,) = await node.log.append(p, [b"not a command"])
    await node.runner.applied(p, bad, timeout=10)
    samples = await scrape(node)
    assert value(samples, "marconi_sweeps_total") == 1
    assert value(samples, "marconi_quarantined_records", partition=str(p)) == 1
    assert value(samples, "marconi_log_appended_records_total") == 3 + PARTITIONS  # + SetRules


async def test_each_app_has_its_own_registry(tmp_path: Path, node: Observed) -> None:
    other = await observed_app(tmp_path / "other")
    try:
        await node.client.post("/v2/queues/q/messages", headers=node.headers(),
                               json={"messages": [{"body": 1}]})
        mine, theirs = await scrape(node), await scrape(other)
        assert value(mine, "marconi_http_requests_total", method="POST", route=MSGS_ROUTE,
                     status="201") == 1
        assert value(theirs, "marconi_http_requests_total", method="POST", route=MSGS_ROUTE,
                     status="201") == 0
    finally:
        await close(other)
