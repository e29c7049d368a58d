"""A client that goes away while its body is read: nothing answered, nothing appended, no 500."""

from __future__ import annotations

from typing import Any

from service.app import create_app
from tests.service.conftest import PROJECT, Service


async def test_a_disconnect_mid_body_is_answered_by_nothing(svc: Service) -> None:
    app = create_app(svc.settings, svc.gateway)
    assert (await svc.client.put("/v2/queues/q")).status_code == 201
    before = await svc.ends()
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"messages": [{"body": 1', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v2/queues/q/messages", "raw_path": b"/v2/queues/q/messages",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": None,
        "headers": [(b"client-id", svc.client_id.encode()), (b"x-project-id", PROJECT.encode()),
                    (b"content-type", b"application/json")],
    }
    await app(scope, receive, send)
    assert sent == []
    assert messages == []  # the disconnect was read, and nothing after it was asked for
    assert await svc.ends() == before
