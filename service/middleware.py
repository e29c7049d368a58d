"""The request pipeline before a handler runs, one ASGI class per concern (zaqar-api.md §1.2).

Order (outermost first), as ``create_app`` installs it — after ``Mount`` (``/metrics``, no
Zaqar checks) and ``service.metrics.RequestMetrics`` (counts and times every request, writes
the access log line):

1. ``RequestId`` — ``x-openstack-request-id`` on every response (and in every log line
   written meanwhile, via ``request_id_var``); unknown errors become 500. The only layer
   that wraps ``send``: it records the response status for the others (``RESPONSE_STATUS``).
   (``service.bodytimeout.BodyTimeout`` follows: 408 for a body trickled past its deadline.)
2. ``Auth`` — static tokens (401) or noauth's X-Roles; ``/`` is open; a request carrying
   ``URL-Signature`` is authenticated by a valid signature only (else 404), in every mode.
   It wraps everything else, like keystonemiddleware wraps Zaqar (§1.2).
3. ``Routing`` — 404 for unknown paths, 200 + ``Allow`` for OPTIONS (no checks, §1.1); it
   records the route template (``state["route"]``) that labels metrics.
4. ``PreSignedUrl`` — a ``URL-Signature`` that ``Auth`` did not verify is 404 (defence in
   depth: no auth mode can pass one on).
5. ``FormEncodedRejection`` — 400 for form bodies.
6. ``AcceptJson`` — 406 with an empty body.
7. ``ClientId`` — required, UUID in strict mode (v1.0: optional, a UUID when present).
8. ``ProjectId`` — X-Project-ID required and non-empty (v1.0: missing = global namespace).
   (``service.ratelimit.RateLimit`` follows: 429 for a project over its request rate.)
9. ``QueueName`` — name and project length on routes with ``{queue_name}``.
10. ``MethodCheck`` — 405 with ``Allow`` for a known path and an unsupported method.

What a check learns (project, client id, roles, path parameters) goes to ``scope["state"]``,
which Starlette exposes as ``request.state``.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette._utils import get_route_path  # the path routes match (root_path off)
from starlette.convertors import StringConvertor
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from projections.ids import new_id
from service import signing
from service.errors import INTERNAL, error_response, route_not_found
from service.headers import RequestHeaders, request_headers
from service.routing import MATCHED, Resource, method_not_allowed
from service.types import ASGIApp, Message, Receive, Scope, Send
from service.validation import valid_project, valid_queue_name
from service.versions import GLOBAL_PROJECT

if TYPE_CHECKING:
    from service.keystone import TokenValidator

logger = logging.getLogger(__name__)

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
ROOT = "/"

# The id of the request being served, for log lines written anywhere beneath it
# (``ops.logs`` adds it to every record). Each request runs in its own task and context.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "marconi_request_id", default=None)


# Request state: the status of the response once it has started. ``RequestId`` is the one
# layer that wraps ``send`` (it adds its header); the layers that need to know whether, or
# with what status, a response started (``RequestMetrics``, ``BodyTimeout``) read this
# instead of each wrapping ``send`` again.
RESPONSE_STATUS = "response_status"


def state(scope: Scope) -> dict[str, Any]:
    """The per-request state dict (``request.state`` in handlers). The layers inside
    ``RequestMetrics`` (outermost but ``Mount``: it sets it) read ``scope["state"]`` straight."""
    return scope.setdefault("state", {})


class _Check:
    """A middleware that may answer instead of passing the request on; http only.

    ``active`` False: with its options it never answers (``Checks`` leaves it out)."""

    active = True

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = self.check(scope, request_headers(scope))
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        raise NotImplementedError


class Checks:
    """Several ``_Check`` s in one ASGI layer, in order, sharing one ``Headers`` of the request.

    Each check stays its own class with its own rules; this only saves the per-layer cost
    (a coroutine frame and a ``Headers`` per check per request) on the hot path, and skips
    the checks that are off (``active`` False: the rate limit without a rate).
    ``checks`` is ``[(cls, options), ...]``, built like ``Middleware(cls, **options)``.
    """

    def __init__(self, app: ASGIApp, *, checks: Sequence[tuple[type[_Check], dict[str, Any]]],
                 **options: Any) -> None:
        self.app = app
        self.checks = [one for one in (cls(app, **opts) for cls, opts in checks) if one.active]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = request_headers(scope)
            for one in self.checks:
                response = one.check(scope, headers)
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def new_request_id() -> str:
    """``req-<uuid>``: a ``new_id`` (a version-7 UUID) with the dashes of a UUID's text."""
    x = new_id()
    return f"req-{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class RequestId:
    """Tags every response with ``x-openstack-request-id`` and never lets an error escape.

    An unexpected exception becomes ``500 {"title": "Internal server error"}`` and a log
    line carrying the request id, so an operator can find the traceback of a report.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        st = scope["state"]
        st["request_id"] = request_id
        token = request_id_var.set(request_id)
        header = (b"x-openstack-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                st[RESPONSE_STATUS] = int(message["status"])
                message["headers"] = [*message.get("headers", ()), header]  # a list of its own
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            logger.info("%s: client disconnected", request_id)
        except Exception as exc:
            logger.exception("%s: %s %s failed", request_id, scope.get("method"),
                             scope.get("path"))
            if RESPONSE_STATUS not in st:
                response = error_response(500, INTERNAL, str(exc) or type(exc).__name__)
                await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class Routing:
    """404 for paths no route knows; OPTIONS answered from the route's methods (§1.1)."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], **options: Any) -> None:
        self.app = app
        self.routes = routes
        self.candidates = RoutesBySlashes(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self.candidates.match(scope)
        if found is None:
            await route_not_found()(scope, receive, send)
            return
        template, resource, params, matched = found
        st = scope["state"]
        st["route"] = template
        if scope["method"] == "OPTIONS":
            await Response(status_code=200, headers={"Allow": resource.allow_header})(
                scope, receive, send)
            return
        st["allowed"] = resource.allowed_methods
        st["path_params"] = params
        st["api"] = resource.api  # the version's pipeline rules (None: v2's)
        st[MATCHED] = matched  # PrematchedRouter handles it without matching again
        await self.app(scope, receive, send)


class RoutesBySlashes:
    """The routes that can match a path, by its number of ``/``, its first two segments and
    its last one: a ``{param}`` matches no ``/``, so ``/v2/queues/{queue_name}/messages``
    only ever matches paths with four ``/`` that start ``/v2/queues/`` and end ``/messages``
    (a route whose last segment has a parameter is a candidate whatever that segment is).
    Routes this cannot tell about (other convertors, a parameter in the first two segments,
    mounts) are candidates for every path; each list keeps the routes' order, so the first
    match is the one a scan of all routes finds — and on the hot paths, the only one tried.

    ``match`` tries a plain route of a ``Resource`` with its pattern alone: for such a route
    ``Route.matches`` only adds calls around it (the route path read again, convertors that
    return the text unchanged, a copy of the parameters, the method check of a route that has
    no methods) — eight of them per request. Any other route is asked through ``matches``."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        known = {id(r): _key(r.path) for r in routes if isinstance(r, Route) and _indexable(r)}
        last = {id(r): _literal_last(r.path) for r in routes if id(r) in known}
        self._any = [_candidate(r) for r in routes if id(r) not in known]
        self._by_key: dict[tuple[int, tuple[str, ...]],
                           tuple[dict[str, list[_Candidate]], list[_Candidate]]] = {}
        for key in set(known.values()):
            bucket = [r for r in routes if known.get(id(r), key) == key]
            ends = {last[id(r)] for r in bucket if last.get(id(r)) is not None}
            by_end = {end: [_candidate(r) for r in bucket if last.get(id(r)) in (None, end)]
                      for end in ends if end is not None}
            self._by_key[key] = (by_end,
                                 [_candidate(r) for r in bucket if last.get(id(r)) is None])

    def of(self, path: str) -> Sequence[BaseRoute]:
        """The routes tried for ``path``, in order."""
        return [route for route, _ in self._candidates(path)]

    def _candidates(self, path: str) -> Sequence[_Candidate]:
        # a pattern's ``$`` also matches before one final newline: the key ignores it
        path = path[:-1] if path.endswith("\n") else path
        found = self._by_key.get((path.count("/"), tuple(path.split("/", 3)[1:3])))  # _key(path)
        if found is None:
            return self._any
        by_end, any_end = found
        return by_end.get(path.rsplit("/", 1)[-1], any_end)

    def match(self, scope: Scope) -> Matched | None:
        """What ``_match`` of every route finds for the request (None: 404)."""
        path = get_route_path(scope) if scope.get("root_path") else scope["path"]
        for route, pattern in self._candidates(path):
            if pattern is None:
                found = _match((route,), scope)
                if found is not None:
                    return found
                continue
            m = pattern.match(path)
            if m is not None:
                params = m.groupdict()
                if "path_params" in scope:  # as ``Route.matches`` merges them
                    params = {**scope["path_params"], **params}
                resource = route.endpoint  # type: ignore[attr-defined]
                return (route.path,  # type: ignore[attr-defined]
                        resource, params,
                        (route, {"endpoint": resource, "path_params": params}))
        return None


# A route and, when ``Route.matches`` of it is its pattern's match and nothing more, that
# pattern (``RoutesBySlashes.match``).
_Candidate = tuple[BaseRoute, re.Pattern[str] | None]
# (template, resource, path parameters, (route, child scope)): what a request path names
Matched = tuple[str, Resource, dict, tuple[BaseRoute, dict]]


def _candidate(route: BaseRoute) -> _Candidate:
    plain = (type(route) is Route and isinstance(route.endpoint, Resource)
             and route.methods is None and all(type(c) is StringConvertor
                                               for c in route.param_convertors.values()))
    return route, route.path_regex if plain else None  # type: ignore[attr-defined]


def _key(path: str) -> tuple[int, tuple[str, ...]]:
    return path.count("/"), tuple(path.split("/", 3)[1:3])


def _literal_last(template: str) -> str | None:
    """A template's last segment when it has no parameter (None when it has)."""
    end = template.rsplit("/", 1)[-1]
    return None if "{" in end else end


def _indexable(route: Route) -> bool:
    return (type(route) is Route
            and all(type(c) is StringConvertor for c in route.param_convertors.values())
            and "{" not in "/".join(route.path.split("/", 3)[1:3]))


def _match(routes: Sequence[BaseRoute], scope: Scope) -> Matched | None:
    """The route template, resource, path parameters and (route, child scope) of a request
    path (None: 404).

    Like ``service.routing.match`` plus the template, which labels metrics and logs."""
    for candidate in routes:
        found, child = candidate.matches(scope)
        if found is not Match.NONE and isinstance(child.get("endpoint"), Resource):
            template = candidate.path if isinstance(candidate, Route) else UNMATCHED
            return template, child["endpoint"], child.get("path_params", {}), (candidate, child)
    return None


UNMATCHED = "unmatched"


def _replace_header(scope: Scope, name: bytes, value: str) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k != name]
    headers.append((name, value.encode("latin-1")))
    return {**scope, "headers": headers}


