"""Message resources (zaqar-api.md §8.1-§8.6): post, list, get by ids, get one, delete, pop."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from projections import queries
from projections.commands import (
    DeleteMessage,
    DeleteMessages,
    NewMessage,
    PopMessages,
    PostMessages,
)
from projections.ids import new_id
from service import render
from service.context import (
    client_id,
    command,
    gateway,
    project,
    queue_name,
    settings,
)
from service.errors import bad_request, check_outcome, not_found
from service.quotas import queue_quota
from service.responses import JSONResponse, empty
from service.validation import (
    Query,
    check_limit,
    content_length,
    messages_limit,
    parse_required,
    posted_messages,
    query,
    read_body,
)

DEFAULT_LIMIT = 10
LIST_FLAGS = ("echo", "include_claimed", "include_delayed")
MAX_MARKER = 2**64 - 2  # a marker is a message seq; the next key (seq + 1) must fit a u64


def parse_marker(raw: str) -> int | None:
    """A message marker is the seq as decimal text; anything else is malformed (None)."""
    if not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value <= MAX_MARKER else None


async def read_post(request: Request) -> bytes:
    """A message post's body, refused unread past ``max_messages_post_size``."""
    limit = settings(request).max_messages_post_size
    return await read_body(request, limit, lambda: bad_request(
        f"Message collection size is too large. Max size {limit}"))


async def enqueue(request: Request, raw: bytes, parsed: list[tuple[Any, int | None, Any]], *,
                  create_queue: bool = True) -> list[str]:
    """Post validated ``(body, ttl, delay)`` messages as one batch; their ids, in order.

    ``create_queue=False`` refuses a missing queue (404) instead of creating it (v1.0)."""
    s = settings(request)
    messages = [NewMessage(id=new_id(), body=body, ttl=ttl, delay=delay)
                for body, ttl, delay in parsed]
    size = content_length(request)
    outcome = check_outcome(await gateway(request).execute(command(
        request, PostMessages, messages=messages, size=len(raw) if size is None else size,
        default_ttl=s.default_message_ttl, max_post_size=s.max_messages_post_size,
        max_delay=s.max_message_delay, create_queue=create_queue,
        max_messages=s.max_messages_per_queue, deliver=s.notifications,
        require_confirmation=s.require_confirmation, **await queue_quota(request))))
    return list(outcome["ids"])


async def post_messages(request: Request) -> Response:
    """Atomic batch post (§8.1); lazily creates the queue; the queue's own cap is in apply."""
    raw = await read_post(request)
    parsed = posted_messages(parse_required(raw, request), settings(request))
    ids = await enqueue(request, raw, parsed)
    location, body = render.posted(queue_name(request), ids)
    return JSONResponse(body, status_code=201, headers={"Location": location})


async def get_messages(request: Request) -> Response:
    """``?ids=`` fetches a set (§8.3); otherwise a page in queue order (§8.2)."""
    q = query(request)
    ids = q.list("ids")
    if ids is not None:
        return await _get_by_ids(request, ids)
    return await _list(request, q)


async def list_page(request: Request, *, limit: int, marker_text: str | None,
                    flags: dict[str, bool]) -> tuple[queries.Page, bool]:
    """A page of the request's queue after the marker (a malformed one: an empty page) with
    the ``echo``/``include_claimed``/``include_delayed`` flags, and whether the queue is an
    ordinary one (then ``flags["include_delayed"]`` is forced true, §10.6). A page may come
    back short, even empty, with a marker when it stepped over ``queries.SKIP_CAP`` entries
    it may not show (bounded work): the next link goes on from there."""
    proj, queue = project(request), queue_name(request)
    view, partition, now = await gateway(request).view_for(proj, queue)
    stored = queries.queue_metadata(view, partition, proj, queue) or {}
    forced = not stored.get("_default_message_delay")
    if forced:  # ordinary queues list everything (§10.6)
        flags["include_delayed"] = True
    marker = None if marker_text is None else parse_marker(marker_text)
    page = queries.Page([], None)
    if marker_text is None or marker is not None:
        page = queries.list_page(
            view, partition, proj, queue, now, marker=marker, limit=limit,
            client_id=client_id(request), echo=flags["echo"],
            include_claimed=flags["include_claimed"], include_delayed=flags["include_delayed"],
            skip_cap=queries.SKIP_CAP)
    return page, forced


async def _list(request: Request, q: Query) -> Response:
    s = settings(request)
    limit = messages_limit(q.int("limit", DEFAULT_LIMIT) or 0, s.max_messages_per_page)
    flags = {name: q.bool(name) for name in LIST_FLAGS}
    queue = queue_name(request)
    found, forced = await list_page(request, limit=limit, marker_text=q.str("marker"),
                                    flags=flags)
    items = [render.message(queue, m, with_checksum=s.enable_checksum) for m in found.messages]
    links: list[dict[str, str]] = []
    if found.marker is not None:
        params = [("limit", q.str("limit") or "")] if q.has("limit") else []
        params += [(name, render.bool_text(flags[name])) for name in LIST_FLAGS
                   if q.has(name) or (name == "include_delayed" and forced)]
        params.append(("marker", str(found.marker)))
        links = render.next_link(f"{render.queue_href(queue)}/messages", params)
    return JSONResponse({"messages": items, "links": links})


