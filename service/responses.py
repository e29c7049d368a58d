"""Responses with Zaqar's headers: ``application/json`` without a charset, orjson bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    """A JSON body rendered by orjson; Starlette adds no charset to ``application/*``."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class JSONHomeResponse(Response):
    """The home document: ``application/json-home``, pretty-printed like upstream."""

    media_type = "application/json-home"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, indent=4).encode()


def empty(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A bodiless response (204, 201 with Location, 406...): no content type."""
    return Response(status_code=status, headers=dict(headers or {}))
