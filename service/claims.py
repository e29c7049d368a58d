"""Claim resources (zaqar-api.md §8.7-§8.10): claim, inspect, renew, release."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from projections import queries
from projections.commands import CreateClaim, ReleaseClaim, UpdateClaim
from projections.ids import new_id
from service import render
from service.context import command, gateway, project, queue_name, settings
from service.errors import check_outcome, not_found
from service.responses import JSONResponse, empty
from service.validation import (
    body_cap,
    body_too_large,
    claim_create,
    claim_update,
    messages_limit,
    parse_optional,
    parse_required,
    query,
    read_body,
)

DEFAULT_LIMIT = 10


async def claim(request: Request, ttl: int, grace: int,
                limit: int) -> tuple[str, list[dict[str, Any]], int]:
    """Claim up to ``limit`` messages: (claim id, message snapshots, the claim's time)."""
    cmd = command(request, CreateClaim, claim_id=new_id(), ttl=ttl, grace=grace, limit=limit)
    outcome = check_outcome(await gateway(request).execute(cmd))
    return str(outcome.get("claim_id", cmd.claim_id)), list(outcome.get("messages") or []), \
        cmd.time_ms


async def create_claim(request: Request) -> Response:
    """201 with the claimed messages, or 204 when nothing could be claimed."""
    s = settings(request)
    limit = query(request).int("limit", DEFAULT_LIMIT) or 0
    raw = await read_body(request, body_cap(s), body_too_large)
    doc = parse_optional(raw)
    messages_limit(limit, s.max_messages_per_claim_or_pop)
    ttl, grace = claim_create(doc, s)
    claim_id, snaps, now = await claim(request, ttl, grace, limit)
    if not snaps:
        return empty(204)
    queue = queue_name(request)
    messages = render.snapshots(queue, snaps, now, claim_id, with_checksum=s.enable_checksum)
    return JSONResponse({"messages": messages}, status_code=201,
                        headers={"Location": render.claim_href(queue, claim_id)})


async def lookup(request: Request) -> dict[str, Any]:
    """The claim the path names (``age``, ``ttl``, ``messages``), or 404."""
    proj, queue = project(request), queue_name(request)
    claim_id = request.path_params["claim_id"]
    view, partition, now = await gateway(request).view_for(proj, queue)
    found = queries.get_claim(view, partition, proj, queue, claim_id, now)
    if found is None:
        raise not_found(f"Claim {claim_id} does not exist in queue {queue} for project {proj}")
    return found


async def get_claim(request: Request) -> Response:
    queue = queue_name(request)
    claim_id = request.path_params["claim_id"]
    claim = await lookup(request)
    checksum = settings(request).enable_checksum
    return JSONResponse({
        "age": claim["age"], "ttl": claim["ttl"],
        "messages": [render.message(queue, m, with_checksum=checksum)
                     for m in claim["messages"]],
        "href": render.claim_href(queue, claim_id)})


async def renew(request: Request, ttl: int, grace: int) -> None:
    """Renew the claim the path names (404 when it is gone)."""
    check_outcome(await gateway(request).execute(command(
        request, UpdateClaim, claim_id=request.path_params["claim_id"], ttl=ttl, grace=grace)))


async def update_claim(request: Request) -> Response:
    s = settings(request)
    raw = await read_body(request, body_cap(s), body_too_large)
    ttl, grace = claim_update(parse_required(raw, request), s)
    await renew(request, ttl, grace)
    return empty(204)


async def delete_claim(request: Request) -> Response:
    check_outcome(await gateway(request).execute(command(
        request, ReleaseClaim, claim_id=request.path_params["claim_id"])))
    return empty(204)
