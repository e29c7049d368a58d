"""The front ↔ core wire of ``marconi serve --workers N`` (a Unix socket, both directions).

A frame is ``u32 length | u32 request id | u8 kind | payload`` (length counts what follows
it). Many requests are in flight on one connection at once, matched by id. Frames written
during one event-loop turn leave in one ``write`` (``FrameWriter``): under load a front sends
the core batches of commands, and the core answers in batches.

Kinds, front → core: ``E`` a command (its encoded record), ``R`` a whole HTTP request the
core answers itself (reads: the store lives there), ``M`` the front's metric samples
(``service.metricsfanin``; first byte ``S``: a scrape, answer the sum, ``P``: only keep them).
Core → front: ``O`` the outcome of a command (``u64 time_ms`` stamped by the core, then the
outcome as JSON), ``X`` an ``HTTPError`` (JSON), ``H`` an HTTP response (``u16 status``,
``u32`` header JSON length, the headers, the body), ``T`` the text of a scrape (empty for a
push).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from service.errors import HTTPError

HEADER = struct.Struct("!IIB")
U32 = struct.Struct("!I")
U64 = struct.Struct("!Q")
RESPONSE = struct.Struct("!HI")

EXECUTE = ord("E")
REQUEST = ord("R")
OUTCOME = ord("O")
ERROR = ord("X")
RESPONSE_KIND = ord("H")
METRICS = ord("M")
METRICS_TEXT = ord("T")
SCRAPE = b"S"
PUSH = b"P"

MAX_FRAME = 64 * 1024 * 1024  # far above any request body the API accepts


class WireError(Exception):
    """The peer sent something that is not a frame: the connection is dropped."""


def frame(rid: int, kind: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload) + 5, rid, kind) + payload


class FrameReader:
    """Cuts a byte stream into ``(request id, kind, payload)`` frames.

    Under load a read holds whole frames: they are sliced straight out of it (one copy per
    payload). Only a frame cut across reads is buffered, and the buffer is cut up once it
    holds at least the frame it waits for (so a large frame arriving in many reads is not
    copied again on every read)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 0  # bytes the buffer must hold before it can yield a frame

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            data, self._buf = bytes(self._buf), bytearray()
        out = []
        pos, size = 0, len(data)
        need = 4
        while size - pos >= 4:
            (length,) = U32.unpack_from(data, pos)
            if length < 5 or length > MAX_FRAME:
                raise WireError(f"bad frame length {length}")
            if size - pos - 4 < length:
                need = 4 + length
                break
            _, rid, kind = HEADER.unpack_from(data, pos)
            out.append((rid, kind, data[pos + 9:pos + 4 + length]))
            pos += 4 + length
        if pos < size:
            self._buf = bytearray(data[pos:])
            self._need = need
        return out


class FrameWriter:
    """Collects the frames of one loop turn and writes them together."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def send(self, rid: int, kind: int, payload: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(frame(rid, kind, payload))

    def _flush(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if not self._transport.is_closing():
            self._transport.write(data)


def error_payload(exc: HTTPError) -> bytes:
    return orjson.dumps({"status": exc.status, "title": exc.title,
                         "description": exc.description, "headers": exc.headers})


def error_from(payload: bytes) -> HTTPError:
    doc = orjson.loads(payload)
    return HTTPError(doc["status"], doc["title"], doc["description"], doc["headers"])


def response_payload(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    raw = orjson.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers])
    return RESPONSE.pack(status, len(raw)) + raw + body


def response_from(payload: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status, size = RESPONSE.unpack_from(payload)
    start = RESPONSE.size
    headers = [(k.encode("latin-1"), v.encode("latin-1"))
               for k, v in orjson.loads(payload[start:start + size])]
    return status, headers, payload[start + size:]


def request_payload(scope: Mapping[str, Any], body: bytes) -> bytes:
    head = orjson.dumps({
        "method": scope["method"], "path": scope["path"],
        "raw_path": (scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
        "query": (scope.get("query_string") or b"").decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "client": list(scope.get("client") or ("", 0)),
    })
    return U64.pack(len(head)) + head + body


def request_from(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """The ASGI scope and body of a forwarded request."""
    (size,) = U64.unpack_from(payload)
    head = orjson.loads(payload[U64.size:U64.size + size])
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "scheme": "http", "method": head["method"],
        "path": head["path"], "raw_path": head["raw_path"].encode("latin-1"),
        "query_string": head["query"].encode("latin-1"), "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in head["headers"]],
        "client": tuple(head["client"]), "server": None, "state": {},
    }
    return scope, payload[U64.size + size:]


Callback = Callable[[int, int, bytes], None]
