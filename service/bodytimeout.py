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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        deadline = _Deadline(self.seconds)
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


class _Deadline:
    """One timer for all the body reads of a request (``asyncio.timeout`` would arm and
    disarm one per read): when it fires during a read, that read is cancelled and raises
    ``_BodyTimedOut``. A read after it fired is cancelled if it has to wait (as a read in
    ``asyncio.timeout_at`` with a past deadline)."""

    __slots__ = ("_handle", "_reading", "expired")

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._reading: asyncio.Task[Any] | None = None
        self._handle: asyncio.Handle | None = asyncio.get_running_loop().call_later(
            seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._handle = None
        if self._reading is not None:
            self._reading.cancel()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def receive(self, receive: Receive) -> Message:
        if self.expired and self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._expire)
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
