"""A deadline for reading the request body, so a client trickling it cannot hold a request
(and its connection) open for ever: past ``seconds`` the answer is 408 and the connection
closes. Hypercorn only has a per-read idle timeout (``read_timeout``), which a byte every few
seconds resets and which costs a task per read; the wiring leaves it off (``ops.serve``): this
covers a request's body, Hypercorn's keep-alive timeout the silence between requests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.errors import error_response
from service.middleware import RESPONSE_STATUS
from service.types import ASGIApp, Message, Receive, Scope, Send

TIMEOUT_TITLE = "Request Timeout"
MAX_SWEEP_S = 1.0  # open body deadlines are checked at least this often


class _BodyTimedOut(Exception):
    pass


class BodyTimeout:
    """408 when the body has not fully arrived ``seconds`` after the request started.

    Only reads of an unfinished body are timed; waiting for a disconnect after the body
    is complete is not. Sits inside ``RequestId`` so the 408 carries a request id and is
    not taken for an unexpected error.
    """

    def __init__(self, app: ASGIApp, *, seconds: float = 30.0, **options: Any) -> None:
        self.app = app
        self.seconds = seconds
        self.open = _OpenDeadlines(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        reader = _TimedReader(receive, self.open, self.seconds)
        try:
            await self.app(scope, reader, send)
        except _BodyTimedOut:
            if RESPONSE_STATUS in scope["state"]:  # a response started (RequestId records it)
                raise
            response = error_response(
                408, TIMEOUT_TITLE,
                f"The request body did not arrive within {self.seconds:g} seconds.",
                {"Connection": "close"})
            await response(scope, receive, send)
        finally:
            reader.cancel()


class _OpenDeadlines:
    """The deadlines of the bodies being read, and one sweep that expires those past due:
    every ``seconds / 4`` (at most ``MAX_SWEEP_S``) while any is open. A request costs a set
    insert and discard, not a timer armed and cancelled; a 408 comes at most a quarter of
    the deadline late."""

    def __init__(self, seconds: float) -> None:
        self.open: set[_TimedReader] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._interval = max(0.01, min(MAX_SWEEP_S, seconds / 4))

    def add(self, reader: _TimedReader) -> None:
        self.open.add(reader)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._interval, self._expire)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for reader in [r for r in self.open if r.at <= now]:
            self.open.discard(reader)
            reader.expire()
        self._sweep = None
        if self.open:
            self._sweep = loop.call_later(self._interval, self._expire)


class _TimedReader:
    """A request's ``receive``, with the deadline of its body: ``seconds`` after the request
    started. It is open in ``_OpenDeadlines`` from the first read until the body is complete
    (a request whose body is never read is never there; one first read past the deadline
    is expired by the next sweep); when it expires during a read,
    that read is cancelled and raises ``_BodyTimedOut``. A read after it expired is
    cancelled if it has to wait (as a read in ``asyncio.timeout_at`` with a past deadline).
    (``asyncio.timeout`` would arm and disarm a timer per read.)"""

    __slots__ = ("_late", "_open", "_reading", "_receive", "at", "complete", "expired")

    def __init__(self, receive: Receive, open_deadlines: _OpenDeadlines, seconds: float) -> None:
        self._receive = receive
        self.at = asyncio.get_running_loop().time() + seconds
        self.complete = False  # the body has fully arrived: reads are not timed any more
        self.expired = False
        self._open: _OpenDeadlines | None = open_deadlines  # None once out of it for good
        self._reading: asyncio.Task[Any] | None = None
        self._late: asyncio.Handle | None = None

    async def __call__(self) -> Message:
        if self.complete:
            return await self._receive()
        if self._open is not None and self not in self._open.open:
            self._open.add(self)  # the first read: the deadline is open from now on
        if self.expired and self._late is None:
            self._late = asyncio.get_running_loop().call_soon(self.expire)
        task = asyncio.current_task()
        self._reading = task
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if self.expired and task is not None and task.uncancel() == 0:
                raise _BodyTimedOut from None  # our cancel, nobody else's
            raise
        finally:
            self._reading = None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
            self.cancel()
        return message

    def expire(self) -> None:
        self.expired = True
        self._open = None
        self._late = None
        if self._reading is not None:
            self._reading.cancel()

    def cancel(self) -> None:
        """Out of the open deadlines for good (the body is complete, or the request done)."""
        if self._open is not None:
            self._open.open.discard(self)
            self._open = None
        if self._late is not None:
            self._late.cancel()
            self._late = None
