"""Responses with Zaqar's headers: ``application/json`` without a charset, orjson bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response

JSON_TYPE = (b"content-type", b"application/json")
NO_BODY_STATUSES = (204, 304)  # with those below 200: no Content-Length (as Starlette)


def _raw_headers(headers: Mapping[str, str] | None, body: bytes, status: int,
                 content_type: tuple[bytes, bytes] | None) -> list[tuple[bytes, bytes]]:
    """The raw headers Starlette's ``Response.init_headers`` gives these (the same list, in
    the same order: the given ones, then Content-Length and Content-Type unless given),
    built in one call instead of four: every response of the hot paths is one of ours."""
    raw = []
    given = set()
    if headers:  # (a loop, not comprehensions: no frame each, for the one or two headers)
        for k, v in headers.items():
            name = k.lower().encode("latin-1")
            raw.append((name, v.encode("latin-1")))
            given.add(name)
    if b"content-length" not in given and not (status < 200 or status in NO_BODY_STATUSES):
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
    if content_type is not None and b"content-type" not in given:
        raw.append(content_type)
    return raw


class JSONResponse(Response):
    """A JSON body rendered by orjson; Starlette adds no charset to ``application/*``."""

    media_type = "application/json"

    def __init__(self, content: Any = None, status_code: int = 200,
                 headers: Mapping[str, str] | None = None, media_type: str | None = None,
                 background: BackgroundTask | None = None) -> None:
        if media_type is not None:  # not ours to shortcut
            super().__init__(content, status_code, headers, media_type, background)
            return
        self.status_code = status_code
        self.background = background
        self.body = self.render(content)
        self.raw_headers = _raw_headers(headers, self.body, status_code, JSON_TYPE)

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class JSONHomeResponse(Response):
    """The home document: ``application/json-home``, pretty-printed like upstream."""

    media_type = "application/json-home"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, indent=4).encode()


class EmptyResponse(Response):
    """A bodiless response; its headers as ``Response(status_code=..., headers=...)`` has
    them (Content-Length ``0`` where the status may have a body), built in one call."""

    def __init__(self, status_code: int, headers: Mapping[str, str] | None = None) -> None:
        self.status_code = status_code
        self.background = None
        self.body = b""
        self.raw_headers = _raw_headers(headers, b"", status_code, None)


def empty(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A bodiless response (204, 201 with Location, 406...): no content type."""
    return EmptyResponse(status, headers)
