"""Routes of the API: one ``Resource`` per path with its handlers by method.

Starlette's ``Route`` adds HEAD to every GET route and answers 405 in its own format, while
Zaqar has no implicit HEAD and answers 404/405/OPTIONS with falcon's bodies (§1.1). So a
route's endpoint is a ``Resource`` (an ASGI app that accepts every method) and the routing
middleware decides 404, OPTIONS and — after the header checks — 405.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router

from service.errors import HTTPError, error_response, rendered
from service.types import Handler, Receive, Scope, Send

if TYPE_CHECKING:
    from service.versions import ApiVersion

METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class Resource:
    """The handlers of one path, by HTTP method, and the API version it belongs to
    (``None``: v2), whose rules the request pipeline applies (``service.versions``)."""

    def __init__(self, api: ApiVersion | None = None, **handlers: Handler) -> None:
        self.api = api
        self.handlers = {method.upper(): handler for method, handler in handlers.items()}
        order = {m: i for i, m in enumerate(METHOD_ORDER)}
        self._allowed = (*sorted(self.handlers, key=lambda m: order.get(m, 99)), "OPTIONS")
        self._allow = ", ".join(self._allowed)
        # ``allowed`` without the copy, for the routing middleware's per-request check (a
        # plain attribute: a property would be a call per request)
        self.allowed_methods: tuple[str, ...] = self._allowed

    @property
    def allowed(self) -> list[str]:
        """Methods in a stable order, plus OPTIONS (what ``Allow`` lists); a new list each
        time, from the tuple worked out once."""
        return list(self._allowed)

    @property
    def allow_header(self) -> str:
        return self._allow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["method"])
        if handler is None:  # the routing middleware answers first; kept for safety
            response = method_not_allowed(self.allowed)
        else:
            try:
                response = await handler(Request(scope, receive, send))
            except (HTTPError, HTTPException) as exc:  # what EXCEPTION_HANDLERS render
                response = rendered(exc)  # type: ignore[assignment]
        await response(scope, receive, send)


def route(path: str, api: ApiVersion | None = None, **handlers: Handler) -> Route:
    return Route(path, Resource(api, **handlers))


def method_not_allowed(allowed: Sequence[str]) -> Response:
    return error_response(405, "405 Method Not Allowed", None, {"Allow": ", ".join(allowed)})


def match(routes: Sequence[BaseRoute], scope: Scope) -> tuple[Resource, dict] | None:
    """The resource a request path names and its path parameters, or None (404)."""
    for candidate in routes:
        found, child = candidate.matches(scope)
        if found is not Match.NONE and isinstance(child.get("endpoint"), Resource):
            return child["endpoint"], child.get("path_params", {})
    return None


MATCHED = "matched"  # request state: (route, child scope) the routing middleware found


class PrematchedRouter(Router):
    """Starlette's router, except that the resource the routing middleware already matched
    (``state["matched"]``) is called directly rather than matched a second time. (A
    ``Route`` of a ``Resource`` has no methods of its own: its ``handle`` only calls it.)"""

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = scope.get("state", {}).pop(MATCHED, None) if scope["type"] == "http" else None
        if matched is None:
            await super().app(scope, receive, send)
            return
        _, child = matched
        scope.setdefault("router", self)
        scope.update(child)
        await child["endpoint"](scope, receive, send)

