"""Hypercorn (0.18, pinned), tuned for many small responses on keep-alive connections.

* One send per response. Hypercorn writes every h11 event to the socket as soon as it has it —
  the status line and headers, then the body — so a small JSON answer costs two ``send``
  calls and wakes the client twice. ``CoalescingTCPServer`` collects what a connection writes
  during one event-loop turn and sends it together; a large body still waits for the socket
  to drain, as before.
* The keep-alive timeout as a deadline. Hypercorn restarts a task per request for it (a task
  running ``wait_for(terminated.wait(), keep_alive_timeout)``, cancelled and awaited when the
  next request starts: three tasks and a cancellation per request). ``IdleTimer`` is a
  deadline that one periodic sweep per worker (``IdleConnections``) expires — no timer per
  request either; ``TimerWorkerContext`` closes every idle connection when the server
  terminates, as those tasks did.
* HTTP/1.1 parsed and written by httptools (``ops.http1``) in h11's place.
* The ``date`` header once a second. ``TunedConfig`` formats it when the second changes, not
  per response (the text is the same: an HTTP date has a one-second resolution).

``install()`` points Hypercorn's asyncio worker at the server and the context (it builds
both by name in ``hypercorn.asyncio.run``); ``ops.serve`` and ``ops.front`` call it before
serving, with a ``TunedConfig``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

from hypercorn.asyncio import run as hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import Event, RawData

from ops import http1

HIGH_WATER = 64 * 1024  # bytes buffered in the transport before a send waits for the socket
MAX_SWEEP_S = 1.0  # idle connections are checked at least this often (see IdleConnections)
MIN_SWEEP_S = 0.01


class TunedConfig(Config):
    """Hypercorn's config with the response headers it adds (``date``, ``server``) built
    once per second, not per response."""

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        if not self.include_date_header:
            return super().response_headers(protocol)
        cache: dict[str, tuple[int, list[tuple[bytes, bytes]]]] = self.__dict__.setdefault(
            "_marconi_headers", {})
        second = int(time.time())
        found = cache.get(protocol)
        if found is None or found[0] != second:
            found = cache[protocol] = (second, super().response_headers(protocol))
        return list(found[1])


class IdleConnections:
    """The keep-alive timers of a worker's idle connections, and one sweep that expires those
    past their deadline: every ``timeout / 4`` (at most ``MAX_SWEEP_S``) while any connection
    is idle. A request then costs a set insert and discard, not a timer armed and cancelled
    (a connection closes at most a quarter of its timeout late)."""

    def __init__(self) -> None:
        self._timers: set[IdleTimer] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._interval = MAX_SWEEP_S

    def add(self, timer: IdleTimer, timeout: float) -> None:
        self._timers.add(timer)
        if self._sweep is None:
            self._interval = max(MIN_SWEEP_S, min(MAX_SWEEP_S, timeout / 4))
            self._sweep = asyncio.get_running_loop().call_later(self._interval, self._expire)

    def discard(self, timer: IdleTimer) -> None:
        self._timers.discard(timer)

    def __iter__(self) -> Iterator[IdleTimer]:
        return iter(list(self._timers))

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for timer in [t for t in self._timers if t.deadline <= now]:
            timer.expire()
        self._sweep = None
        if self._timers:
            self._sweep = loop.call_later(self._interval, self._expire)


class TimerWorkerContext(WorkerContext):
    """Hypercorn's worker context, plus the connections idle now (``IdleConnections``): they
    are closed when the worker terminates, as Hypercorn's idle tasks did (a graceful shutdown
    does not wait for them)."""

    def __init__(self, max_requests: int | None) -> None:
        super().__init__(max_requests)
        self.idle = IdleConnections()
        self._watch = asyncio.get_running_loop().create_task(self._close_idle_at_end())

    async def _close_idle_at_end(self) -> None:
        await self.terminated.wait()
        for timer in self.idle:
            timer.expire()


class IdleTimer:
    """Hypercorn's ``SingleTask`` for the keep-alive timeout, as a deadline: ``restart`` sets
    it (the connection went idle), ``stop`` clears it (a request started), and the worker's
    ``IdleConnections`` sweep expires it. Then ``action`` (which closes the connection) runs
    in a task of the connection's task group."""

    def __init__(self, context: WorkerContext, timeout: float) -> None:
        idle = getattr(context, "idle", None)
        self._idle: IdleConnections = IdleConnections() if idle is None else idle
        self._terminated = context.terminated
        self._timeout = timeout
        self.deadline = float("inf")
        self._armed: tuple[Any, Callable[[], Any]] | None = None

    async def restart(self, task_group: Any, action: Callable[[], Any]) -> None:
        self._armed = (task_group, action)
        if self._terminated.is_set():
            self.expire()
            return
        self.deadline = asyncio.get_running_loop().time() + self._timeout
        self._idle.add(self, self._timeout)

    async def stop(self) -> None:
        self._disarm()

    def expire(self) -> None:
        armed = self._armed
        self._disarm()
        if armed is not None:
            task_group, action = armed
            task_group._task_group.create_task(action())

    def _disarm(self) -> None:
        self._armed = None
        self.deadline = float("inf")
        self._idle.discard(self)


class CoalescingTCPServer(TCPServer):
    """A Hypercorn connection whose writes of one loop turn leave in one ``send``, with the
    keep-alive timeout on a timer (``IdleTimer``)."""

    _pending: list[bytes] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = IdleTimer(self.context, self.config.keep_alive_timeout)  # type: ignore[assignment]

    async def _idle_timeout(self) -> None:
        """The timer has fired (or the worker terminated): close, as Hypercorn does then."""
        await asyncio.shield(self._initiate_server_close())

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            self._flush()  # a close (or an idle change) never overtakes written bytes
            await super().protocol_send(event)
            return
        if not self._pending:
            self._pending = []
            self.loop.call_soon(self._flush)
        self._pending.append(event.data)
        if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
            self._flush()
            await self.writer.drain()

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self.writer.is_closing():
            self.writer.write(b"".join(pending))


def install() -> None:
    http1.install()
    hypercorn_run.TCPServer = CoalescingTCPServer  # type: ignore[misc]
    hypercorn_run.WorkerContext = TimerWorkerContext  # type: ignore[misc]
