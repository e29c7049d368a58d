"""Webhook deliveries (``http://``, ``https://``): Zaqar's payload over aiohttp.

Payload (zaqar/notification/tasks/webhook.py): the message as posted — ``body`` and ``ttl``
— with ``queue_name`` and ``Message_Type`` added, JSON; or ``options.post_data`` with the
text ``"$zaqar_message$"`` (quotes included) replaced by that JSON. Headers:
``Content-Type: application/json`` updated with ``options.post_headers``, plus an
``Idempotency-Key`` of message id and subscription id, so a receiver can drop the duplicates
at-least-once delivery may produce. Each request has its own timeout; TLS is verified;
redirects are not followed (a redirect could lead past the SSRF guard).

Why aiohttp: receivers are tenant-chosen, so the client parses answers from hostile servers;
a well-kept client with a C parser and bounded header sizes does that better than code of
ours. Measured here (uvloop, 64 in flight to a local keep-alive receiver): ~5,000 POSTs/s
per core, ~70 CPU-µs each; httpx 0.28 managed ~200/s (its pool checks every connection on
every request). One session per sender: keep-alive pools per target, no cookie jar (tenants
must not share cookies through a receiver's host), no proxy from the environment, and the
SSRF check in the resolver, so the connection goes to the address that was checked.

Outcomes: 2xx delivered; other statuses below 500 refused (upstream does not retry them);
5xx, timeouts and connection errors failed (retried by the policy).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from service.notify.ssrf import TargetRefused, literal_refusal, resolve_checked

IDEMPOTENCY_HEADER = "Idempotency-Key"
PROTECTED_HEADERS = frozenset({"host", "content-length", "transfer-encoding",
                               IDEMPOTENCY_HEADER.lower()})
ERROR_MAX = 200
ANSWER_MAX = 64 * 1024  # bytes of a receiver's answer body read (the rest: connection closed)

Result = dict[str, Any]


def payload(message: dict[str, Any], options: Mapping[str, Any]) -> bytes:
    """The request body for ``message`` (already carrying queue_name and Message_Type)."""
    text = json.dumps(message)
    template = options.get("post_data")
    if isinstance(template, str):
        return template.replace('"$zaqar_message$"', text).encode()
    return text.encode()


def headers(options: Mapping[str, Any], idempotency_key: str) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    extra = options.get("post_headers")
    if isinstance(extra, dict):
        for name, value in extra.items():
            if not isinstance(name, str) or name.lower() in PROTECTED_HEADERS:
                continue
            if not name.isascii() or not name.isprintable() or ":" in name:
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            if "\r" in text or "\n" in text:
                continue
            out[name] = text
    out[IDEMPOTENCY_HEADER] = idempotency_key
    return out


def _outcome(status: int) -> Result:
    if 200 <= status < 300:
        return {"r": "delivered", "status": status, "error": ""}
    kind = "failed" if status >= 500 else "refused"
    return {"r": kind, "status": status, "error": f"HTTP {status}"}


class CheckedResolver(AbstractResolver):
    """Resolves a receiver's name and refuses it unless every address is public (§9).

    aiohttp asks a resolver only for names; address literals are checked in ``post``."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        address = await resolve_checked(host, port)
        kind = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=kind, proto=0,
                              flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


class WebhookSender:
    """POSTs notifications over one aiohttp session (connection reuse per target).

    The session is made on the first send, inside the running loop; ``aclose`` ends it.
    """

    def __init__(self, *, timeout: float, private_targets: bool, per_target: int = 16,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._private = private_targets
        self._per_target = max(per_target, 1)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._per_target, ssl=self._ssl, ttl_dns_cache=10,
                resolver=None if self._private else CheckedResolver())
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                auto_decompress=False, headers={"User-Agent": "marconi-notifier"})
        return self._session

    async def post(self, url: str, body: bytes, request_headers: dict[str, str]) -> Result:
        if not self._private and (why := literal_refusal(url)) is not None:
            # aiohttp connects to an address literal without asking the resolver
            return {"r": "refused", "status": None, "error": why}
        try:
            async with self._client().post(url, data=body, headers=request_headers,
                                           allow_redirects=False,
                                           timeout=self._timeout) as answer:
                await _drain(answer)
                status = answer.status
        except TargetRefused as exc:
            return {"r": "refused", "status": None, "error": str(exc)}
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.__cause__, TargetRefused):
                return {"r": "refused", "status": None, "error": str(exc.__cause__)}
            return _failed(exc)
        except TimeoutError:
            return {"r": "failed", "status": None, "error": "timed out"}
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return _failed(exc)
        return _outcome(status)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _failed(exc: BaseException) -> Result:
    return {"r": "failed", "status": None, "error": f"{type(exc).__name__}: {exc}"[:ERROR_MAX]}


async def _drain(answer: aiohttp.ClientResponse) -> None:
    """Read (and drop) the answer's body up to ``ANSWER_MAX`` so the connection can be
    reused; a longer body closes the connection instead of being read."""
    left = ANSWER_MAX
    while chunk := await answer.content.read(16 * 1024):
        left -= len(chunk)
        if left < 0:
            answer.close()
            return