class Auth:
    """Who the caller is, before anything else looks at the request (§1.2, §7).

    * ``GET /`` (version discovery) is open.
    * A request carrying ``URL-Signature`` — present at all, even empty — is authenticated by
      that signature alone, in every mode: it must verify (``signing.verify``) or the answer
      is 404. It gets no roles.
    * Otherwise the mode decides (``authenticate_<mode>``): ``"none"`` trusts X-Roles like
      upstream without Keystone; ``"token"`` wants a configured X-Auth-Token (else 401) whose
      project, when it has one, replaces X-Project-ID and whose roles replace X-Roles.

    A mode is one method taking ``(scope, headers)`` and returning the scope to pass on or a
    response to answer with; another mode plugs in as another method.
    """

    def __init__(self, app: ASGIApp, *, mode: str = "none",
                 tokens: Mapping[str, Any] | None = None, secret_key: str | None = None,
                 keystone: TokenValidator | None = None, **options: Any) -> None:
        self.app = app
        self.mode = mode
        self.tokens = dict(tokens or {})
        self.secret_key = secret_key
        self.keystone = keystone  # auth = "keystone" (service/keystone.py)
        authenticate = getattr(self, f"authenticate_{mode}", None)
        if authenticate is None:
            raise ValueError(f"unknown auth mode {mode!r}")
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = request_headers(scope)
        st = scope["state"]
        st["roles"] = []
        st["signed"] = False
        if scope["path"] == ROOT:
            await self.app(scope, receive, send)
            return
        if "url-signature" in headers.first:
            if not signed_request_valid(scope, headers, self.secret_key):
                await route_not_found()(scope, receive, send)
                return
            st["signed"] = True
            await self.app(scope, receive, send)
            return
        outcome = await self.authenticate(scope, headers)
        if isinstance(outcome, Response):
            await outcome(scope, receive, send)
            return
        await self.app(outcome, receive, send)

    async def authenticate_none(self, scope: Scope, headers: RequestHeaders) -> Scope | Response:
        raw = headers.first.get("x-roles")
        if raw:
            scope["state"]["roles"] = _roles(raw)
        return scope

    async def authenticate_token(self, scope: Scope, headers: Headers) -> Scope | Response:
        grant = self.tokens.get(headers.get("x-auth-token", ""))
        if grant is None or not (grant.project or grant.any_project):
            return unauthorized()
        state(scope)["roles"] = [r.lower() for r in grant.roles]
        if grant.project:
            scope = _replace_header(scope, b"x-project-id", grant.project)
        return scope

    async def authenticate_keystone(self, scope: Scope, headers: Headers) -> Scope | Response:
        """The token's project and roles, as Keystone validated them (service/keystone.py)."""
        assert self.keystone is not None, 'auth = "keystone" needs a TokenValidator'
        found = await self.keystone.authenticate(headers)
        if isinstance(found, Response):
            return found
        state(scope)["roles"] = list(found.roles)
        assert found.project is not None
        return _replace_header(scope, b"x-project-id", found.project)


