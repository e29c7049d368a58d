"""Subscription resources (zaqar-api.md §8.11), on queues and on topics.

Delivery itself is the partition owner's duty (``projections.deliverer``); here subscriber
URLs meet the SSRF guard, confirmation settings are stamped on the commands, and a
subscription's GET shows its delivery counters (``delivery``: delivered, failed, given up,
pending, last error — extra keys are allowed).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from projections import delivery, queries
from projections.commands import (
    ConfirmSubscription,
    CreateSubscription,
    DeleteSubscription,
    UpdateSubscription,
)
from projections.ids import new_id
from service import render, topics
from service.context import command, gateway, project, queue_name, settings
from service.errors import bad_request, check_outcome, not_found
from service.notify import ssrf
from service.quotas import queue_quota
from service.responses import JSONResponse, empty
from service.validation import (
    body_cap,
    body_too_large,
    confirmation,
    messages_limit,
    parse_optional,
    parse_required,
    query,
    read_body,
    subscription_create,
    subscription_update,
)

DEFAULT_LIMIT = 10


def _guard(request: Request, fields: dict[str, Any]) -> None:
    """Refuse non-public subscriber URLs unless private targets are allowed (§9)."""
    subscriber = fields.get("subscriber")
    if subscriber is None or settings(request).notification_private_targets:
        return
    problem = ssrf.literal_refusal(subscriber)
    if problem is not None:
        raise bad_request(problem)


def _shown(sub: dict[str, Any], view: Any, partition: int, project_id: str,
           queue: str, *, stats: bool) -> dict[str, Any]:
    sub = {**sub, "source": topics.public_name(queue)}
    if stats:
        counters = delivery.subscription_stats(view, partition, project_id, queue, sub["id"])
        sub["delivery"] = counters or {"delivered": 0, "failed": 0, "given_up": 0,
                                       "pending": 0, "last_error": None, "last_status": None}
    return sub


async def create_subscription(request: Request) -> Response:
    """201 with the new id — or the existing one while it is unconfirmed; 409 if confirmed."""
    s = settings(request)
    raw = await read_body(request, body_cap(s), body_too_large)
    gw = gateway(request)
    now = gw.queue_now_ms(project(request), queue_name(request))
    fields = subscription_create(parse_optional(raw), s, now)
    _guard(request, fields)
    location = {"Location": render.subscriptions_href(queue_name(request))}
    outcome = check_outcome(await gw.execute(command(
        request, CreateSubscription, subscription_id=new_id(),
        require_confirmation=s.require_confirmation,
        max_subscriptions=s.max_subscriptions_per_queue, **fields,
        **await queue_quota(request))),
        conflict_headers=location)
    return JSONResponse({"subscription_id": outcome["subscription_id"]}, status_code=201,
                        headers=location)


async def list_subscriptions(request: Request) -> Response:
    s = settings(request)
    q = query(request)
    limit = messages_limit(q.int("limit", DEFAULT_LIMIT) or 0, s.max_subscriptions_per_page)
    marker = q.str("marker")
    proj, queue = project(request), queue_name(request)
    view, partition, now = await gateway(request).view_for(proj, queue)
    subs = queries.list_subscriptions(view, partition, proj, queue, now, marker=marker,
                                      limit=limit)
    links: list[dict[str, str]] = []
    if subs:
        params = [("limit", q.str("limit") or "")] if q.has("limit") else []
        params.append(("marker", subs[-1]["id"]))
        links = render.next_link(render.subscriptions_href(queue), params)
    shown = [_shown(sub, view, partition, proj, queue, stats=False) for sub in subs]
    return JSONResponse({"subscriptions": shown, "links": links})


async def get_subscription(request: Request) -> Response:
    proj, queue = project(request), queue_name(request)
    sub_id = request.path_params["subscription_id"]
    view, partition, now = await gateway(request).view_for(proj, queue)
    sub = queries.get_subscription(view, partition, proj, queue, sub_id, now)
    if sub is None:
        raise not_found(f"Subscription {sub_id} does not exist")
    return JSONResponse(_shown(sub, view, partition, proj, queue, stats=True))


async def update_subscription(request: Request) -> Response:
    s = settings(request)
    raw = await read_body(request, body_cap(s), body_too_large)
    gw = gateway(request)
    now = gw.queue_now_ms(project(request), queue_name(request))
    changes = subscription_update(parse_optional(raw), s, now)
    _guard(request, changes)
    sub_id = request.path_params["subscription_id"]
    location = {"Location": f"{render.subscriptions_href(queue_name(request))}/{sub_id}"}
    check_outcome(await gw.execute(command(
        request, UpdateSubscription, subscription_id=sub_id, changes=changes)),
        conflict_headers=location)
    return empty(204, location)


async def delete_subscription(request: Request) -> Response:
    check_outcome(await gateway(request).execute(command(
        request, DeleteSubscription, subscription_id=request.path_params["subscription_id"])))
    return empty(204)


async def confirm_subscription(request: Request) -> Response:
    s = settings(request)
    raw = await read_body(request, body_cap(s), body_too_large)
    confirmed = confirmation(parse_required(raw, request))
    sub_id = request.path_params["subscription_id"]
    check_outcome(await gateway(request).execute(command(
        request, ConfirmSubscription, subscription_id=sub_id, confirmed=confirmed,
        require_confirmation=s.require_confirmation)))
    location = f"{render.subscriptions_href(queue_name(request))}/{sub_id}/confirm"
    return empty(204, {"Location": location})
