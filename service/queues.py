"""Queue resources (zaqar-api.md §5): list, create, metadata, update, delete, stats, purge,
share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from projections import queries
from projections.commands import CreateQueue, DeleteQueue, PurgeQueue, UpdateQueue
from projections.metadata import with_defaults
from projections.store import View
from service import render, signing
from service import topics as topic_names
from service.context import command, gateway, project, queue_name, settings
from service.errors import INVALID_BODY, HTTPError, bad_body, bad_request, check_outcome
from service.quotas import queue_quota
from service.responses import JSONResponse, empty
from service.validation import (
    PATCH_MEDIA_TYPE,
    body_cap,
    body_too_large,
    parse_optional,
    parse_required,
    patch_operations,
    purge_types,
    query,
    queue_metadata,
    queues_limit,
    read_body,
    share_request,
)

LIST_PARAMS = ("limit", "marker", "detailed", "name", "with_count")
DEFAULT_LIMIT = 10


def _filter_value(raw: str) -> Any:
    """Metadata filters compare as int when the value parses as one (MongoDB, §5.1)."""
    try:
        return int(raw)
    except ValueError:
        return raw


async def list_queues(request: Request) -> Response:
    """Fan out to every partition (each with its barrier), merge by name, fill the page."""
    return await list_names(request, topics=False)


async def list_names(request: Request, *, topics: bool) -> Response:
    """``GET /v2/queues`` or, with ``topics``, ``GET /v2/topics`` (service/topics.py)."""
    s = settings(request)
    q = query(request)
    limit = queues_limit(q.int("limit", DEFAULT_LIMIT) or 0, s.max_queues_per_page)
    marker = q.str("marker")
    detailed = q.bool("detailed")
    name = q.str("name")
    with_count = q.bool("with_count")
    filters = {k: _filter_value(q.str(k) or "") for k in q.names() if k not in LIST_PARAMS}
    proj = project(request)
    found, views = await queue_page(request, limit=limit, marker=marker, name=name,
                                    filters=filters or None, topics=topics)
    items = []
    for queue, metadata in found:
        stored_name = topic_names.internal(queue) if topics else queue
        item: dict[str, Any] = {"name": queue, "href": render.queue_href(stored_name)}
        if detailed:
            item["metadata"] = (topic_names.topic_defaults(metadata, s.limits()) if topics
                                else with_defaults(metadata, s.limits()))
        items.append(item)
    links: list[dict[str, str]] = []
    if items:
        params = [(k, q.str(k) or "") for k in LIST_PARAMS if k != "marker" and q.has(k)]
        params = [(k, render.bool_text(q.bool(k)) if k in ("detailed", "with_count") else v)
                  for k, v in params]
        params += [(k, q.str(k) or "") for k in filters]
        params.append(("marker", items[-1]["name"]))
        links = render.next_link("/v2/topics" if topics else "/v2/queues", params)
    body: dict[str, Any] = {"topics" if topics else "queues": items, "links": links}
    if with_count:
        count = sum(queries.queue_count(view, partition, proj, topics=topics)
                    for partition, view in views)
        if count:
            body["count"] = count
    return JSONResponse(body)


async def queue_page(request: Request, *, limit: int, marker: str | None,
                     name: str | None = None, filters: dict[str, Any] | None = None,
                     topics: bool = False,
                     ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[int, View]]]:
    """Up to ``limit`` (name, stored metadata) of the project after ``marker``, by name, and
    the views read (every partition, each behind its barrier)."""
    proj = project(request)
    views = await gateway(request).views_all()
    found: list[tuple[str, dict[str, Any]]] = []
    for partition, view in views:
        found.extend(queries.queue_names(view, partition, proj, after=marker, limit=limit,
                                         name_contains=name, filters=filters,
                                         topics=topics))
    found.sort(key=lambda item: item[0].encode())
    return found[:limit], views


async def read_metadata(request: Request) -> dict[str, Any]:
    """The metadata a queue PUT carries (optional body), validated (§5.2, §6)."""
    s = settings(request)
    limit = s.max_queue_metadata
    raw = await read_body(request, limit, lambda: bad_request(
        f"Queue metadata is too large. Max size: {limit}"))
    return queue_metadata(parse_optional(raw), s.limits())


async def create(request: Request, metadata: dict[str, Any]) -> bool:
    """Create the request's queue; False when it existed (its metadata then stays)."""
    outcome = check_outcome(await gateway(request).execute(
        command(request, CreateQueue, metadata=metadata, **await queue_quota(request))))
    return bool(outcome.get("created"))


