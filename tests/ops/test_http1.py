"""``ops.http1``: Hypercorn's HTTP/1.1 on httptools keeps h11's contract — framing,
keep-alive, pipelining, 100-continue, and refusals of bad or oversized requests.

Real Hypercorn (tuned as ``marconi serve`` runs it) on a real socket, raw bytes in and out;
the app echoes what it was given, so each test sees what reached ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from hypercorn.asyncio import serve

from ops import hypercorn_tuning
from ops.testbroker import free_port

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    echo = orjson.dumps({"method": scope["method"], "path": path,
                         "query": scope["query_string"].decode(),
                         "version": scope["http_version"], "body": body.decode(),
                         "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]]})
    if path == "/chunked":  # no content-length: the server frames it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part1-", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})
        return
    if path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/split":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-bad", b"a\r\nset-cookie: x=1")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    status = 201 if scope["method"] == "POST" else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(echo)).encode())]})
    await send({"type": "http.response.body", "body": echo})


@contextlib.asynccontextmanager
async def server(**options: Any) -> AsyncIterator[int]:
    port = free_port()
    cfg = hypercorn_tuning.TunedConfig()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    cfg.errorlog = None
    for name, value in options.items():
        setattr(cfg, name, value)
    hypercorn_tuning.install()
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        serve(app, cfg, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        for _ in range(200):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lowercase names), body (de-chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    status = int(status_line.split(" ")[1])
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


def request(method: str, path: str, body: bytes = b"", *, version: str = "1.1",
            extra: str = "") -> bytes:
    host = "Host: x\r\n" if version == "1.1" else ""
    length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
    return f"{method} {path} HTTP/{version}\r\n{host}{length}{extra}\r\n".encode() + body


async def test_a_request_reaches_the_app_as_h11_delivered_it() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(request("POST", "/v2/queues/q/messages?x=1&y", b'{"a": 1}',
                             extra="X-Project-ID: p\r\nClient-ID: Abc\r\n"))
        status, headers, body = await response(reader)
        assert status == 201
        assert headers["content-length"] == str(len(body))
        assert "date" in headers and headers["server"] == "hypercorn-h11"
        echo = orjson.loads(body)
        assert echo["method"] == "POST" and echo["path"] == "/v2/queues/q/messages"
        assert echo["query"] == "x=1&y" and echo["body"] == '{"a": 1}'
        assert echo["version"] == "1.1"
        assert ["x-project-id", "p"] in echo["headers"]  # names lowercased, values kept
        assert ["client-id", "Abc"] in echo["headers"]
        writer.close()


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        for i in range(5):
            writer.write(request("GET", f"/n/{i}"))
            status, headers, body = await response(reader)
            assert status == 200 and orjson.loads(body)["path"] == f"/n/{i}"
            assert "connection" not in headers
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(b"".join(request("POST", f"/p/{i}", f"body{i}".encode())
                              for i in range(4)) + request("GET", "/last"))
        for i in range(4):
            status, _, body = await response(reader)
            assert status == 201 and orjson.loads(body)["body"] == f"body{i}"
        assert orjson.loads((await response(reader))[2])["path"] == "/last"
        writer.close()


async def test_a_request_split_across_many_packets_is_whole() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        raw = request("POST", "/slow", b"x" * 3000)
        for i in range(0, len(raw), 7):
            writer.write(raw[i:i + 7])
            await writer.drain()
        status, _, body = await response(reader)
        assert status == 201 and orjson.loads(body)["body"] == "x" * 3000
        writer.close()


async def test_a_chunked_request_body_arrives_decoded() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, _, body = await response(reader)
        assert status == 201 and orjson.loads(body)["body"] == "hello world"
        writer.close()


async def test_a_response_without_length_is_chunked_on_1_1_and_closes_on_1_0() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(request("GET", "/chunked"))
        status, headers, body = await response(reader)
        assert status == 200
        assert headers["transfer-encoding"] == "chunked" and body == b"part1-part2"
        writer.write(request("GET", "/after"))  # still open
        assert (await response(reader))[0] == 200
        writer.close()

        reader, writer = await connect(port)
        writer.write(request("GET", "/chunked", version="1.0"))
        head = await asyncio.wait_for(reader.read(), 5)  # body until the close
        assert b"transfer-encoding" not in head.lower()
        assert head.endswith(b"\r\n\r\npart1-part2")
        assert b"connection: close" in head.lower()


async def test_http_1_0_keeps_alive_only_when_asked() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(request("GET", "/a", version="1.0"))
        status, headers, _ = await response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed(reader)

        reader, writer = await connect(port)
        writer.write(request("GET", "/a", version="1.0", extra="Connection: keep-alive\r\n"))
        assert (await response(reader))[1]["connection"] == "keep-alive"
        writer.write(request("GET", "/b", version="1.0", extra="Connection: keep-alive\r\n"))
        assert orjson.loads((await response(reader))[2])["path"] == "/b"
        writer.close()


async def test_connection_close_is_honoured() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(request("GET", "/a", extra="Connection: close\r\n"))
        status, headers, _ = await response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed(reader)


async def test_keep_alive_max_requests_closes_after_the_last() -> None:
    async with server(keep_alive_max_requests=2) as port:
        reader, writer = await connect(port)
        writer.write(request("GET", "/1"))
        assert "connection" not in (await response(reader))[1]
        writer.write(request("GET", "/2"))
        assert (await response(reader))[1]["connection"] == "close"
        assert await closed(reader)


async def test_head_204_carry_no_body() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(request("HEAD", "/h"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"content-length:" in head.lower()
        writer.write(request("GET", "/empty"))
        status, headers, body = await response(reader)  # nothing of HEAD's body before it
        assert status == 204 and body == b"" and "transfer-encoding" not in headers
        writer.write(request("GET", "/next"))
        assert orjson.loads((await response(reader))[2])["path"] == "/next"
        writer.close()


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
            b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"body")
        status, _, body = await response(reader)
        assert status == 201 and orjson.loads(body)["body"] == "body"
        writer.close()


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
], ids=["request-line", "header-name", "header-value", "length-and-chunked",
        "two-lengths", "bad-chunk", "no-host"])
async def test_a_request_that_does_not_parse_gets_400_and_a_close(raw: bytes) -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(raw)
        status, headers, _ = await response(reader)
        assert status == 400 and headers["connection"] == "close"
        assert await closed(reader)


async def test_headers_past_the_limit_get_431() -> None:
    async with server(h11_max_incomplete_size=4096) as port:
        reader, writer = await connect(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n")
        status, headers, _ = await response(reader)
        assert status == 431 and headers["connection"] == "close"
        assert await closed(reader)

        reader, writer = await connect(port)  # below the limit: served
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
        assert (await response(reader))[0] == 200
        writer.close()


async def test_an_upgrade_request_is_served_plainly_then_closed() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        status, headers, body = await response(reader)
        assert status == 200 and orjson.loads(body)["path"] == "/ws"
        assert headers["connection"] == "close"
        assert await closed(reader)


async def test_a_response_header_with_a_line_break_is_never_written() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(request("GET", "/split"))
        data = await asyncio.wait_for(reader.read(), 5)
        assert b"set-cookie" not in data.lower()


async def test_a_method_llhttp_does_not_know_still_reaches_the_app() -> None:
    async with server() as port:
        reader, writer = await connect(port)
        writer.write(request("FOO", "/odd") + request("GET", "/then"))
        status, _, body = await response(reader)
        assert status == 200 and orjson.loads(body)["method"] == "FOO"
        assert orjson.loads((await response(reader))[2])["path"] == "/then"
        writer.close()
