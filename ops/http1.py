"""Hypercorn's HTTP/1.1 connections parsed by httptools (llhttp) instead of h11 (issue 15).

Profiled under wrk POST, h11 (its parser, its per-event state machine, its header
normalisation and response writer) was ~30 % of a front's CPU; the same bare Starlette POST
serves ~2.7 times the requests on llhttp (uvicorn's parser) than on h11 here. This class takes
h11's place inside Hypercorn (``install``): Hypercorn still accepts, times out, shuts down and
runs the ASGI side (``HTTPStream``), so only the bytes-to-events and events-to-bytes steps change.

What h11 guaranteed and this keeps:

* A request that does not parse (llhttp is strict: bad request lines, header bytes, chunk sizes,
  ``Content-Length`` with ``Transfer-Encoding``) is answered 400 and the connection closed; a
  request line and headers over ``h11_max_incomplete_size`` bytes, 431; HTTP/1.1 without
  ``Host``, 400.
* One request at a time per connection: pipelined requests wait until the response before them
  is sent (reading pauses meanwhile, so a client cannot queue unbounded work).
* Keep-alive as HTTP/1.1 and 1.0 define it, ``Connection: close`` either way, and
  ``keep_alive_max_requests``. A response without ``Content-Length`` is chunked (1.1) or ends
  the connection (1.0); HEAD, 1xx, 204 and 304 responses carry no body.
* ``Expect: 100-continue`` is answered ``100 Continue`` before the body is read.
* A response header value holding CR or LF is refused (never written: no response splitting).
* A first request whose method llhttp does not know (``FOO``; h11 takes any token) goes, with
  its connection, to Hypercorn's h11 protocol, so it is routed (405) as before; such a method
  later on a kept-alive connection is refused 400.
* An ``Upgrade`` or ``CONNECT`` request is answered as a plain request, then the connection
  closes (nothing here speaks WebSocket or h2c).
"""

from __future__ import annotations

import http
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import (
    Body,
    Data,
    EndBody,
    Request,
    Response,
    StreamClosed,
)
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream

STREAM_ID = 1
REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}
NO_BODY_STATUS = frozenset({204, 304})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_REQUEST, _BODY, _END = 0, 1, 2


class _HeadersTooLarge(Exception):
    pass