async def create_queue(request: Request) -> Response:
    """201 when new, 204 when it existed (its metadata then stays as it was, §5.2)."""
    created = await create(request, await read_metadata(request))
    location = {"Location": render.queue_href(queue_name(request))}
    return empty(201 if created else 204, location)


async def stored_metadata(request: Request) -> dict[str, Any] | None:
    """The request's queue metadata as stored (no defaults); None for a missing queue."""
    view, partition, _ = await gateway(request).view_for(project(request), queue_name(request))
    return queries.queue_metadata(view, partition, project(request), queue_name(request))


async def get_queue(request: Request) -> Response:
    """Stored metadata with reserved defaults; a missing queue is just the defaults (§5.3)."""
    stored = await stored_metadata(request)
    return JSONResponse(with_defaults(stored or {}, settings(request).limits()))


async def update_queue(request: Request) -> Response:
    """JSON-patch subset (§5.4): syntax here, existence and the result's validity in apply."""
    s = settings(request)
    if request.headers.get("content-type") != PATCH_MEDIA_TYPE:
        raise HTTPError(415, "415 Unsupported Media Type",
                        f"Accepted media type for PATCH: {{'Accept-Patch': '{PATCH_MEDIA_TYPE}'}}.")
    limit = s.max_queue_metadata
    raw = await read_body(request, limit, lambda: bad_body(
        f"Queue metadata is too large. Max size: {limit}"))
    if not raw:
        raise bad_body("PATCH body could not be empty for update.")
    ops = patch_operations(parse_required(raw, request))
    outcome = check_outcome(await gateway(request).execute(
        command(request, UpdateQueue, ops=ops, limits=s.limits().as_dict())),
        invalid_title=INVALID_BODY)
    return JSONResponse(with_defaults(outcome["metadata"], s.limits()))


async def delete_queue(request: Request) -> Response:
    check_outcome(await gateway(request).execute(command(request, DeleteQueue)))
    return empty(204)


async def raw_stats(request: Request) -> dict[str, Any]:
    """Counts and oldest/newest of the request's queue (zeros for a missing queue)."""
    view, partition, now = await gateway(request).view_for(project(request), queue_name(request))
    return queries.stats(view, partition, project(request), queue_name(request), now)


async def queue_stats(request: Request) -> Response:
    return JSONResponse(render.stats(queue_name(request), await raw_stats(request)))


async def purge_queue(request: Request) -> Response:
    raw = await read_body(request, body_cap(settings(request)), body_too_large)
    kinds = purge_types(parse_optional(raw))
    check_outcome(await gateway(request).execute(
        command(request, PurgeQueue, resource_types=kinds)))
    return empty(204)


async def share_queue(request: Request) -> Response:
    """A pre-signed URL for this queue's messages/subscriptions/claims (§5.8); no state."""
    s = settings(request)
    raw = await read_body(request, body_cap(s), body_too_large)
    now = datetime.now(UTC).replace(tzinfo=None)
    kinds, methods, expires = share_request(parse_required(raw, request), now,
                                            has_key=s.secret_key is not None)
    assert s.secret_key is not None
    base = render.queue_href(queue_name(request))
    paths = [f"{base}/{kind}" for kind in (kinds or ["messages"])]
    return JSONResponse(signing.create(s.secret_key, paths, methods, project(request), expires))
