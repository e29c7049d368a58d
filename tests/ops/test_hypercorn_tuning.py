"""``ops.hypercorn_tuning``: the keep-alive timer and the cached date header keep Hypercorn's
behaviour — an idle connection closes after ``keep_alive_timeout``, a busy one never does,
a shutdown closes the idle ones at once, and every response carries the current date.

Real Hypercorn on a real socket, serving a small ASGI app (the server layer is under test).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

from hypercorn.asyncio import serve

from ops import hypercorn_tuning
from ops.testbroker import free_port

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
SLOW = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
              send: Callable[[Any], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.0)  # longer than the keep-alive timeout: still answered
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def config(port: int, keep_alive: float) -> hypercorn_tuning.TunedConfig:
    cfg = hypercorn_tuning.TunedConfig()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.keep_alive_timeout = keep_alive
    cfg.graceful_timeout = 30.0
    cfg.accesslog = None
    hypercorn_tuning.install()
    return cfg


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    return head + await reader.readexactly(2)


async def started(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for _ in range(200):
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
    raise AssertionError("the server did not start")


def test_an_idle_connection_closes_after_the_keep_alive_timeout_a_busy_one_stays_open() -> None:
    async def main() -> None:
        port = free_port()
        stop = asyncio.Event()
        server = asyncio.create_task(serve(app, config(port, 0.4),  # type: ignore[arg-type]
                                           shutdown_trigger=stop.wait))
        reader, writer = await started(port)
        for _ in range(12):  # 1.2 s of requests 0.1 s apart: three timeouts' worth, no close
            writer.write(REQUEST)
            assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.1)
        writer.write(SLOW)  # a request in progress is not idle
        assert (await asyncio.wait_for(read_response(reader), 5.0)).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed by the server
        assert time.monotonic() - began >= 0.3
        writer.close()
        stop.set()
        await server

    asyncio.run(main())


def test_a_shutdown_closes_idle_connections_without_waiting_for_them() -> None:
    async def main() -> None:
        port = free_port()
        stop = asyncio.Event()
        server = asyncio.create_task(serve(app, config(port, 60.0),  # type: ignore[arg-type]
                                           shutdown_trigger=stop.wait))
        reader, writer = await started(port)
        writer.write(REQUEST)
        await read_response(reader)
        _, never_asked = await started(port)  # idle since it connected
        stop.set()
        await asyncio.wait_for(server, 10.0)  # not the 30 s graceful timeout, nor 60 s idle
        assert await asyncio.wait_for(reader.read(), 1.0) == b""
        writer.close()
        never_asked.close()

    asyncio.run(main())


def test_every_response_carries_the_current_date() -> None:
    async def main() -> None:
        port = free_port()
        stop = asyncio.Event()
        server = asyncio.create_task(serve(app, config(port, 5.0),  # type: ignore[arg-type]
                                           shutdown_trigger=stop.wait))
        reader, writer = await started(port)
        seen = set()
        for _ in range(6):  # across at least one change of second
            before = int(time.time())
            writer.write(REQUEST)
            head = (await read_response(reader)).decode()
            after = int(time.time())
            dates = [line.split(":", 1)[1].strip() for line in head.split("\r\n")
                     if line.lower().startswith("date:")]
            assert len(dates) == 1
            stamp = int(parsedate_to_datetime(dates[0]).timestamp())
            assert before <= stamp <= after
            assert "server: hypercorn-h11" in head.lower()
            seen.add(stamp)
            await asyncio.sleep(0.3)
        assert len(seen) >= 2
        writer.close()
        stop.set()
        await server

    asyncio.run(main())

