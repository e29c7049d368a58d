"""The gateway of a front process (``marconi serve --workers N``): the core owns the log and
the store; this sends it commands and whole read requests over one Unix socket.

* ``execute``: the command's record goes to the core, which stamps its time (one clock per
  partition, as ``LocalGateway.now_ms``), appends, waits for apply and answers the outcome —
  so a 2xx here is as durable as one from a single process. The core's stamp is written
  back onto the command, because a few handlers render from ``cmd.time_ms``.
* ``view_for`` / ``views_all`` raise ``ForwardToCore``: the store is not here, so the request
  is answered by the core's own app (the same handlers on a linearizable read there), and
  its response relayed, with the body a handler already read (``validation.BODY_READ``).
* The core gone (killed, stopped): pending requests answer 503 and the front stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import orjson
from starlette.responses import Response

from log import LogHealth, partition_for
from projections.commands import Command, encode
from projections.store import View
from service import corewire as W
from service import metricsfanin as fanin
from service.errors import HTTPError, Unavailable
from service.metrics import Metrics
from service.types import Outcome, Receive, Scope, Send
from service.validation import BODY_READ

logger = logging.getLogger(__name__)

FAILED = "The command could not be completed."
READ_FAILED = "The resource could not be read."


SWEEP_S = 0.25  # how often calls past their deadline are failed (so: how late, at most)


class CoreLink(asyncio.Protocol):
    """One connection to the core; many requests in flight, answered by id.

    A call's timeout is a deadline beside its future, failed by one periodic sweep while calls
    are pending (``_expire``), not an ``asyncio.timeout`` per call: that armed and cancelled a
    timer and rescheduled the task on every command (~6 µs of a front's CPU per request)."""

    def __init__(self) -> None:
        self._reader = W.FrameReader()
        self._writer: W.FrameWriter | None = None
        self._pending: dict[int, tuple[asyncio.Future[tuple[int, bytes]], float]] = {}
        self._next = 0
        self._loop = asyncio.get_running_loop()
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = self._loop.create_future()

    @classmethod
    async def connect(cls, path: str) -> CoreLink:
        _, link = await asyncio.get_running_loop().create_unix_connection(cls, path)
        return link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)  # uvloop's is not a subclass
        self._writer = W.FrameWriter(self._transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except W.WireError:
            logger.exception("core sent a bad frame")
            self._transport.close()
            return
        for rid, kind, payload in frames:
            found = self._pending.pop(rid, None)
            if found is not None and not found[0].done():
                found[0].set_result((kind, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the core closed the connection"))
        self._pending.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if not self.closed.done():
            self.closed.set_result(None)

    async def call(self, kind: int, payload: bytes, timeout: float) -> tuple[int, bytes]:
        """The core's answer (kind, payload); ``TimeoutError`` past ``timeout`` (within
        ``SWEEP_S``), ``ConnectionError`` when the core is gone."""
        if self.closed.done() or self._writer is None:
            raise ConnectionError("no connection to the core")
        self._next = (self._next + 1) & 0xFFFFFFFF
        rid = self._next
        fut: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        self._pending[rid] = (fut, self._loop.time() + timeout)
        if self._sweep is None:
            self._sweep = self._loop.call_later(SWEEP_S, self._expire)
        self._writer.send(rid, kind, payload)
        try:
            return await fut
        finally:
            self._pending.pop(rid, None)

    def _expire(self) -> None:
        """Fail the calls past their deadline; sweep again while any are pending."""
        self._sweep = None
        now = self._loop.time()
        late = [rid for rid, (_, deadline) in self._pending.items() if deadline <= now]
        for rid in late:
            fut, _ = self._pending.pop(rid)
            if not fut.done():
                fut.set_exception(TimeoutError(f"no answer from the core in time (call {rid})"))
        if self._pending:
            self._sweep = self._loop.call_later(SWEEP_S, self._expire)

    def close(self) -> None:
        self._transport.close()


class ForwardToCore(HTTPError):
    """Raised where a handler needs the store: the core answers the whole request."""

    def __init__(self, link: CoreLink, timeout: float) -> None:
        super().__init__(503, "Forward", "to the core")
        self.link = link
        self.timeout = timeout

    def response(self) -> Response:
        return _CoreProxy(self.link, self.timeout)


class _CoreProxy(Response):
    """Sends the current request (with the body read so far and the rest) to the core."""

    def __init__(self, link: CoreLink, timeout: float) -> None:
        super().__init__(status_code=503)
        self._link = link
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = scope.get(BODY_READ)  # the handler read it all (its receive is spent)
        chunks: list[bytes] = [] if read is None else [read]
        more = read is None
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            kind, payload = await self._link.call(
                W.REQUEST, W.request_payload(scope, b"".join(chunks)), self._timeout)
        except (ConnectionError, TimeoutError):
            await Unavailable(READ_FAILED).response()(scope, receive, send)
            return
        if kind == W.ERROR:
            await W.error_from(payload).response()(scope, receive, send)
            return
        status, headers, body = W.response_from(payload)
        headers = [(k, v) for k, v in headers if k != b"x-openstack-request-id"]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RemoteGateway:
    """``Gateway`` over a ``CoreLink``: commands go to the core, reads are forwarded whole."""

    def __init__(self, link: CoreLink, partitions: int, *, timeout: float = 10.0) -> None:
        self._link = link
        self._partitions = partitions
        self._timeout = timeout
        self._health = LogHealth(True, "")

    @property
    def partitions(self) -> int:
        return self._partitions

    def partition_of(self, project: str, queue: str) -> int:
        return partition_for(project, queue, self._partitions)

    def now_ms(self, partition: int) -> int:
        """A provisional stamp: the core stamps the command again before appending it."""
        return time.time_ns() // 1_000_000

    def queue_now_ms(self, project: str, queue: str) -> int:
        """As ``now_ms``, without hashing the queue to a partition it would ignore."""
        return time.time_ns() // 1_000_000

    async def execute(self, cmd: Command) -> Outcome:
        try:
            kind, payload = await self._link.call(W.EXECUTE, encode(cmd), self._timeout + 1.0)
        except (ConnectionError, TimeoutError) as exc:
            logger.warning("command %s %s: no answer from the core (%r)", cmd.TAG, cmd.id, exc)
            raise Unavailable(FAILED) from exc
        if kind == W.ERROR:
            raise W.error_from(payload)
        (stamped,) = W.U64.unpack_from(payload)
        object.__setattr__(cmd, "time_ms", stamped)  # the core's stamp (frozen dataclass)
        outcome: dict[str, Any] = orjson.loads(payload[W.U64.size:])
        return outcome

    async def view_for(self, project: str, queue: str) -> tuple[View, int, int]:
        raise ForwardToCore(self._link, self._timeout + 1.0)

    async def views_all(self) -> list[tuple[int, View]]:
        raise ForwardToCore(self._link, self._timeout + 1.0)

    async def reachable(self) -> bool:
        raise ForwardToCore(self._link, self._timeout + 1.0)

    def log_health(self) -> LogHealth:
        """Only ever asked before ``reachable`` (ping), which forwards: the core answers."""
        return self._health


class ForwardedHistory:
    """The admin history route of a front: the core's history worker answers it."""

    def __init__(self, link: CoreLink, timeout: float) -> None:
        self._link = link
        self._timeout = timeout

    async def page(self, project: str, queue: str, marker: int | None,
                   limit: int) -> list[Any]:
        raise ForwardToCore(self._link, self._timeout)

    async def close(self) -> None:
        return None


class CoreMetrics:
    """A front's ``/metrics`` (``Metrics.fan_in``): its samples go to the core, which answers
    the sum over every process (``service.metricsfanin``). ``push`` sends them every
    ``PUSH_INTERVAL_S`` so a scrape on a sibling front sees this one's requests too."""

    def __init__(self, link: CoreLink, timeout: float) -> None:
        self._link = link
        self._timeout = timeout

    async def __call__(self, metrics: Metrics) -> bytes:
        try:
            kind, payload = await self._send(metrics, W.SCRAPE)
        except (ConnectionError, TimeoutError):
            logger.warning("metrics: no answer from the core; this front's figures only")
            return metrics.render()
        if kind == W.ERROR:
            raise W.error_from(payload)
        return payload

    async def _send(self, metrics: Metrics, mode: bytes) -> tuple[int, bytes]:
        samples = fanin.encode(fanin.families_of(metrics.registry))
        return await self._link.call(W.METRICS, mode + samples, self._timeout)

    async def push(self, metrics: Metrics) -> None:
        while not self._link.closed.done():
            try:
                await self._send(metrics, W.PUSH)
            except (ConnectionError, TimeoutError):
                return
            await asyncio.sleep(fanin.PUSH_INTERVAL_S)
