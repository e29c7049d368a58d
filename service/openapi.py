"""The OpenAPI 3 document of the v2 API, built from one description and the app's routes.

Served at ``GET /v2/openapi.json`` through the same checks as every /v2 route (auth,
Client-ID, X-Project-ID): the house rule is that no route skips them, and the document shows
this deployment's limits and switches (admin mode, auth), which are no business of an
unauthenticated caller. It is built per app from the settings, so every request-body and
query-parameter bound is the very number validation enforces (``service/validation.py``);
``tests/service/test_openapi.py`` checks both the bounds and that the document names
exactly the routes and methods the app serves.

Only what JSON Schema can say is said: rules that depend on state (a delayed queue's delay
range, the PATCH result's re-validation, a queue's own ``_max_messages_post_size``) or on
several fields at once (``ids`` xor ``pop``) are in the operation descriptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from service.context import settings as settings_of
from service.history import MAX_LIMIT as HISTORY_MAX_LIMIT
from service.responses import JSONResponse
from service.routing import Resource
from service.validation import (
    FALSE_STRINGS,
    MIN_CLAIM_GRACE,
    MIN_CLAIM_TTL,
    MIN_MESSAGE_TTL,
    MIN_SUBSCRIPTION_TTL,
    PATCH_MEDIA_TYPE,
    PATCH_OPS,
    PROJECT_MAX,
    PURGE_TYPES,
    QUEUE_NAME_MAX,
    SHARE_PATHS,
    TRUE_STRINGS,
    body_cap,
)

if TYPE_CHECKING:
    from ops.settings import Settings

PATH = "/v2/openapi.json"
Q = "/v2/queues/{queue_name}"
JSON = "application/json"
QUEUE_NAME_PATTERN = r"^[a-zA-Z0-9_\-.]+$"
SHARE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Seconds a subscription ttl may reach so that now + ttl stays before year 9999.
SUBSCRIPTION_TTL_SAFE_MAX = 200 * 365 * 86400
INT64 = {"minimum": -(2**63), "maximum": 2**63 - 1}

Operation = dict[str, Any]
Builder = Callable[["Settings"], Operation]


# -- building blocks -----------------------------------------------------------------------


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _int(minimum: int, maximum: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _query(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


def _bool_query(name: str, description: str) -> dict[str, Any]:
    return _query(name, {"type": "string", "enum": [*TRUE_STRINGS, *FALSE_STRINGS]},
                  description)


def _limit(maximum: int, default: int) -> dict[str, Any]:
    return _query("limit", _int(1, maximum), f"Page size, 1..{maximum} (default {default}).")


def _marker(description: str) -> dict[str, Any]:
    return _query("marker", {"type": "string"}, description)


def _ids(name: str, maximum: int, description: str) -> dict[str, Any]:
    return _query(name, {"type": "array", "minItems": 1, "maxItems": maximum,
                         "items": {"type": "string", "minLength": 1, "pattern": "^[^,]+$"}},
                  description, style="form", explode=False)


def _body(schema: dict[str, Any], *, required: bool, media_type: str = JSON,
          max_bytes: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"required": required, "content": {media_type: {"schema": schema}}}
    if max_bytes is not None:
        body["description"] = f"At most {max_bytes} bytes."
        body["x-max-bytes"] = max_bytes
    return body


def _json(description: str, schema: dict[str, Any] | None = None,
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {JSON: {"schema": schema or {"type": "object"}}}}
    if headers:
        out["headers"] = headers
    return out


def _empty(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if headers:
        out["headers"] = headers
    return out


LOCATION = {"Location": {"description": "Relative path of the resource.",
                         "schema": {"type": "string"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {400: "Bad request: a check failed (see title and description).",
             401: "Missing or unknown X-Auth-Token (auth = token).",
             403: "Not authorized (role) or the message is claimed.",
             404: "Unknown path, missing resource, or a pre-signed URL that does not verify.",
             405: "Method not allowed on this path (see Allow).",
             406: "Accept does not admit application/json (empty body).",
             409: "Conflict.",
             415: "Unsupported media type.",
             503: "The log or the projection did not answer; retry (Retry-After)."}
    out: dict[str, Any] = {}
    for status in sorted({400, 404, 406, *statuses, 503}):
        if status == 406:
            out["406"] = {"description": texts[406]}
        else:
            out[str(status)] = {"description": texts[status],
                                "content": {JSON: {"schema": _ref("schemas", "Error")}}}
    return out


def _op(operation_id: str, summary: str, responses: dict[str, Any], *,
        parameters: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        errors: Iterable[int] = (), description: str | None = None,
        headers: bool = True) -> Operation:
    params: list[dict[str, Any]] = []
    if headers:
        params += [_ref("parameters", "ClientId"), _ref("parameters", "ProjectId")]
    params += parameters or []
    op: Operation = {"operationId": operation_id, "summary": summary, "parameters": params,
                     "responses": {**responses, **(_errors(*errors) if headers else {})}}
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = body
    return op


# -- schemas that carry limits -------------------------------------------------------------


def _retry_policy() -> dict[str, Any]:
    ints = ("retries_with_no_delay", "minimum_delay_retries", "minimum_delay",
            "maximum_delay", "maximum_delay_retries")
    return {"type": "object", "properties": {
        **{k: {"type": "integer", **INT64} for k in ints},
        "retry_backoff_function": {"type": "string",
                                   "enum": ["linear", "arithmetic", "exponential",
                                            "geometric"]},
        "ignore_subscription_override": {"type": "boolean"}}}


def queue_metadata_schema(s: Settings) -> dict[str, Any]:
    """Queue metadata: free-form keys plus the reserved ones with their bounds (§6)."""
    def nullable(schema: dict[str, Any]) -> dict[str, Any]:
        return {"oneOf": [schema, {"type": "null"}]}

    return {"type": "object", "properties": {
        "_max_messages_post_size": nullable(_int(1, s.max_messages_post_size)),
        "_default_message_ttl": nullable(_int(MIN_MESSAGE_TTL, s.max_message_ttl)),
        "_default_message_delay": nullable(_int(0, s.max_message_delay)),
        "_dead_letter_queue": nullable({"type": "string", "pattern": QUEUE_NAME_PATTERN,
                                        "maxLength": QUEUE_NAME_MAX}),
        "_dead_letter_queue_messages_ttl": nullable(_int(MIN_MESSAGE_TTL, s.max_message_ttl)),
        "_max_claim_count": nullable({"type": "integer", **INT64}),
        "_enable_encrypt_messages": nullable({"type": "boolean"}),
        "_retry_policy": _retry_policy(),
    }}


def messages_post_schema(s: Settings) -> dict[str, Any]:
    return {"type": "object", "required": ["messages"], "properties": {
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["body"], "properties": {
                "body": {"description": "Any JSON value."},
                "ttl": _int(MIN_MESSAGE_TTL, s.max_message_ttl),
                "delay": {**_int(0, s.max_message_delay),
                          "description": "Honoured only on a queue with a non-zero "
                                         "_default_message_delay; ignored otherwise."}}}}}}


def claim_create_schema(s: Settings) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "ttl": _int(MIN_CLAIM_TTL, s.max_claim_ttl),
        "grace": _int(MIN_CLAIM_GRACE, s.max_claim_grace)}}


def claim_update_schema(s: Settings) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "ttl": _int(MIN_CLAIM_TTL, s.max_claim_ttl),
        "grace": {"type": "integer", **INT64,
                  "description": f"Not range-checked; kept within 0..{s.max_claim_grace}."}}}


def subscription_schema(s: Settings, *, create: bool) -> dict[str, Any]:
    schemes = "|".join(t.replace("+", r"\+") for t in s.subscriber_types)
    schema: dict[str, Any] = {"type": "object", "properties": {
        "subscriber": {"type": "string", "pattern": f"^({schemes}):[^\\s]+$",
                       "description": f"A URI whose scheme is one of {list(s.subscriber_types)}."},
        "ttl": {**_int(MIN_SUBSCRIPTION_TTL, SUBSCRIPTION_TTL_SAFE_MAX),
                "description": "Seconds; now + ttl must be before year 9999."},
        "options": {"type": "object",
                    "properties": {"_retry_policy": _retry_policy()}}}}
    if create:
        schema["required"] = ["subscriber"]
    else:
        schema["minProperties"] = 1
    return schema


def share_schema() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": {
        "paths": {"type": "array", "minItems": 1,
                  "items": {"type": "string", "enum": sorted(SHARE_PATHS)}},
        "methods": {"type": "array", "minItems": 1,
                    "items": {"type": "string", "enum": list(SHARE_METHODS)}},
        "expires": {"type": "string", "format": "date-time",
                    "description": "ISO 8601, in the future; default now + 1 day."}}}


def patch_schema() -> dict[str, Any]:
    return {"type": "array", "items": {
        "type": "object", "required": ["op", "path"], "properties": {
            "op": {"type": "string", "enum": list(PATCH_OPS)},
            "path": {"type": "string", "pattern": "^/metadata/[^/~]+$"},
            "value": {"description": "Required for add and replace."}}}}


def purge_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["resource_types"], "properties": {
        "resource_types": {"type": "array",
                           "items": {"type": "string", "enum": sorted(PURGE_TYPES)}}}}


# -- the operations ------------------------------------------------------------------------


QUEUE = _path("queue_name", f"Queue name: {QUEUE_NAME_PATTERN}, at most {QUEUE_NAME_MAX}.")
QUEUE["schema"] = {"type": "string", "pattern": QUEUE_NAME_PATTERN, "minLength": 1,
                   "maxLength": QUEUE_NAME_MAX}
MESSAGE = _path("message_id", "Message id.")
CLAIM = _path("claim_id", "Claim id.")
SUBSCRIPTION = _path("subscription_id", "Subscription id.")
ROLES = {"name": "X-Roles", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "Comma-separated roles (auth = none); admin is required here."}


def _operations() -> dict[tuple[str, str], Builder]:
    """Every operation Marconi can serve, keyed by (route template, method)."""
    ops: dict[tuple[str, str], Builder] = {}

    def add(path: str, method: str) -> Callable[[Builder], Builder]:
        def register(builder: Builder) -> Builder:
            ops[(path, method)] = builder
            return builder
        return register

    @add("/", "GET")
    def _(s: Settings) -> Operation:
        return _op("versions", "Version discovery (no headers, no auth).", {
            "300": _json("The API versions."),
            "404": _json("A URL-Signature that does not verify.", _ref("schemas", "Error"))},
            headers=False)

    @add("/v2/", "GET")
    def _(s: Settings) -> Operation:
        return _op("homeDocument", "The v2 JSON-home document.", {"200": {
            "description": "JSON-home.",
            "content": {"application/json-home": {"schema": {"type": "object"}}}}})

    @add(PATH, "GET")
    def _(s: Settings) -> Operation:
        return _op("openapi", "This document.", {"200": _json("OpenAPI 3 document.")})

    for method in ("GET", "HEAD"):
        @add("/v2/ping", method)
        def _(s: Settings, method: str = method) -> Operation:
            return _op(f"ping{method.title()}", "Reachability of the log and projection.",
                       {"204": _empty("Reachable (HEAD: always)."),
                        "503": _empty("Not reachable (GET only).")})

    @add("/v2/health", "GET")
    def _(s: Settings) -> Operation:
        return _op("health", "A timed cycle of operations on a scratch queue (admin only).",
                   {"200": _json("Health detail.")}, parameters=[ROLES], errors=(403,))

    @add("/v2/queues", "GET")
    def _(s: Settings) -> Operation:
        return _op("listQueues", "List the project's queues, by name.", {
            "200": _json("A page of queues.", _ref("schemas", "QueueList"))},
            parameters=[_limit(s.max_queues_per_page, 10),
                        _marker("Queue name; the page starts after it."),
                        _bool_query("detailed", "Include each queue's metadata."),
                        _query("name", {"type": "string"}, "Substring of the queue name."),
                        _bool_query("with_count", "Add the number of queues.")],
            description="Any other query parameter filters on metadata[key] == value "
                        "(the value compared as an integer when it parses as one).")

    @add(Q, "GET")
    def _(s: Settings) -> Operation:
        return _op("getQueue", "Queue metadata with reserved defaults (200 even if absent).",
                   {"200": _json("Metadata.")}, parameters=[QUEUE])

    @add(Q, "PUT")
    def _(s: Settings) -> Operation:
        return _op("createQueue", "Create a queue (metadata kept only when it is new).", {
            "201": _empty("Created.", LOCATION), "204": _empty("Existed.", LOCATION)},
            parameters=[QUEUE],
            body=_body(queue_metadata_schema(s), required=False,
                       max_bytes=s.max_queue_metadata))

    @add(Q, "PATCH")
    def _(s: Settings) -> Operation:
        return _op("updateQueue", "Change metadata with a JSON-patch subset.", {
            "200": _json("The resulting metadata.")}, parameters=[QUEUE],
            body=_body(patch_schema(), required=True, media_type=PATCH_MEDIA_TYPE,
                       max_bytes=s.max_queue_metadata),
            errors=(404, 409, 415),
            description="The resulting metadata is validated like a PUT body; replace or "
                        "remove of a missing key is 409; the queue must exist (404).")

    @add(Q, "DELETE")
    def _(s: Settings) -> Operation:
        return _op("deleteQueue", "Delete a queue (idempotent).", {"204": _empty("Deleted.")},
                   parameters=[QUEUE])

    @add(f"{Q}/stats", "GET")
    def _(s: Settings) -> Operation:
        return _op("queueStats", "Message counts and oldest/newest.",
                   {"200": _json("Stats.")}, parameters=[QUEUE])

    @add(f"{Q}/purge", "POST")
    def _(s: Settings) -> Operation:
        return _op("purgeQueue", "Remove unclaimed messages and/or subscriptions.",
                   {"204": _empty("Purged.")}, parameters=[QUEUE],
                   body=_body(purge_schema(), required=False, max_bytes=body_cap(s)))

    @add(f"{Q}/share", "POST")
    def _(s: Settings) -> Operation:
        return _op("shareQueue", "Mint a pre-signed URL (needs secret_key).",
                   {"200": _json("The signed grant.")}, parameters=[QUEUE],
                   body=_body(share_schema(), required=True, max_bytes=body_cap(s)))

    @add(f"{Q}/messages", "GET")
    def _(s: Settings) -> Operation:
        return _op("listMessages", "A page of messages in queue order, or a set by ids.", {
            "200": _json("Messages.")}, parameters=[
                _limit(s.max_messages_per_page, 10),
                _marker("Opaque position; the page starts after it."),
                _bool_query("echo", "Include this Client-ID's own messages."),
                _bool_query("include_claimed", "Include claimed messages."),
                _bool_query("include_delayed", "Include messages still delayed."),
                _ids("ids", s.max_messages_per_page,
                     "Fetch these ids instead of a page (404 when none is found).")],
            errors=(404,))

    @add(f"{Q}/messages", "POST")
    def _(s: Settings) -> Operation:
        return _op("postMessages", "Post messages atomically (creates the queue).", {
            "201": _json("Hrefs of the new messages, in request order.", headers=LOCATION)},
            parameters=[QUEUE],
            body=_body(messages_post_schema(s), required=True,
                       max_bytes=s.max_messages_post_size),
            description="The size limit is also the queue's _max_messages_post_size.")

    @add(f"{Q}/messages", "DELETE")
    def _(s: Settings) -> Operation:
        params = [_ids("ids", s.max_messages_per_page, "Delete these ids, claimed or not."),
                  _query("pop", _int(1, s.max_messages_per_claim_or_pop),
                         "Remove and return up to this many unclaimed messages.")]
        if s.message_delete_with_claim_id:
            params.append(_ids("claim_ids", s.max_messages_per_page,
                               "Required with ids: delete only messages held by these."))
        return _op("deleteMessages", "Delete by ids, or pop.", {
            "200": _json("Popped messages."), "204": _empty("Deleted.")},
            parameters=params, description="Exactly one of ids and pop.")

    @add(f"{Q}/messages/{{message_id}}", "GET")
    def _(s: Settings) -> Operation:
        return _op("getMessage", "One message.", {"200": _json("The message.")},
                   parameters=[QUEUE, MESSAGE], errors=(404,))

    @add(f"{Q}/messages/{{message_id}}", "DELETE")
    def _(s: Settings) -> Operation:
        return _op("deleteMessage", "Delete one message (a claimed one needs its claim id).", {
            "204": _empty("Deleted or absent.")},
            parameters=[QUEUE, MESSAGE, _query("claim_id", {"type": "string"},
                                               "The live claim holding the message.")],
            errors=(403,))

    @add(f"{Q}/claims", "POST")
    def _(s: Settings) -> Operation:
        return _op("createClaim", "Claim up to limit messages.", {
            "201": _json("Claimed messages.", headers=LOCATION),
            "204": _empty("Nothing to claim.")},
            parameters=[QUEUE, _limit(s.max_messages_per_claim_or_pop, 10)],
            body=_body(claim_create_schema(s), required=False, max_bytes=body_cap(s)))

    @add(f"{Q}/claims/{{claim_id}}", "GET")
    def _(s: Settings) -> Operation:
        return _op("getClaim", "A live claim and its messages.", {"200": _json("The claim.")},
                   parameters=[QUEUE, CLAIM], errors=(404,))

    @add(f"{Q}/claims/{{claim_id}}", "PATCH")
    def _(s: Settings) -> Operation:
        return _op("updateClaim", "Renew a claim.", {"204": _empty("Renewed.")},
                   parameters=[QUEUE, CLAIM],
                   body=_body(claim_update_schema(s), required=True, max_bytes=body_cap(s)),
                   errors=(404,))

    @add(f"{Q}/claims/{{claim_id}}", "DELETE")
    def _(s: Settings) -> Operation:
        return _op("deleteClaim", "Release a claim (idempotent).", {"204": _empty("Released.")},
                   parameters=[QUEUE, CLAIM])

    @add(f"{Q}/subscriptions", "GET")
    def _(s: Settings) -> Operation:
        return _op("listSubscriptions", "A page of subscriptions, by id.", {
            "200": _json("Subscriptions.")},
            parameters=[QUEUE, _limit(s.max_subscriptions_per_page, 10),
                        _marker("Subscription id; the page starts after it.")])

    @add(f"{Q}/subscriptions", "POST")
    def _(s: Settings) -> Operation:
        return _op("createSubscription", "Subscribe (creates the queue).", {
            "201": _json("The subscription id.", headers=LOCATION)},
            parameters=[QUEUE],
            body=_body(subscription_schema(s, create=True), required=True,
                       max_bytes=body_cap(s)),
            errors=(409,), description="A body is required in substance: an absent body is "
                                       "400 Missing parameter subscriber. A queue has at most "
                                       f"{s.max_subscriptions_per_queue} live subscriptions "
                                       "(max_subscriptions_per_queue): one more is 400.")

    sub = f"{Q}/subscriptions/{{subscription_id}}"

    @add(sub, "GET")
    def _(s: Settings) -> Operation:
        return _op("getSubscription", "One subscription.", {"200": _json("The subscription.")},
                   parameters=[QUEUE, SUBSCRIPTION], errors=(404,))

    @add(sub, "PATCH")
    def _(s: Settings) -> Operation:
        return _op("updateSubscription", "Change subscriber, ttl or options.", {
            "204": _empty("Updated.", LOCATION)}, parameters=[QUEUE, SUBSCRIPTION],
            body=_body(subscription_schema(s, create=False), required=True,
                       max_bytes=body_cap(s)),
            errors=(404, 409))

    @add(sub, "DELETE")
    def _(s: Settings) -> Operation:
        return _op("deleteSubscription", "Delete a subscription (idempotent).",
                   {"204": _empty("Deleted.")}, parameters=[QUEUE, SUBSCRIPTION])

    @add(f"{sub}/confirm", "PUT")
    def _(s: Settings) -> Operation:
        return _op("confirmSubscription", "Confirm or unconfirm a subscription.", {
            "204": _empty("Done.", LOCATION)}, parameters=[QUEUE, SUBSCRIPTION],
            body=_body({"type": "object", "required": ["confirmed"],
                        "properties": {"confirmed": {"type": "boolean"}}},
                       required=True, max_bytes=body_cap(s)),
            errors=(404,))

    @add(f"{Q}/history", "GET")
    def _(s: Settings) -> Operation:
        return _op("queueHistory", "The queue's audited history (Marconi; admin only).", {
            "200": _json("A page of history entries.")},
            parameters=[QUEUE, ROLES, _limit(HISTORY_MAX_LIMIT, 20),
                        _query("marker", _int(0), "Log offset; the page starts after it.")],
            errors=(403,))

    ops.update(_topic_operations(ops))
    return ops


T = "/v2/topics/{topic_name}"
TOPIC = _path("topic_name", f"Topic name: {QUEUE_NAME_PATTERN}, at most {QUEUE_NAME_MAX}.")
# Queue routes that topics mirror (service/topics.py): no claims, share or history.
TOPIC_MIRRORED = ("", "/stats", "/purge", "/messages", "/messages/{message_id}",
                  "/subscriptions", "/subscriptions/{subscription_id}",
                  "/subscriptions/{subscription_id}/confirm")


def _topic_operations(ops: dict[tuple[str, str], Builder]) -> dict[tuple[str, str], Builder]:
    """The topic operations: each the queue operation with ``topic_name`` for ``queue_name``
    (a topic is a queue of another kind, service/topics.py)."""
    out: dict[tuple[str, str], Builder] = {}
    for (path, method), builder in ops.items():
        if not path.startswith(Q) or path[len(Q):] not in TOPIC_MIRRORED:
            continue

        def topic(s: Settings, builder: Builder = builder) -> Operation:
            op = builder(s)
            op["operationId"] = "topic" + op["operationId"][0].upper() + op["operationId"][1:]
            op["parameters"] = [TOPIC if p is QUEUE else p for p in op["parameters"]]
            return op

        out[(T + path[len(Q):], method)] = topic

    def list_topics(s: Settings) -> Operation:
        op = ops[("/v2/queues", "GET")](s)
        op.update(operationId="listTopics", summary="List the project's topics, by name.")
        op["responses"]["200"] = _json("A page of topics.", _ref("schemas", "TopicList"))
        return op

    out[("/v2/topics", "GET")] = list_topics
    return out


OPERATIONS = _operations()


# -- the document --------------------------------------------------------------------------


def served(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(template, method) of every operation the routes serve (OPTIONS is implicit)."""
    out: set[tuple[str, str]] = set()
    for candidate in routes:
        if isinstance(candidate, Route) and isinstance(candidate.endpoint, Resource):
            out.update((candidate.path, method) for method in candidate.endpoint.handlers)
    return out