def unauthorized() -> Response:
    """401 as keystonemiddleware answers it."""
    return error_response(
        401, "Unauthorized", "The request you have made requires authentication.",
        {"WWW-Authenticate": "Token"})


def _roles(raw: str) -> list[str]:
    return [role.strip().lower() for role in raw.split(",") if role.strip()]


def signed_request_valid(scope: Scope, headers: Headers, secret_key: str | None) -> bool:
    """Whether the request's ``URL-*`` headers are a valid, unexpired share for it."""
    return signing.verify(
        secret_key, method=scope["method"], path=scope["path"],
        project=headers.get("x-project-id"), signature_header=headers.get("url-signature", ""),
        expires_header=headers.get("url-expires"),
        methods_header=headers.get("url-methods", ""),
        paths_header=headers.get("url-paths", ""),
        now=datetime.now(UTC).replace(tzinfo=None))


class PreSignedUrl(_Check):
    """Second line behind ``Auth``: a request carrying ``URL-Signature`` that ``Auth`` did not
    mark as verified is 404 (§7), so no auth mode can let an unverified signature through."""

    def __init__(self, app: ASGIApp, *, secret_key: str | None = None, **options: Any) -> None:
        super().__init__(app)
        self.secret_key = secret_key

    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        if "url-signature" not in headers.first:
            return None
        st = scope["state"]
        if st.get("signed") and signed_request_valid(scope, headers, self.secret_key):
            return None
        st["signed"] = False
        return route_not_found()


