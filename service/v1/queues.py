"""v1.0 and v1.1 queue routes over v2's queue commands and queries (``service.queues``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from projections import queries
from projections.commands import UpdateQueue
from service import queues, render
from service.context import command, gateway, project, queue_name, settings
from service.errors import bad_request, check_outcome, not_found
from service.responses import empty
from service.v1 import wire
from service.validation import parse_required, query, queues_limit, read_body, require_object

DEFAULT_LIMIT = 10


def _missing(request: Request) -> Exception:
    return not_found(f"Queue {queue_name(request)} does not exist for project "
                     f"{project(request)}")


async def list_queues(request: Request) -> Response:
    """A page of queues by name; v1.x has no name/metadata filters and no count, and
    ``detailed`` shows metadata as stored. Empty: 204 (v1.0) or an empty page."""
    v = wire.api(request)
    s = settings(request)
    q = query(request)
    limit = q.int("limit")
    if limit is not None:
        queues_limit(limit, s.max_queues_per_page)
    marker = q.str("marker")
    detailed = q.bool("detailed")
    found, _ = await queues.queue_page(request, limit=limit or DEFAULT_LIMIT, marker=marker)
    if not found and v.empty_status == 204:
        return wire.nothing(request, query=True)
    items = []
    for name, metadata in found:
        item: dict[str, Any] = {"name": name, "href": render.queue_href(name, v.prefix)}
        if detailed:
            item["metadata"] = metadata
        items.append(item)
    links: list[dict[str, str]] = []
    if items:
        params = wire.link_params(("marker", "limit", "detailed"), request,
                                  {"marker": marker, "limit": limit, "detailed": detailed})
        links = wire.next_link(f"{v.prefix}/queues", params, items[-1]["name"])
    return wire.read(request, {"queues": items, "links": links}, query=True)


async def exists(request: Request) -> Response:
    """v1.0 GET/HEAD of a queue: 204 when it exists, 404 (no body) otherwise."""
    view, partition, _ = await gateway(request).view_for(project(request), queue_name(request))
    found = queries.queue_exists(view, partition, project(request), queue_name(request))
    return wire.nothing(request) if found else empty(404, {"Content-Location": request.url.path})


async def create_queue(request: Request) -> Response:
    """PUT: 201 new, 204 existing. v1.0 ignores any body (metadata has its own resource);
    v1.1 takes metadata like v2."""
    v = wire.api(request)
    metadata = {} if v.metadata_resource else await queues.read_metadata(request)
    created = await queues.create(request, metadata)
    return empty(201 if created else 204,
                 {"Location": render.queue_href(queue_name(request), v.prefix)})


async def get_queue(request: Request) -> Response:
    """v1.1 GET: the metadata as stored (no reserved defaults); ``{}`` for a missing queue."""
    return wire.read(request, await queues.stored_metadata(request) or {})


async def get_metadata(request: Request) -> Response:
    """v1.0 GET …/metadata: the stored document, or 404 for a missing queue."""
    stored = await queues.stored_metadata(request)
    if stored is None:
        raise _missing(request)
    return wire.read(request, stored)


async def set_metadata(request: Request) -> Response:
    """v1.0 PUT …/metadata: replaces the whole document of an existing queue (404 if it is
    missing); reserved keys cannot be set through v1.0."""
    s = settings(request)
    limit = s.max_queue_metadata
    raw = await read_body(request, limit, lambda: bad_request(
        f"Queue metadata is too large. Max size: {limit}"))
    metadata = require_object(parse_required(raw, request))
    wire.reserved_keys(metadata)
    ops = [{"op": "clear", "key": "", "value": None}]
    ops += [{"op": "add", "key": str(k), "value": val} for k, val in metadata.items()]
    check_outcome(await gateway(request).execute(
        command(request, UpdateQueue, ops=ops, limits=s.limits().as_dict())))
    return empty(204, {"Location": request.url.path})


async def queue_stats(request: Request) -> Response:
    """Counts and oldest/newest; a missing queue is 404 in v1.0, zeros in v1.1."""
    v = wire.api(request)
    proj, queue = project(request), queue_name(request)
    view, partition, now = await gateway(request).view_for(proj, queue)
    if not v.lazy_queues and not queries.queue_exists(view, partition, proj, queue):
        raise _missing(request)
    raw = queries.stats(view, partition, proj, queue, now)
    return wire.read(request, render.stats(queue, raw, v.prefix))
