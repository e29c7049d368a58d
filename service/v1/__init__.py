"""Marconi's original APIs, v1.0 (``/v1``) and v1.1 (``/v1.1``), as route sets over the same
commands and queries as v2. What differs per version is in ``service.versions``; the wire
format (bodies in and out) in ``service.v1.wire``; the handlers here only translate.
Handlers whose wire format equals v2's are v2's own."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

# Aliased: the submodules service.v1.claims/messages/queues take the plain names here.
from service import claims as v2_claims
from service import messages as v2_messages
from service import queues as v2_queues
from service import system
from service.context import settings
from service.homedoc import home_v1
from service.responses import JSONHomeResponse, JSONResponse
from service.routing import route
from service.v1 import claims as v1_claims
from service.v1 import messages as v1_messages
from service.v1 import queues as v1_queues
from service.v1 import wire
from service.versions import V1_0, V1_1, ApiVersion


async def home_document(request: Request) -> Response:
    return JSONHomeResponse(home_v1(wire.api(request).id, settings(request).admin_mode),
                            headers={"Cache-Control": "max-age=86400"})


async def health(request: Request) -> Response:
    """v1.1 ``/health`` (admin_mode): v2's report, without v2's role check."""
    return JSONResponse(await system.health_report(request))


def routes(api: ApiVersion, admin_mode: bool) -> list[BaseRoute]:
    """The routes of v1.0 or v1.1."""
    q = f"{api.prefix}/queues/{{queue_name}}"
    if api is V1_0:
        return [
            route(f"{api.prefix}/", api, GET=home_document),
            route(f"{api.prefix}/queues", api, GET=v1_queues.list_queues),
            route(q, api, GET=v1_queues.exists, HEAD=v1_queues.exists,
                  PUT=v1_queues.create_queue, DELETE=v2_queues.delete_queue),
            route(f"{q}/metadata", api, GET=v1_queues.get_metadata,
                  PUT=v1_queues.set_metadata),
            route(f"{q}/stats", api, GET=v1_queues.queue_stats),
            route(f"{q}/messages", api, GET=v1_messages.get_messages,
                  POST=v1_messages.post_messages, DELETE=v1_messages.delete_messages),
            route(f"{q}/messages/{{message_id}}", api, GET=v1_messages.get_message,
                  DELETE=v2_messages.delete_message),
            route(f"{q}/claims", api, POST=v1_claims.create_claim),
            route(f"{q}/claims/{{claim_id}}", api, GET=v1_claims.get_claim,
                  PATCH=v1_claims.update_claim, DELETE=v2_claims.delete_claim),
            route(f"{api.prefix}/health", api, GET=system.ping, HEAD=system.ping),
        ]
    assert api is V1_1
    out = [
        route(f"{api.prefix}/", api, GET=home_document),
        route(f"{api.prefix}/queues", api, GET=v1_queues.list_queues),
        route(q, api, GET=v1_queues.get_queue, PUT=v1_queues.create_queue,
              DELETE=v2_queues.delete_queue),
        route(f"{q}/stats", api, GET=v1_queues.queue_stats),
        route(f"{q}/messages", api, GET=v1_messages.get_messages,
              POST=v1_messages.post_messages, DELETE=v2_messages.delete_messages),
        route(f"{q}/messages/{{message_id}}", api, GET=v1_messages.get_message,
              DELETE=v2_messages.delete_message),
        route(f"{q}/claims", api, POST=v1_claims.create_claim),
        route(f"{q}/claims/{{claim_id}}", api, GET=v1_claims.get_claim,
              PATCH=v2_claims.update_claim, DELETE=v2_claims.delete_claim),
        route(f"{api.prefix}/ping", api, GET=system.ping, HEAD=system.ping),
    ]
    if admin_mode:
        out.append(route(f"{api.prefix}/health", api, GET=health))
    return out