class _Events:
    """The parser's callbacks, as a queue of ``(kind, value)`` events in arrival order."""

    def __init__(self, limit: int) -> None:
        self.queue: list[tuple[int, Any]] = []
        self.parser: httptools.HttpRequestParser  # set once the parser exists
        self.too_large = False
        self._limit = limit
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._size = 0

    def on_message_begin(self) -> None:
        self._url, self._headers, self._size = b"", [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._grow(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        # What the parser says of this request is read now: by the time the request is
        # served the parser may be on a pipelined one after it.
        parser = self.parser
        self.queue.append((_REQUEST, (self._url, self._headers, parser.get_method(),
                                      parser.get_http_version(), parser.should_keep_alive())))

    def on_body(self, body: bytes) -> None:
        self.queue.append((_BODY, body))

    def on_message_complete(self) -> None:
        self.queue.append((_END, None))

    def _grow(self, n: int) -> None:
        self._size += n
        if self._size > self._limit:
            self.too_large = True  # httptools raises its own error for this one
            raise _HeadersTooLarge


class HTTP1Protocol:
    """Hypercorn's ``H11Protocol`` interface (``initiate``, ``handle``, ``stream_send``)."""

    def __init__(self, app: Any, config: Any, context: Any, task_group: Any,
                 connection_state: Any, ssl: bool, client: tuple[str, int] | None,
                 server: tuple[str, int] | None,
                 send: Callable[[Event], Awaitable[None]]) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.task_group = task_group
        self.connection_state = connection_state
        self.ssl = ssl
        self.client = client
        self.server = server
        self.send = send
        self.can_read = context.event_class()
        self.stream: HTTPStream | None = None
        self.keep_alive_requests = 0
        self._events = _Events(config.h11_max_incomplete_size)
        self._parser = httptools.HttpRequestParser(self._events)
        self._events.parser = self._parser
        self._closed = False
        # The bytes received before the first request parsed: a first request whose method
        # llhttp does not know (it knows a fixed list; h11 takes any token) is handed, with
        # the rest of the connection, to Hypercorn's h11 protocol, which routes it (405).
        self._first: bytearray | None = bytearray()
        self._h11: H11Protocol | None = None
        self._upgraded = False  # parsing stopped at an Upgrade/CONNECT: close after it
        # The request being answered:
        self._keep_alive = True
        self._http10 = False
        self._head = False
        self._request_done = False
        self._response_started = False
        self._chunked = False

    async def initiate(self) -> None:
        pass

    async def handle(self, event: Event) -> None:
        if self._h11 is not None:
            await self._h11.handle(event)
            return
        if isinstance(event, RawData):
            if self._closed or self._upgraded:
                return
            if self._first is not None:
                self._first += event.data
            try:
                self._parser.feed_data(event.data)
            except httptools.HttpParserInvalidMethodError:
                if self._first is not None and not self._events.queue:
                    await self._to_h11(bytes(self._first))
                else:  # a later request on a kept-alive connection
                    await self._refuse(400)
                return
            except httptools.HttpParserUpgrade:
                self._upgraded = True
                if not any(kind == _END for kind, _ in self._events.queue):
                    self._events.queue.append((_END, None))
            except httptools.HttpParserError:
                await self._refuse(431 if self._events.too_large else 400)
                return
            if self._events.queue:
                self._first = None
            await self._run_events()
        elif isinstance(event, Closed):
            self._closed = True
            await self.can_read.set()
            if self.stream is not None:
                await self._close_stream()

    async def _to_h11(self, data: bytes) -> None:
        self._first = None
        self._h11 = H11Protocol(self.app, self.config, self.context, self.task_group,
                                self.connection_state, self.ssl, self.client, self.server,
                                self.send)
        await self._h11.handle(RawData(data=data))

    async def _run_events(self) -> None:
        queue = self._events.queue
        while queue and not self._closed:
            kind, value = queue[0]
            if kind == _REQUEST and self.stream is not None:
                await self.can_read.clear()  # pipelined: after the response before it
                await self.can_read.wait()
                continue
            del queue[0]
            if kind == _REQUEST:
                await self._start(*value)
            elif kind == _BODY:
                if self.stream is not None:
                    await self.stream.handle(Body(stream_id=STREAM_ID, data=value))
            else:
                self._request_done = True
                if self.stream is not None:
                    await self.stream.handle(EndBody(stream_id=STREAM_ID))

    async def _start(self, target: bytes, headers: list[tuple[bytes, bytes]], raw_method: bytes,
                     version: str, keep_alive: bool) -> None:
        method = raw_method.decode("ascii").upper()
        self._http10 = version == "1.0"
        self._keep_alive = keep_alive and not self._upgraded
        self._head = method == "HEAD"
        self._request_done = self._response_started = self._chunked = False
        await self.send(Updated(idle=False))
        if version != "1.0" and not any(name == b"host" for name, _ in headers):
            await self._refuse(400)
            return
        if version != "1.0" and any(name == b"expect" and value.lower() == b"100-continue"
                                    for name, value in headers):
            await self.send(RawData(data=CONTINUE))
        self.stream = HTTPStream(self.app, self.config, self.context, self.task_group,
                                 self.ssl, self.client, self.server, self.stream_send,
                                 STREAM_ID)
        await self.stream.handle(Request(stream_id=STREAM_ID, headers=headers,
                                         http_version=version, method=method,
                                         raw_path=target, state=self.connection_state))
        self.keep_alive_requests += 1
        await self.context.mark_request()

    async def stream_send(self, event: Any) -> None:
        if isinstance(event, Response):
            await self.send(RawData(data=self._head_bytes(event)))
        elif isinstance(event, Body):
            if self._head or not event.data or self._no_body:
                return
            data = event.data
            if self._chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            await self.send(RawData(data=data))
        elif isinstance(event, EndBody):
            if self._chunked:
                await self.send(RawData(data=b"0\r\n\r\n"))
        elif isinstance(event, Data):  # not sent on HTTP/1 streams (WebSocket only)
            await self.send(RawData(data=event.data))
        elif isinstance(event, StreamClosed):
            await self._maybe_recycle()
        # InformationalResponse (103 and such) and EndData: nothing on HTTP/1

    _no_body = False

    def _head_bytes(self, response: Response) -> bytes:
        """The status line and headers; decides the body's framing and the keep-alive."""
        status = response.status_code
        if self.keep_alive_requests >= self.config.keep_alive_max_requests:
            self._keep_alive = False
        has_length = False
        headers = [*response.headers, *self.config.response_headers("h11")]
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
        for name, value in headers:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
                raise ValueError(f"response header {name!r} holds CR or LF")
            lowered = name.lower()
            if lowered == b"content-length":
                has_length = True
            elif lowered == b"connection":
                if value.lower() == b"close":
                    self._keep_alive = False
                continue  # written below, once, from the decision
            lines.append(b"%s: %s\r\n" % (name, value))
        self._no_body = status in NO_BODY_STATUS or status < 200
        if not has_length and not self._no_body and not self._head:
            if self._http10:
                self._keep_alive = False  # the body ends with the connection
            else:
                self._chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
        if not self._keep_alive:
            lines.append(b"connection: close\r\n")
        elif self._http10:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self._response_started = True
        return b"".join(lines)

    async def _refuse(self, status: int) -> None:
        """Answer a request that cannot be served (unless a response began) and close."""
        if not self._response_started:
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"")),
                     b"content-length: 0\r\n", b"connection: close\r\n"]
            lines.extend(b"%s: %s\r\n" % (n, v) for n, v in self.config.response_headers("h11"))
            lines.append(b"\r\n")
            await self.send(RawData(data=b"".join(lines)))
        self._closed = True
        await self.can_read.set()
        await self.send(Closed())

    async def _maybe_recycle(self) -> None:
        """The response is sent: keep the connection for the next request, or close it."""
        await self._close_stream()
        keep = (self._keep_alive and self._request_done and not self._closed
                and not self.context.terminated.is_set())
        if not keep:
            self._closed = True
        await self.can_read.set()
        await self.send(Updated(idle=True) if keep else Closed())

    async def _close_stream(self) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            await stream.handle(StreamClosed(stream_id=STREAM_ID))


def install() -> None:
    """Make Hypercorn build this protocol for every HTTP/1 connection (h2 is unchanged)."""
    import hypercorn.protocol

    hypercorn.protocol.H11Protocol = HTTP1Protocol  # type: ignore[misc,assignment]
