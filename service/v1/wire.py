"""The v1.x wire format: request bodies in, resources out, by the rules of ``ApiVersion``.

Parsing follows upstream's ``sanitize`` specs (fields checked in spec order: ``ttl`` before
``body``, ``ttl`` before ``grace``), then its validator, with the texts v2 uses too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from projections.queries import Message
from service import render
from service.context import settings
from service.errors import HTTPError, bad_body, bad_request
from service.responses import JSONResponse, empty
from service.validation import (
    MIN_CLAIM_GRACE,
    WRONG_DOCUMENT,
    claim_ttl,
    int_field,
    message_ttl,
    require_object,
)
from service.versions import V2, ApiVersion

if TYPE_CHECKING:
    from ops.settings import Settings


def api(request: Request) -> ApiVersion:
    """The version of the route serving the request (set by the routing middleware)."""
    return getattr(request.state, "api", None) or V2


def require_client_id(request: Request) -> None:
    """v1.0 handlers that echo-filter or tag messages still need a Client-ID."""
    if getattr(request.state, "client_id", None) is None:
        raise HTTPError(400, "Missing header value", 'The "Client-Id" header is required.')


# -- responses -----------------------------------------------------------------------------


def _location_headers(request: Request, *, query: bool) -> dict[str, str]:
    if not api(request).content_location:
        return {}
    path = request.url.path
    if query and request.url.query:
        path = f"{path}?{request.url.query}"
    return {"Content-Location": path}


def read(request: Request, body: Any, *, query: bool = False) -> Response:
    """A 200 read, with Content-Location in v1.0 (the path, and the query if ``query``)."""
    return JSONResponse(body, headers=_location_headers(request, query=query))


def nothing(request: Request, *, query: bool = False) -> Response:
    """v1.0's 204 for an empty listing or bulk get."""
    return empty(204, _location_headers(request, query=query))


def next_link(path: str, params: list[tuple[str, Any]], marker: str) -> list[dict[str, str]]:
    """Upstream's ``path + to_query_str(kwargs)``: the given params in order, bools as
    true/false, the new marker in place of the old one (or last)."""
    if any(k == "marker" for k, _ in params):
        params = [(k, marker if k == "marker" else val) for k, val in params]
    else:
        params = [*params, ("marker", marker)]
    return render.next_link(path, [
        (k, render.bool_text(v) if isinstance(v, bool) else str(v)) for k, v in params])


# -- resources -----------------------------------------------------------------------------


def message(request: Request, m: Message, *, claim_id: str | None = None,
            listed: bool = True) -> dict[str, Any]:
    """A message in this version's shape. ``listed``: from a listing or get, where v1.0's
    href leaves the claim out; claim responses pass their ``claim_id``."""
    v = api(request)
    queue = str(request.path_params["queue_name"])
    cid = claim_id if claim_id is not None else (m.claim_id if v.listed_claim_ids else None)
    out: dict[str, Any] = {"href": render.message_href(queue, m.id, cid, v.prefix),
                           "ttl": m.ttl, "age": m.age, "body": m.body}
    if v.message_ids:
        out = {"id": m.id, **out}
    if v.checksums and settings(request).enable_checksum:
        out["checksum"] = render.checksum(m.body)
    return out


def snapshot(request: Request, snap: dict[str, Any], now: int, claim_id: str) -> dict[str, Any]:
    """A claimed message as the claim outcome recorded it."""
    m = Message(id=snap["id"], body=snap["body"], ttl=snap["ttl"],
                age=max(0, (now - snap["c"]) // 1000), created=snap["c"], claim_id=claim_id,
                seq=0)
    return message(request, m, claim_id=claim_id)


# -- request bodies ------------------------------------------------------------------------


def posted_messages(v: ApiVersion, doc: Any, s: Settings) -> list[tuple[Any, int, int]]:
    """A v1.x message post as ``(body, ttl, delay=0)``: v1.0 a bare array with a ttl on
    every message, v1.1 ``{"messages": [...]}`` with ttl defaulting to the setting.

    The queue's reserved keys do not shape a v1.x post (upstream's v1.x transports never
    read them): the ttl is always given and ``delay`` is always 0.
    """
    if v.bare_arrays:
        items = doc
    else:
        if not isinstance(doc, dict) or "messages" not in doc:
            raise bad_request("No messages were found in the request body.")
        items = doc["messages"]
    if not isinstance(items, list):
        raise bad_body(WRONG_DOCUMENT)
    out: list[tuple[Any, int]] = []
    for item in items:
        if not isinstance(item, dict):
            raise bad_body(WRONG_DOCUMENT)
        if v.ttl_required and "ttl" not in item:
            raise bad_body('Missing "ttl" field.')
        ttl = int_field(item, "ttl", s.default_message_ttl)
        if "body" not in item:
            raise bad_body('Missing "body" field.')
        out.append((item["body"], ttl))
    if not out:
        raise bad_request("No messages to enqueu.")
    for _, ttl in out:
        message_ttl(ttl, s)
    return [(body, ttl, 0) for body, ttl in out]


def _claim_field(v: ApiVersion, doc: dict[str, Any], name: str, default: int) -> int:
    if v.claim_body_required and name not in doc:
        raise bad_body(f'Missing "{name}" field.')
    return int_field(doc, name, default)


def claim_create(v: ApiVersion, doc: Any | None, s: Settings,
                 limit: int | None) -> tuple[int, int]:
    """Claim POST: v1.0 needs a body with ttl and grace; v1.1 defaults each. Checked like
    upstream's ``claim_creation``: ttl, then the limit, then grace."""
    if doc is None and not v.claim_body_required:
        doc = {}
    doc = require_object(doc)
    ttl = _claim_field(v, doc, "ttl", s.default_claim_ttl)
    grace = _claim_field(v, doc, "grace", s.default_claim_grace)
    claim_ttl(ttl, s)
    if limit is not None and not 1 <= limit <= s.max_messages_per_claim_or_pop:
        raise bad_request("Limit must be at least 1 and may not be greater than "
                          f"{s.max_messages_per_claim_or_pop}.")
    if not MIN_CLAIM_GRACE <= grace <= s.max_claim_grace:
        raise bad_request(f"The grace for a claim may not exceed {s.max_claim_grace} "
                          f"seconds, and must be at least {MIN_CLAIM_GRACE} seconds long.")
    return ttl, grace


def claim_update(v: ApiVersion, doc: Any, s: Settings) -> tuple[int, int]:
    """Claim PATCH: ttl (required in v1.0) range-checked; grace defaults to 0 in v1.0."""
    doc = require_object(doc)
    ttl = claim_ttl(_claim_field(v, doc, "ttl", s.default_claim_ttl), s)
    default_grace = s.default_claim_grace if v.patch_grace_default is None \
        else v.patch_grace_default
    grace = int_field(doc, "grace", default_grace)
    return ttl, min(max(grace, 0), s.max_claim_grace)


def reserved_keys(metadata: dict[str, Any]) -> None:
    """v1.0 metadata may not set reserved (``_``) keys."""
    if any(str(key).startswith("_") for key in metadata):
        raise bad_request('Reserved queue attributes in metadata (which names start with "_") '
                          "can not be set in API v1.")


def link_params(names: Iterable[str], request: Request,
                typed: dict[str, Any]) -> list[tuple[str, Any]]:
    """The list parameters the request gave, in ``names`` order, with parsed values."""
    given = {k for k, v in request.query_params.multi_items() if v != ""}
    return [(name, typed[name]) for name in names if name in given]