def documented(path: str) -> bool:
    """Paths this document covers: discovery and v2 (other versions describe themselves)."""
    return path == "/" or path == "/v2/" or path.startswith("/v2/")


def _components(s: Settings) -> dict[str, Any]:
    error = {"type": "object", "required": ["title"], "additionalProperties": False,
             "properties": {"title": {"type": "string"}, "description": {"type": "string"}}}
    link = {"type": "object", "properties": {"rel": {"type": "string"},
                                             "href": {"type": "string"}}}
    components: dict[str, Any] = {
        "parameters": {
            "ClientId": {"name": "Client-ID", "in": "header", "required": True,
                         "description": "The client's id; a UUID unless "
                                        "client_id_uuid_safe = off.",
                         "schema": ({"type": "string", "format": "uuid"}
                                    if s.client_id_uuid_safe == "strict" else
                                    {"type": "string", "minLength": s.min_length_client_id,
                                     "maxLength": s.max_length_client_id})},
            "ProjectId": {"name": "X-Project-ID", "in": "header", "required": True,
                          "description": "The tenant; at most "
                                         f"{PROJECT_MAX} characters on queue routes.",
                          "schema": {"type": "string", "minLength": 1}},
        },
        "schemas": {
            "Error": error,
            "QueueList": {"type": "object", "required": ["queues", "links"], "properties": {
                "queues": {"type": "array", "items": {"type": "object"}},
                "links": {"type": "array", "items": link},
                "count": {"type": "integer"}}},
            "TopicList": {"type": "object", "required": ["topics", "links"], "properties": {
                "topics": {"type": "array", "items": {"type": "object"}},
                "links": {"type": "array", "items": link},
                "count": {"type": "integer"}}},
        },
    }
    if s.auth == "token":
        components["securitySchemes"] = {"token": {"type": "apiKey", "in": "header",
                                                   "name": "X-Auth-Token"}}
    return components


def build(s: Settings, routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document for an app with these settings and routes."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method in sorted(served(routes)):
        builder = OPERATIONS.get((path, method))
        if builder is None or not documented(path):
            continue
        operation = builder(s)
        if s.auth == "token" and path != "/":
            operation["security"] = [{"token": []}]
            operation["responses"].update(_errors(401))
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "Marconi (Zaqar v2 compatible)", "version": "2.0",
                 "description": "Errors are {\"title\", \"description\"} JSON (406 and HEAD "
                                "have empty bodies); every response carries "
                                "x-openstack-request-id. Pre-signed requests authenticate "
                                "with URL-Signature, URL-Expires, URL-Methods and URL-Paths."},
        "paths": paths,
        "components": _components(s),
    }


async def openapi_document(request: Request) -> Response:
    """``GET /v2/openapi.json``: built once per app, on first use."""
    app = request.app
    doc = getattr(app.state, "openapi", None)
    if doc is None:
        doc = build(settings_of(request), app.routes)
        app.state.openapi = doc
    return JSONResponse(doc)
