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
        deadline = _Deadline(self.open, self.seconds)
        complete = False
        st = scope.setdefault("state", {})

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            message = await deadline.receive(receive)
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
                deadline.cancel()
            return message

        try:
            await self.app(scope, timed_receive, send)
        except _BodyTimedOut:
            if RESPONSE_STATUS in st:  # a response started (RequestId records it)
                raise
            response = error_response(
                408, TIMEOUT_TITLE,
                f"The request body did not arrive within {self.seconds:g} seconds.",
                {"Connection": "close"})
            await response(scope, receive, send)
        finally:
            deadline.cancel()


class _OpenDeadlines:
    """The deadlines of the bodies being read, and one sweep that expires those past due:
    every ``seconds / 4`` (at most ``MAX_SWEEP_S``) while any is open. A request costs a set
    insert and discard, not a timer armed and cancelled; a 408 comes at most a quarter of
    the deadline late."""

    def __init__(self, seconds: float) -> None:
        self._open: set[_Deadline] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._interval = max(0.01, min(MAX_SWEEP_S, seconds / 4))

    def add(self, deadline: _Deadline) -> None:
        self._open.add(deadline)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._interval, self._expire)

    def discard(self, deadline: _Deadline) -> None:
        self._open.discard(deadline)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for deadline in [d for d in self._open if d.at <= now]:
            self._open.discard(deadline)
            deadline.expire()
        self._sweep = None
        if self._open:
            self._sweep = loop.call_later(self._interval, self._expire)


class _Deadline:
    """The deadline of one request's body reads, open in ``_OpenDeadlines`` until the body is
    complete (``asyncio.timeout`` would arm and disarm a timer per read): when it expires
    during a read, that read is cancelled and raises ``_BodyTimedOut``. A read after it
    expired is cancelled if it has to wait (as a read in ``asyncio.timeout_at`` with a past
    deadline)."""

    __slots__ = ("_late", "_open", "_reading", "at", "expired")

    def __init__(self, open_deadlines: _OpenDeadlines, seconds: float) -> None:
        self.expired = False
        self._reading: asyncio.Task[Any] | None = None
        self._late: asyncio.Handle | None = None
        self.at = asyncio.get_running_loop().time() + seconds
        self._open: _OpenDeadlines | None = open_deadlines
        open_deadlines.add(self)

    def expire(self) -> None:
        self.expired = True
        self._open = None
        self._late = None
        if self._reading is not None:
            self._reading.cancel()

    def cancel(self) -> None:
        if self._open is not None:
            self._open.discard(self)
            self._open = None
        if self._late is not None:
            self._late.cancel()
            self._late = None

    async def receive(self, receive: Receive) -> Message:
        if self.expired and self._late is None:
            self._late = asyncio.get_running_loop().call_soon(self.expire)
        task = asyncio.current_task()
        self._reading = task
        try:
            return await receive()
        except asyncio.CancelledError:
            if self.expired and task is not None and task.uncancel() == 0:
                raise _BodyTimedOut from None  # our cancel, nobody else's
            raise
        finally:
            self._reading = None
