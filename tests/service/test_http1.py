"""The webhook HTTP/1.1 client against real sockets: a small asyncio server that answers
each request the way a test script says (keep-alive, chunked, close, 1xx, silence, garbage),
and a TLS server with a certificate made by ``openssl`` for the verification checks."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service.notify.http1 import BadResponse, HttpClient

Answer = Callable[[int, bytes], bytes | None]  # (request number, request) -> raw answer


class Script:
    """A loopback server answering request n with ``answer(n, request)``; None: hang up."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                raw = self.answer(len(self.requests) - 1, head + body)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient()
    yield c
    await c.aclose()


async def test_keep_alive_reuses_one_connection(client: HttpClient) -> None:
    script = Script(lambda n, req: OK)
    url = await script.start()
    try:
        for i in range(5):
            assert await client.post(f"{url}/hook?x={i}", b'{"a":1}',
                                     {"Content-Type": "application/json"}, timeout=5) == 200
        assert script.connections == 1 and client.connections_opened == 1
        first = script.requests[0]
        assert first.startswith(b"POST /hook?x=0 HTTP/1.1\r\n")
        assert b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'{"a":1}')
        assert f"\r\nHost: {url.split('//')[1]}\r\n".encode() in first
    finally:
        await script.stop()


async def test_answer_shapes(client: HttpClient) -> None:
    answers = [
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
        b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\nContent-Length: 0\r\n\r\n",
    ]
    script = Script(lambda n, req: answers[n])
    url = await script.start()
    try:
        got = [await client.post(url, b"x", {}, timeout=5) for _ in answers]
        assert got == [201, 204, 503, 302]  # redirects are answers, never followed
        assert script.connections == 1  # every shape above leaves the connection reusable
    finally:
        await script.stop()


async def test_close_and_http10_are_not_reused(client: HttpClient) -> None:
    answers = [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]

    def answer(n: int, req: bytes) -> bytes:
        return answers[n]

    script = Script(answer)
    url = await script.start()
    try:
        for _ in answers:
            assert await client.post(url, b"", {}, timeout=5) == 200
        assert client.connections_opened == 3
    finally:
        await script.stop()


async def test_body_to_eof_without_length(client: HttpClient) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await client.post(f"http://127.0.0.1:{port}/", b"", {}, timeout=5) == 200
        assert await client.post(f"http://127.0.0.1:{port}/", b"", {}, timeout=5) == 200
        assert client.connections_opened == 2
    finally:
        server.close()


async def test_stale_idle_connection_is_retried_once_on_a_new_one(client: HttpClient) -> None:
    script = Script(lambda n, req: OK if n != 1 else None)  # hangs up on the 2nd request
    url = await script.start()
    try:
        assert await client.post(url, b"a", {}, timeout=5) == 200
        assert await client.post(url, b"b", {}, timeout=5) == 200  # resent on a new one
        assert client.connections_opened == 2
        assert [r[-1:] for r in script.requests] == [b"a", b"b", b"b"]
    finally:
        await script.stop()


async def test_fresh_connection_failure_is_an_error(client: HttpClient) -> None:
    script = Script(lambda n, req: None)
    url = await script.start()
    try:
        with pytest.raises(ConnectionError):
            await client.post(url, b"", {}, timeout=5)
        assert len(script.requests) == 1  # not resent: it was not a reused connection
    finally:
        await script.stop()


async def test_timeout_covers_a_silent_server(client: HttpClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError):
            await client.post(f"http://127.0.0.1:{port}/", b"", {}, timeout=0.2)
    finally:
        server.close()


async def test_garbage_and_bad_headers(client: HttpClient) -> None:
    script = Script(lambda n, req: b"SMTP ready\r\n\r\n")
    url = await script.start()
    try:
        with pytest.raises(BadResponse):
            await client.post(url, b"", {}, timeout=5)
        with pytest.raises(ValueError):
            await client.post(url, b"", {"Bad Name": "x"}, timeout=5)
        with pytest.raises(ValueError):
            await client.post("ftp://127.0.0.1/", b"", {}, timeout=5)
    finally:
        await script.stop()


async def test_pinned_address_keeps_the_host_header(client: HttpClient) -> None:
    script = Script(lambda n, req: OK)
    url = await script.start()
    port = url.rsplit(":", 1)[1]
    try:
        status = await client.post(f"http://hooks.example:{port}/h", b"",
                                   {"Host": "hooks.example"}, timeout=5, address="127.0.0.1")
        assert status == 200
        assert b"\r\nHost: hooks.example\r\n" in script.requests[0]
    finally:
        await script.stop()


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.marconi.test",
         "-addext", "subjectAltName=DNS:hooks.marconi.test"],
        check=True, capture_output=True)
    return key, cert


async def test_tls_verifies_certificate_and_name(tmp_path: Path) -> None:
    key, cert = _certificate(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    script = Script(lambda n, req: OK, tls=server_ctx)
    url = await script.start()
    port = url.rsplit(":", 1)[1]
    hook = f"https://hooks.marconi.test:{port}/h"
    trusting = ssl.create_default_context(cafile=str(cert))
    good = HttpClient(ssl_context=trusting)
    default = HttpClient()  # the system's trust store: this certificate is not in it
    try:
        assert await good.post(hook, b"", {}, timeout=5, address="127.0.0.1",
                               sni="hooks.marconi.test") == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            await good.post(hook, b"", {}, timeout=5, address="127.0.0.1",
                            sni="other.marconi.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            await default.post(hook, b"", {}, timeout=5, address="127.0.0.1",
                               sni="hooks.marconi.test")
    finally:
        await good.aclose()
        await default.aclose()
        await script.stop()