class FormEncodedRejection(_Check):
    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        found = headers.first
        media_type = found.get("content-type", "").split(";", 1)[0].strip().lower()
        if "content-length" in found and media_type == FORM_MEDIA_TYPE:
            return error_response(
                400, "Invalid Content-Type",
                "Endpoint does not accept `application/x-www-form-urlencoded` content; "
                "currently supported media type is `application/json`; specify proper "
                'client-side media type with the "Content-Type" header.')
        return None


def accepts_json(accept: str | None) -> bool:
    """Whether an Accept header admits application/json: the most specific matching range
    decides, and its q must be above zero (falcon's ``client_accepts``)."""
    if accept is None or not accept.strip():
        return True
    best: tuple[int, float] | None = None
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if "/" not in media:
            return False
        kind, _, sub = media.partition("/")
        quality = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    return False
        if (kind, sub) == ("application", "json"):
            fitness = 2
        elif (kind, sub) == ("application", "*"):
            fitness = 1
        elif (kind, sub) == ("*", "*"):
            fitness = 0
        else:
            continue
        if best is None or fitness > best[0]:
            best = (fitness, quality)
    return best is not None and best[1] > 0


class AcceptJson(_Check):
    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        accept = headers.first.get("accept")
        if accept is None or accepts_json(accept):
            return None
        return error_response(406, None)