async def by_ids(request: Request, ids: list[str]) -> list[queries.Message]:
    """The messages of the request's queue with these ids (each once), within the page
    limit; the missing ones are left out."""
    messages_limit(len(ids), settings(request).max_messages_per_page)
    proj, queue = project(request), queue_name(request)
    view, partition, now = await gateway(request).view_for(proj, queue)
    found = []
    for message_id in dict.fromkeys(ids):
        m = queries.get_message(view, partition, proj, queue, message_id, now)
        if m is not None:
            found.append(m)
    return found


async def _get_by_ids(request: Request, ids: list[str]) -> Response:
    s = settings(request)
    proj, queue = project(request), queue_name(request)
    found = [render.message(queue, m, with_checksum=s.enable_checksum)
             for m in await by_ids(request, ids)]
    if not found:
        raise not_found(f"No messages with IDs: {ids} found in the queue {queue} for project "
                        f"{proj}.")
    return JSONResponse({"messages": found})


async def delete_messages(request: Request) -> Response:
    """``?ids=`` deletes regardless of claims; ``?pop=N`` removes and returns N (§8.4)."""
    s = settings(request)
    q = query(request)
    ids = q.list("ids")
    pop = q.int("pop")
    claim_ids = q.list("claim_ids") if s.message_delete_with_claim_id else None
    if ids and pop:
        raise bad_request("pop and id params cannot be present together in the delete request.")
    if ids is None and pop is None:
        raise bad_request('The request should have either "ids" or "pop" parameter in the '
                          "request, to be able to delete.")
    if s.message_delete_with_claim_id and (ids is None) != (claim_ids is None):
        raise bad_request('The request should have both "ids" and "claim_ids" parameter in the '
                          "request when message_delete_with_claim_id is True.")
    if pop is not None:
        limit = s.max_messages_per_claim_or_pop
        check_limit(pop, limit,
                    f"Pop value must be at least 1 and may not be greater than {limit}.")
        return await _pop(request, pop)
    assert ids is not None
    limit = s.max_messages_per_page
    check_limit(len(ids), limit,
                f"ids parameter should have at least 1 and not greater than {limit} values.")
    if claim_ids is not None:
        await _delete_claimed(request, ids, claim_ids)
    else:
        check_outcome(await gateway(request).execute(
            command(request, DeleteMessages, message_ids=ids)))
    return empty(204)


async def _delete_claimed(request: Request, ids: list[str], claim_ids: list[str]) -> None:
    """``message_delete_with_claim_id``: delete only messages held by one of ``claim_ids``.

    DeleteMessages carries no claim ids, so each candidate goes as a DeleteMessage with the
    claim it is held by; apply re-checks that claim, so a claim that lapsed or changed hands
    since the read makes that delete a recorded refusal, never a wrong delete.
    """
    proj, queue = project(request), queue_name(request)
    view, partition, now = await gateway(request).view_for(proj, queue)
    wanted = set(claim_ids)
    targets: list[tuple[str, str]] = []
    for message_id in dict.fromkeys(ids):
        m = queries.get_message(view, partition, proj, queue, message_id, now)
        if m is not None and m.claim_id in wanted:
            targets.append((m.id, m.claim_id))
    gw = gateway(request)
    await asyncio.gather(*(
        gw.execute(command(request, DeleteMessage, message_id=mid, claim_id=cid))
        for mid, cid in targets))


async def _pop(request: Request, count: int) -> Response:
    cmd = command(request, PopMessages, count=count)
    outcome = check_outcome(await gateway(request).execute(cmd))
    messages: list[dict[str, Any]] = outcome.get("messages", [])
    return JSONResponse({"messages": [render.popped(m, cmd.time_ms) for m in messages]})


async def lookup(request: Request) -> queries.Message:
    """The message the path names, or 404."""
    proj, queue = project(request), queue_name(request)
    message_id = request.path_params["message_id"]
    view, partition, now = await gateway(request).view_for(proj, queue)
    m = queries.get_message(view, partition, proj, queue, message_id, now)
    if m is None:
        raise not_found(f"Message {message_id} does not exist in queue {queue} for project "
                        f"{proj}")
    return m


async def get_message(request: Request) -> Response:
    m = await lookup(request)
    return JSONResponse(render.message(queue_name(request), m,
                                       with_checksum=settings(request).enable_checksum))


async def delete_message(request: Request) -> Response:
    """Idempotent; a claimed message needs its live claim id (§8.6, decided in apply)."""
    claim_id = query(request).str("claim_id")
    check_outcome(await gateway(request).execute(command(
        request, DeleteMessage, message_id=request.path_params["message_id"],
        claim_id=claim_id)))
    return empty(204)
