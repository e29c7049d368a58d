"""Hostile HTTP against a real ``marconi serve`` (hypercorn) process (issue 9 items 6, 7).

* ``CONNECT /metrics`` (and other odd methods anywhere) get a proper 405/404, never a broken
  200 and an "Error in ASGI Framework" line in the server's log.
* A client trickling its request body is answered 408 within ``body_timeout`` seconds
  (before: the request was held for as long as the client kept trickling).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ops.testbroker import free_port

ROOT = Path(__file__).resolve().parents[2]
BODY_TIMEOUT = 1.5


@dataclass
class Server:
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hostile")
    port = free_port()
    log = root / "server.log"
    env = {**os.environ, "MARCONI_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve", "--data", str(root / "data"),
             "--host", "127.0.0.1", "--port", str(port), "--partitions", "2"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        yield Server(port, log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def raw(server: Server, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` as bytes on a fresh connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), None)
                    if length is not None and len(body) >= length:
                        break
        except TimeoutError:
            pass
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


HEADERS = (f"Host: x\r\nClient-ID: {uuid.uuid4()}\r\nX-Project-ID: p\r\n").encode()


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("CONNECT", "/metrics", 405),
    ("CONNECT", "/v2/queues", 405),
    ("CONNECT", "/", 405),
    ("TRACE", "/metrics", 405),
    ("FOO", "/metrics", 405),
    ("FOO", "/v2/queues/q/messages", 405),
    ("CONNECT", "/nowhere", 404),
])
def test_odd_methods_get_a_proper_answer(server: Server, method: str, path: str,
                                         expected: int) -> None:
    before = server.log_text()
    answer = raw(server, f"{method} {path} HTTP/1.1\r\n".encode() + HEADERS + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    assert status_of(answer) == expected, answer[:300]
    assert b'"title"' in answer
    time.sleep(0.2)
    assert "Error in ASGI Framework" not in server.log_text()[len(before):]


def test_a_trickled_body_is_cut_off(server: Server) -> None:
    body = b'{"messages": [{"body": "' + b"x" * 200 + b'"}]}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/queues/trickle/messages HTTP/1.1\r\n" + HEADERS
                     + b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode())
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.25)
        for i in range(len(body)):  # one byte every 0.25 s: ~60 s if nobody stops it
            try:
                sock.sendall(body[i:i + 1])
            except OSError:
                break
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        elapsed = time.monotonic() - started
        sock.settimeout(5)
        while answer and b'"title"' not in answer:  # the body may come in a later packet
            try:
                more = sock.recv(65536)
            except OSError:
                break
            if not more:
                break
            answer += more
    assert status_of(answer) == 408, answer[:300]
    assert b'"title":"Request Timeout"' in answer
    assert elapsed < BODY_TIMEOUT + 3
    # nothing was appended: the queue does not exist
    r = httpx.get(f"http://127.0.0.1:{server.port}/v2/queues/trickle/stats",
                  headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": "p"})
    assert r.json()["messages"]["total"] == 0


def test_a_prompt_body_is_unaffected(server: Server) -> None:
    r = httpx.post(f"http://127.0.0.1:{server.port}/v2/queues/prompt/messages",
                   json={"messages": [{"body": 1}]},
                   headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": "p"})
    assert r.status_code == 201
