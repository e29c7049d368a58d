"""Webhook sends against real sockets: a small asyncio server that answers each request the
way a test script says (keep-alive, chunked, close, 1xx, silence, garbage, a huge body), and
a TLS server with a certificate made by ``openssl`` for the verification checks. What is
tested is the sender's contract — outcome per answer, connection reuse, bounded reads, no
redirects, no shared cookies — over the aiohttp session it uses."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service.notify.webhook import WebhookSender

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
async def sender() -> AsyncIterator[WebhookSender]:
    s = WebhookSender(timeout=5, private_targets=True)
    yield s
    await s.aclose()


async def test_keep_alive_reuses_one_connection(sender: WebhookSender) -> None:
    script = Script(lambda n, req: OK)
    url = await script.start()
    try:
        for i in range(5):
            got = await sender.post(f"{url}/hook?x={i}", b'{"a":1}',
                                    {"Content-Type": "application/json"})
            assert got == {"r": "delivered", "status": 200, "error": ""}
        assert script.connections == 1
        first = script.requests[0]
        assert first.startswith(b"POST /hook?x=0 HTTP/1.1\r\n")
        assert b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'{"a":1}')
        assert f"\r\nHost: {url.split('//')[1]}\r\n".encode() in first
    finally:
        await script.stop()


async def test_outcome_of_each_answer_shape(sender: WebhookSender) -> None:
    answers = [
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
        b"HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\nContent-Length: 0\r\n\r\n",
    ]
    script = Script(lambda n, req: answers[n])
    url = await script.start()
    try:
        got = [await sender.post(url, b"x", {}) for _ in answers]
        assert [(g["r"], g["status"]) for g in got] == [
            ("delivered", 201), ("delivered", 204), ("failed", 503), ("refused", 404),
            ("refused", 302)]  # a redirect is an answer, never followed
        assert len(script.requests) == len(answers)
        assert script.connections == 1  # every shape above leaves the connection reusable
    finally:
        await script.stop()


async def test_connection_close_is_honoured(sender: WebhookSender) -> None:
    answers = [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
    script = Script(lambda n, req: answers[n])
    url = await script.start()
    try:
        for _ in answers:
            assert (await sender.post(url, b"", {}))["r"] == "delivered"
        assert script.connections == 2
    finally:
        await script.stop()


async def test_a_huge_answer_is_not_read_to_its_end(sender: WebhookSender) -> None:
    """A hostile receiver streaming an endless body costs at most ``ANSWER_MAX`` bytes."""
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        try:
            while sent < 50_000_000:
                writer.write(b"x" * 65536)
                sent += 65536
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        got = await sender.post(f"http://127.0.0.1:{port}/", b"", {})
        assert got["r"] == "delivered"
        await asyncio.sleep(0.2)
        assert sent < 10_000_000  # the sender hung up instead of reading on
    finally:
        server.close()


async def test_a_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    impatient = WebhookSender(timeout=0.2, private_targets=True)
    try:
        got = await impatient.post(f"http://127.0.0.1:{port}/", b"", {})
        assert got == {"r": "failed", "status": None, "error": "timed out"}
    finally:
        await impatient.aclose()
        server.close()


async def test_garbage_and_hang_ups_fail_and_are_retried_later(sender: WebhookSender) -> None:
    script = Script(lambda n, req: b"SMTP ready\r\n\r\n")
    url = await script.start()
    hang_up = Script(lambda n, req: None)
    closed = await hang_up.start()
    try:
        assert (await sender.post(url, b"", {}))["r"] == "failed"
        assert (await sender.post(closed, b"", {}))["r"] == "failed"
        assert (await sender.post("http://127.0.0.1:1/", b"", {}))["r"] == "failed"
    finally:
        await script.stop()
        await hang_up.stop()


async def test_cookies_are_never_sent_back(sender: WebhookSender) -> None:
    """One receiver host serves many tenants' subscriptions: a cookie set by an answer to one
    tenant's delivery must not ride along on another's."""
    answer = b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=tenant-a\r\nContent-Length: 0\r\n\r\n"
    script = Script(lambda n, req: answer)
    url = await script.start()
    try:
        await sender.post(f"{url}/a", b"", {})
        await sender.post(f"{url}/b", b"", {})
        assert all(b"cookie:" not in r.lower() for r in script.requests)
    finally:
        await script.stop()


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return key, cert


async def test_tls_verifies_the_certificate(tmp_path: Path) -> None:
    key, cert = _certificate(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    script = Script(lambda n, req: OK, tls=server_ctx)
    url = await script.start()
    trusting = WebhookSender(timeout=5, private_targets=True,
                             ssl_context=ssl.create_default_context(cafile=str(cert)))
    default = WebhookSender(timeout=5, private_targets=True)  # the system's trust store
    try:
        assert (await trusting.post(url, b"", {}))["r"] == "delivered"
        refused = await default.post(url, b"", {})
        assert refused["r"] == "failed" and "certificate" in refused["error"].lower()
    finally:
        await trusting.aclose()
        await default.aclose()
        await script.stop()
