"""Webhook deliveries (``http://``, ``https://``): Zaqar's payload over httpx.

Payload (zaqar/notification/tasks/webhook.py): the message as posted — ``body`` and ``ttl``
— with ``queue_name`` and ``Message_Type`` added, JSON; or ``options.post_data`` with the
text ``"$zaqar_message$"`` (quotes included) replaced by that JSON. Headers:
``Content-Type: application/json`` updated with ``options.post_headers``, plus an
``Idempotency-Key`` of message id and subscription id, so a receiver can drop the duplicates
at-least-once delivery may produce. Each request has its own timeout; TLS is verified;
redirects are not followed (a redirect could lead past the SSRF guard). Requests go over
``service.notify.http1`` (pooled keep-alive connections; httpx costs 40x more CPU per POST).

Outcomes: 2xx delivered; other statuses below 500 refused (upstream does not retry them);
5xx, timeouts and connection errors failed (retried by the policy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from service.notify.http1 import HttpClient
from service.notify.ssrf import TargetRefused, resolve_checked

IDEMPOTENCY_HEADER = "Idempotency-Key"
PROTECTED_HEADERS = frozenset({"host", "content-length", "transfer-encoding",
                               IDEMPOTENCY_HEADER.lower()})
ERROR_MAX = 200

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


class WebhookSender:
    """POSTs notifications with one shared ``HttpClient`` (connection reuse per target)."""

    def __init__(self, client: HttpClient, *, timeout: float, private_targets: bool) -> None:
        self._client = client
        self._timeout = timeout
        self._private = private_targets

    async def post(self, url: str, body: bytes, request_headers: dict[str, str]) -> Result:
        try:
            address, sni = await self._target(url, request_headers)
            status = await self._client.post(url, body, request_headers,
                                             timeout=self._timeout, address=address, sni=sni)
        except TargetRefused as exc:
            return {"r": "refused", "status": None, "error": str(exc)}
        except TimeoutError:
            return {"r": "failed", "status": None, "error": "timed out"}
        except (OSError, ValueError) as exc:
            return {"r": "failed", "status": None,
                    "error": f"{type(exc).__name__}: {exc}"[:ERROR_MAX]}
        return _outcome(status)

    async def _target(self, url: str,
                      request_headers: dict[str, str]) -> tuple[str | None, str | None]:
        """Where to connect: the checked address (and the TLS name) unless private targets
        are allowed, when the URL's host is used as it is."""
        if self._private:
            return None, None
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await resolve_checked(host, port)
        return address, host
