"""Our responses build their raw headers in one call: the same list, in the same order, as
Starlette's ``Response.init_headers`` builds for the same status, headers and body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.responses import Response

from service.responses import JSONResponse, empty


class StarletteJSON(Response):
    """What ``JSONResponse`` was: Starlette's own ``__init__`` and ``init_headers``."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


STATUSES = (100, 199, 200, 201, 204, 304, 400, 404, 405, 503)
HEADERS: tuple[dict[str, str] | None, ...] = (
    None, {}, {"Location": "/v2/queues/q/messages?ids=a,b"}, {"Content-Length": "5"},
    {"content-type": "text/plain"}, {"Allow": "GET, OPTIONS", "Retry-After": "1"},
    {"X-Ü": "é", "CONTENT-LENGTH": "0"})


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize("content", [{"title": "x", "description": "é"}, [], None, "s"])
def test_json_responses_are_starlettes(status: int, headers: dict[str, str] | None,
                                       content: Any) -> None:
    ours = JSONResponse(content, status_code=status, headers=headers)
    theirs = StarletteJSON(content, status_code=status, headers=headers)
    assert (ours.status_code, ours.body, ours.raw_headers) == (
        theirs.status_code, theirs.body, theirs.raw_headers)
    assert ours.background is None


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("headers", HEADERS)
def test_empty_responses_are_starlettes(status: int, headers: dict[str, str] | None) -> None:
    ours = empty(status, headers)
    theirs = Response(status_code=status, headers=dict(headers or {}))
    assert (ours.status_code, ours.body, ours.raw_headers) == (
        theirs.status_code, theirs.body, theirs.raw_headers)


def test_a_media_type_is_starlettes_to_set() -> None:
    ours = JSONResponse({"a": 1}, media_type="application/json-patch+json")
    theirs = StarletteJSON({"a": 1}, media_type="application/json-patch+json")
    assert ours.raw_headers == theirs.raw_headers
