"""v1.0 and v1.1 claim routes over v2's claim commands and queries (``service.claims``).
Release (DELETE) and v1.1's renew (PATCH) are v2's handlers as they are."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service import claims, render
from service.context import queue_name, settings
from service.responses import JSONResponse, empty
from service.v1 import wire
from service.validation import (
    body_cap,
    body_too_large,
    parse_optional,
    parse_required,
    query,
    read_body,
)


async def create_claim(request: Request) -> Response:
    """201 with the claimed messages (a bare array in v1.0) and Location; 204 for none."""
    v = wire.api(request)
    s = settings(request)
    limit = query(request).int("limit")
    raw = await read_body(request, body_cap(s), body_too_large)
    doc = parse_required(raw, request) if v.claim_body_required else parse_optional(raw)
    ttl, grace = wire.claim_create(v, doc, s, limit)
    claim_id, snaps, now = await claims.claim(request, ttl, grace,
                                              limit or claims.DEFAULT_LIMIT)
    if not snaps:
        return empty(204)
    items = [wire.snapshot(request, m, now, claim_id) for m in snaps]
    location = render.claim_href(queue_name(request), claim_id, v.prefix)
    return JSONResponse(items if v.bare_arrays else {"messages": items}, status_code=201,
                        headers={"Location": location})


async def get_claim(request: Request) -> Response:
    found = await claims.lookup(request)
    claim_id = request.path_params["claim_id"]
    body = {"age": found["age"], "ttl": found["ttl"],
            "messages": [wire.message(request, m, claim_id=claim_id)
                         for m in found["messages"]],
            "href": request.url.path}
    return wire.read(request, body, query=True)


async def update_claim(request: Request) -> Response:
    """v1.0 PATCH: ttl required, grace 0 unless given."""
    v = wire.api(request)
    s = settings(request)
    raw = await read_body(request, body_cap(s), body_too_large)
    ttl, grace = wire.claim_update(v, parse_required(raw, request), s)
    await claims.renew(request, ttl, grace)
    return empty(204)
