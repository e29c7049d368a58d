"""v1.0 and v1.1 message routes over v2's message commands and queries
(``service.messages``). Deletes of one message, and v1.1's ``?ids=``/``?pop=`` deletes, are
v2's handlers as they are: their wire format is the same."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from projections.commands import DeleteMessages
from service import messages, render
from service.context import command, gateway, project, queue_name, settings
from service.errors import HTTPError, check_outcome, not_found
from service.responses import JSONResponse, empty
from service.v1 import wire
from service.validation import messages_limit, parse_required, query

LIST_PARAMS = ("marker", "limit", "echo", "include_claimed")


async def post_messages(request: Request) -> Response:
    """One atomic batch; 201 with the hrefs. v1.0 posts only to an existing queue."""
    v = wire.api(request)
    wire.require_client_id(request)
    raw = await messages.read_post(request)
    parsed = wire.posted_messages(v, parse_required(raw, request), settings(request))
    ids = await messages.enqueue(request, raw, parsed, create_queue=v.lazy_queues)
    queue = queue_name(request)
    body: dict[str, object] = {
        "resources": [render.message_href(queue, i, prefix=v.prefix) for i in ids]}
    if v.post_partial:
        body["partial"] = False  # batches are all or nothing
    location = f"{v.prefix}/queues/{queue}/messages?ids={','.join(ids)}"
    return JSONResponse(body, status_code=201, headers={"Location": location})


async def get_messages(request: Request) -> Response:
    """``?ids=`` fetches a set; otherwise a page in queue order (``echo``,
    ``include_claimed``; v1.x has no ``include_delayed``)."""
    ids = query(request).list("ids")
    if ids is not None:
        return await _by_ids(request, ids)
    return await _list(request)


async def _by_ids(request: Request, ids: list[str]) -> Response:
    v = wire.api(request)
    found = [wire.message(request, m) for m in await messages.by_ids(request, ids)]
    if not found:
        if v.empty_status == 204:
            return wire.nothing(request, query=True)
        raise not_found(f"No messages with IDs: {ids} found in the queue "
                        f"{queue_name(request)} for project {project(request)}.")
    return wire.read(request, found if v.bare_arrays else {"messages": found}, query=True)


async def _list(request: Request) -> Response:
    v = wire.api(request)
    wire.require_client_id(request)
    q = query(request)
    s = settings(request)
    limit = q.int("limit")
    if limit is not None:
        messages_limit(limit, s.max_messages_per_page)
    flags = {"echo": q.bool("echo"), "include_claimed": q.bool("include_claimed"),
             "include_delayed": False}
    marker = q.str("marker")
    found, _ = await messages.list_page(request, limit=limit or messages.DEFAULT_LIMIT,
                                        marker_text=marker, flags=flags)
    page = found.messages
    if found.marker is None and v.empty_status == 204:  # empty, and nothing further either
        return wire.nothing(request, query=True)
    links: list[dict[str, str]] = []
    if found.marker is not None:
        params = wire.link_params(LIST_PARAMS, request, {"marker": marker, "limit": limit,
                                                         **flags})
        links = wire.next_link(f"{v.prefix}/queues/{queue_name(request)}/messages", params,
                               str(found.marker))
    return wire.read(request, {"messages": [wire.message(request, m) for m in page],
                               "links": links}, query=True)


async def delete_messages(request: Request) -> Response:
    """v1.0 DELETE …/messages: ``ids`` is required (no pop); deletes whatever their claims."""
    ids = query(request).list("ids")
    if ids is None:
        raise HTTPError(400, "Missing parameter", 'The "ids" parameter is required.')
    messages_limit(len(ids), settings(request).max_messages_per_page)
    check_outcome(await gateway(request).execute(
        command(request, DeleteMessages, message_ids=ids)))
    return empty(204)


async def get_message(request: Request) -> Response:
    return wire.read(request, wire.message(request, await messages.lookup(request)),
                     query=True)