class ClientId(_Check):
    """Client-ID is required on every /v2 request; strict mode wants a UUID (§1.2 step 4).

    The value kept for echo filtering is canonical in strict mode, so two spellings of one
    UUID are the same client (§10.7).
    """

    def __init__(self, app: ASGIApp, *, mode: str = "strict", min_length: int = 10,
                 max_length: int = 36, **options: Any) -> None:
        super().__init__(app)
        self.mode = mode
        self.min_length = min_length
        self.max_length = max_length

    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        if scope["path"] == ROOT:
            return None
        raw = headers.first.get("client-id")
        st = scope["state"]
        api = st.get("api")
        optional = api is not None and not api.client_id_required  # v1.0: UUID if present
        if raw is None and optional:
            return None
        if not raw and not optional:
            return error_response(400, "Missing header value",
                                  'The "Client-Id" header is required.')
        if self.mode == "strict" or optional:
            canonical = canonical_uuid(raw)
            if canonical is None:
                return error_response(400, "Wrong UUID value", "Malformed hexadecimal UUID.")
            client_id = canonical
        else:
            if not self.min_length <= len(raw) <= self.max_length:
                return error_response(
                    400, f"Length of client id must be at least {self.min_length} and no "
                         f"greater than {self.max_length}.")
            client_id = raw
        st["client_id"] = client_id
        return None


@functools.lru_cache(maxsize=4096)
def canonical_uuid(raw: str) -> str | None:
    """The canonical text of a UUID in any spelling ``uuid.UUID`` reads, None if it is not
    one. Cached: a client sends the same Client-ID on every request (bounded, LRU)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


class ProjectId(_Check):
    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        if scope["path"] == ROOT:
            return None
        project = headers.first.get("x-project-id")
        st = scope["state"]
        api = st.get("api")
        if project is None and api is not None and not api.project_required:
            st["project"] = GLOBAL_PROJECT  # v1.0's namespace without a project
            return None
        if project is None:
            return error_response(400, "Project-Id Missing",
                                  "The header X-PROJECT-ID was missing")
        if project == "":
            return error_response(
                400, "Empty project header not allowed",
                "X-PROJECT-ID cannot be an empty string. Specify the right header "
                "X-PROJECT-ID and retry.")
        st["project"] = project
        return None


class QueueName(_Check):
    """Queue name rules and project length, only where the path names a queue (§1.2 step 6)."""

    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        st = scope["state"]
        params = st.get("path_params", {})
        kind, name = "queue", params.get("queue_name")
        if name is None:  # topics have the same rules in their own words (§8.13)
            kind, name = "topic", params.get("topic_name")
        if name is None:
            return None
        if valid_queue_name(name) and valid_project(st.get("project", "")):
            return None
        return error_response(
            400, f"Invalid {kind} identification",
            f"The format of the submitted {kind} name or project id is not valid.")


class MethodCheck(_Check):
    """405 + Allow for a known path and a method it does not serve (after the checks)."""

    def check(self, scope: Scope, headers: RequestHeaders) -> Response | None:
        allowed = scope["state"].get("allowed")
        if allowed is None or scope["method"] in allowed:
            return None
        return method_not_allowed(allowed)
