"""``create_app``: the routes of Zaqar v2 and the middleware that runs before them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import BaseRoute

from service import (
    claims,
    history,
    messages,
    openapi,
    queues,
    subscriptions,
    system,
    topics,
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
from service.routing import PrematchedRouter, route
from service.types import ASGIApp, Gateway

if TYPE_CHECKING:
    from ops.settings import Settings

API_VERSIONS = versions.IDS

Q = "/v2/queues/{queue_name}"


def build_routes(admin_mode: bool, *, with_history: bool = False,
                 api_versions: Sequence[str] = API_VERSIONS) -> list[BaseRoute]:
    """Every routed path. Pools and flavors are not routed: they answer 404 (pooling is off —
    zaqar-api.md §9); topics are queues of another kind (service/topics.py). The history route is
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
    routes += topic_routes()
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


def topic_routes() -> list[BaseRoute]:
    """``/v2/topics``: the queue handlers on a topic's internal queue (service/topics.py)."""
    T, on = topics.T, topics.on_topic

    async def list_topics(request):  # type: ignore[no-untyped-def]
        return await queues.list_names(request, topics=True)

    return [
        route("/v2/topics", GET=list_topics),
        route(T, GET=topics.with_topic_metadata(queues.get_queue), PUT=on(queues.create_queue),
              PATCH=topics.with_topic_metadata(queues.update_queue),
              DELETE=on(queues.delete_queue)),
        route(f"{T}/stats", GET=on(queues.queue_stats)),
        route(f"{T}/purge", POST=on(queues.purge_queue)),
        route(f"{T}/messages", GET=on(messages.get_messages), POST=on(messages.post_messages),
              DELETE=on(messages.delete_messages)),
        route(f"{T}/messages/{{message_id}}", GET=on(messages.get_message),
              DELETE=on(messages.delete_message)),
        route(f"{T}/subscriptions", GET=on(subscriptions.list_subscriptions),
              POST=on(subscriptions.create_subscription)),
        route(f"{T}/subscriptions/{{subscription_id}}",
              GET=on(subscriptions.get_subscription),
              PATCH=on(subscriptions.update_subscription),
              DELETE=on(subscriptions.delete_subscription)),
        route(f"{T}/subscriptions/{{subscription_id}}/confirm",
              PUT=on(subscriptions.confirm_subscription)),
    ]


class AppState(State):
    """``app.state`` with plain attributes. Starlette's ``State`` keeps them in a dict behind
    ``__getattr__``: a Python call on each read, and handlers read the settings and the
    gateway several times per request. (A missing one still raises ``AttributeError``.)"""

    def __setattr__(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)

    def __delattr__(self, key: str) -> None:
        object.__delattr__(self, key)


class Api(Starlette):
    """Starlette with ``AppState`` and without ``ExceptionMiddleware``: ``Resource`` renders
    the handlers' errors where they are raised (``service.errors.rendered``), and no layer
    between it and the routing middleware raises one; that middleware cost every request a
    ``send`` wrapper, a ``Request`` and a frame. ``ServerErrorMiddleware`` stays outermost
    (a 500 for an error outside ``RequestId``). The innermost layer is the router's own
    stack (its ``app``: it has no middleware), not the router, whose ``__call__`` only
    awaits that: one frame fewer per request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = AppState()

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = self.router.middleware_stack
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return ServerErrorMiddleware(app, debug=self.debug)


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
    app = Api(routes=routes, middleware=middleware,
              exception_handlers=dict(EXCEPTION_HANDLERS))
    app.router = PrematchedRouter(routes=routes)  # Routing matched already: once per request
    app.state.settings = settings
    app.state.gateway = gateway
    app.state.history = history_reader
    app.state.status = status
    app.state.metrics = metrics
    return app
