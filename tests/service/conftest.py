"""Fixtures: the real app over a real FileLog, a MemoryStore and a Runner, per test.

httpx's ASGITransport does not run the lifespan, and the app starts nothing anyway: the
fixture starts the log and runner before the test and stops them after it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from log.filelog import FileLog
from ops.settings import Settings
from projections.memstore import MemoryStore
from projections.runner import Runner
from service.app import create_app
from service.gateway import LocalGateway

PROJECT = "proj"
PARTITIONS = 4


@dataclass
class Clock:
    """Wall time plus a test-controlled offset, in ms (for TTL and expiry tests)."""

    offset_ms: int = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


@dataclass
class Service:
    """One running app and its parts."""

    client: httpx.AsyncClient
    log: FileLog
    runner: Runner
    store: MemoryStore
    gateway: LocalGateway
    clock: Clock
    settings: Settings
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    async def ends(self) -> list[int]:
        """Every partition's end offset: equal before and after means nothing was appended."""
        return [await self.log.end_offset(p) for p in range(self.log.partitions)]

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Client-ID": self.client_id, "X-Project-ID": PROJECT, **extra}


Factory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[Factory]:
    """Build a service with settings overrides; everything started is stopped after."""
    started: list[tuple[httpx.AsyncClient, Runner, FileLog]] = []

    async def factory(**overrides: Any) -> Service:
        # Upstream's protocol examples subscribe private URLs (10.0.0.1); the SSRF guard has
        # its own tests (tests/service/test_notify_ssrf.py).
        overrides.setdefault("notification_private_targets", True)
        settings = Settings(data=str(tmp_path), partitions=PARTITIONS, **overrides)
        log = FileLog(tmp_path / f"log{len(started)}", PARTITIONS)
        await log.start()
        store = MemoryStore()
        clock = Clock()
        runner = Runner(log, store, range(PARTITIONS), clock=clock, sweep_interval=0)
        await runner.start()
        await runner.settled()  # the owner's SetRules are in before a test counts records
        gateway = LocalGateway(log, runner, store, clock, timeout=settings.request_timeout)
        app = create_app(settings, gateway)
        transport = httpx.ASGITransport(app=app)
        client_id = str(uuid.uuid4())
        client = httpx.AsyncClient(transport=transport, base_url="http://marconi.test",
                                   headers={"Client-ID": client_id, "X-Project-ID": PROJECT})
        started.append((client, runner, log))
        return Service(client, log, runner, store, gateway, clock, settings, client_id)

    yield factory
    for client, runner, log in started:
        await client.aclose()
        await runner.stop()
        await log.stop()


@pytest.fixture
async def svc(make_service: Factory) -> Service:
    return await make_service()


@pytest.fixture
def client(svc: Service) -> httpx.AsyncClient:
    return svc.client
