"""``create_app``: the routes of Zaqar v2 and the middleware that runs before them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from service import (
    claims,
    history,
    messages,
    openapi,
    queues,
    subscriptions,
    system,
    v1,
    versions,
)
from service.bodytimeout import BodyTimeout
from service.errors import EXCEPTION_HANDLERS
from service.keystone import TokenValidator, validator_from
from service.metrics import Metrics, NodeStatus, RequestMetrics
from service.middleware import (
    AcceptJson,
    Auth,
    Checks,
    ClientId,
    FormEncodedRejection,
    MethodCheck,
    PreSignedUrl,
    ProjectId,
    QueueName,
    RequestId,
    Routing,
)
from service.mount import Mount
from service.ratelimit import RateLimit
from service.routing import route
from service.types import Gateway

if TYPE_CHECKING:
    from ops.settings import Settings

API_VERSIONS = versions.IDS

Q = "/v2/queues/{queue_name}"


def build_routes(admin_mode: bool, *, with_history: bool = False,
                 api_versions: Sequence[str] = API_VERSIONS) -> list[BaseRoute]:
    """Every routed path. Topics, pools and flavors are not routed: they answer 404
    (topics are optional, pooling is off — zaqar-api.md §8.13, §9). The history route is
    Marconi's own (admin role, any ``admin_mode``) and exists when a reader is wired.
    Only the ``api_versions`` enabled are routed (``/`` always is)."""
    routes: list[BaseRoute] = [
        route("/", GET=system.versions),
        route("/v2/", GET=system.home_document),
        route("/v2/ping", GET=system.ping, HEAD=system.ping),
        route(openapi.PATH, GET=openapi.openapi_document),
        route("/v2/queues", GET=queues.list_queues),
        route(Q, GET=queues.get_queue, PUT=queues.create_queue, PATCH=queues.update_queue,
              DELETE=queues.delete_queue),
        route(f"{Q}/stats", GET=queues.queue_stats),
        route(f"{Q}/purge", POST=queues.purge_queue),
        route(f"{Q}/share", POST=queues.share_queue),
        route(f"{Q}/messages", GET=messages.get_messages, POST=messages.post_messages,
              DELETE=messages.delete_messages),
        route(f"{Q}/messages/{{message_id}}", GET=messages.get_message,
              DELETE=messages.delete_message),
        route(f"{Q}/claims", POST=claims.create_claim),
        route(f"{Q}/claims/{{claim_id}}", GET=claims.get_claim, PATCH=claims.update_claim,
              DELETE=claims.delete_claim),
        route(f"{Q}/subscriptions", GET=subscriptions.list_subscriptions,
              POST=subscriptions.create_subscription),
        route(f"{Q}/subscriptions/{{subscription_id}}", GET=subscriptions.get_subscription,
              PATCH=subscriptions.update_subscription,
              DELETE=subscriptions.delete_subscription),
        route(f"{Q}/subscriptions/{{subscription_id}}/confirm",
              PUT=subscriptions.confirm_subscription),
    ]
    if with_history:
        routes.append(route(f"{Q}/history", GET=history.queue_history))
    if admin_mode:
        routes.append(route("/v2/health", GET=system.health))
    if "2" not in api_versions:
        routes = [r for r in routes if not getattr(r, "path", "").startswith("/v2/")]
    for api in versions.enabled(api_versions):
        if api is not versions.V2:
            routes.extend(v1.routes(api, admin_mode))
    return routes


def create_app(settings: Settings, gateway: Gateway, *,
               history_reader: history.HistorySource | None = None,
               status: NodeStatus | None = None,
               metrics: Metrics | None = None,
               keystone: TokenValidator | None = None) -> Starlette:
    """The ASGI app. It starts nothing: the caller owns the log, runner and store.

    ``history_reader`` enables the admin history route; ``status`` adds per-partition detail
    to ``/v2/health`` and ``/metrics``. ``/metrics`` is always served (outside Zaqar's header
    checks, through ``Mount``), from a registry of this app's own. ``keystone`` validates
    tokens for ``auth = "keystone"`` (default: one built from the settings).
    """
    routes = build_routes(settings.admin_mode, with_history=history_reader is not None,
                          api_versions=settings.enable_api_versions)
    metrics = metrics or Metrics(status=status)
    metrics.require_token(settings.metrics_token)
    middleware = [
        Middleware(Mount, internal=metrics.endpoint, prefixes=("/metrics",)),
        Middleware(RequestMetrics, metrics=metrics, access_log=settings.access_log),
        Middleware(RequestId),
        Middleware(BodyTimeout, seconds=settings.body_timeout),
        Middleware(Auth, mode=settings.auth, tokens=settings.tokens,
                   secret_key=settings.secret_key,
                   keystone=keystone or validator_from(settings)),
        Middleware(Routing, routes=routes),
        # The header checks, in order, as one layer (service.middleware.Checks).
        Middleware(Checks, checks=[
            (PreSignedUrl, {"secret_key": settings.secret_key}),
            (FormEncodedRejection, {}),
            (AcceptJson, {}),
            (ClientId, {"mode": settings.client_id_uuid_safe,
                        "min_length": settings.min_length_client_id,
                        "max_length": settings.max_length_client_id}),
            (ProjectId, {}),
            (RateLimit, {"rate": settings.rate_limit, "burst": settings.rate_burst}),
            (QueueName, {}),
            (MethodCheck, {}),
        ]),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers=dict(EXCEPTION_HANDLERS))
    app.state.settings = settings
    app.state.gateway = gateway
    app.state.history = history_reader
    app.state.status = status
    app.state.metrics = metrics
    return app
