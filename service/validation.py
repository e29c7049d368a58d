"""Request validation: everything that depends only on the request and the settings.

Bad input must never reach the log (DESIGN.md §2.8), so every body, query parameter, limit
and name is checked here, before a command exists, with Zaqar's exact texts (zaqar-api.md
§1.4, §1.5, §2, §5, §8). Pure functions; they raise ``HTTPError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlparse

import orjson
from starlette.requests import ClientDisconnect, Request

from projections.metadata import Limits, validate
from service.errors import INVALID_PARAM, HTTPError, bad_body, bad_request
from service.headers import request_headers

if TYPE_CHECKING:
    from ops.settings import Settings

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

UNPARSEABLE = "Request body could not be parsed."
EMPTY_BODY = "Request body can not be empty"
TOO_LARGE_INT = "JSON contains integer that is too large."
WRONG_DOCUMENT = "Document type not supported."

QUEUE_NAME = re.compile(r"[a-zA-Z0-9_\-.]+")
QUEUE_NAME_MAX = 64
PROJECT_MAX = 256
MIN_MESSAGE_TTL = 60
MIN_CLAIM_TTL = 60
MIN_CLAIM_GRACE = 60
MIN_SUBSCRIPTION_TTL = 60
SUBSCRIPTION_TTL_MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, 999999)

TRUE_STRINGS = ("true", "True", "t", "yes", "y", "1", "on")
FALSE_STRINGS = ("false", "False", "f", "no", "n", "0", "off")

PATCH_MEDIA_TYPE = "application/openstack-messaging-v2.0-json-patch"
PATCH_OPS = ("add", "remove", "replace")
SHARE_KEYS = frozenset({"paths", "methods", "expires"})
SHARE_PATHS = frozenset({"messages", "subscriptions", "claims"})
PURGE_TYPES = frozenset({"messages", "subscriptions"})
SHARE_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

# Whole-document digit runs this long may hold an integer beyond int64 (19+ digits).
_LONG_DIGITS = re.compile(rb"[0-9]{19,}")


# -- bodies --------------------------------------------------------------------------------


def content_length(request: Request) -> int | None:
    """The Content-Length header as an int (None when absent or malformed)."""
    raw = request_headers(request.scope).first.get("content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


# Scope key: the body ``read_body`` read, whole. A request a front forwards to the core after
# its handler read the body (``service.remotegateway``) is sent with it, since ``receive``
# has nothing more to give.
BODY_READ = "marconi.body"


async def read_body(request: Request, limit: int, too_large: Callable[[], HTTPError]) -> bytes:
    """The request body, refusing more than ``limit`` bytes before and while reading it.

    Read from ``receive`` as ``Request.stream`` does (a disconnect is ``ClientDisconnect``),
    without its async generator: every body is read once, here, and the generator cost each
    request three more calls. Nothing reads a request's body after this; the body is kept
    in the scope (``BODY_READ``)."""
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise too_large()
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnect()
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    body = request.scope[BODY_READ] = b"".join(chunks)
    return body


def body_cap(settings: Settings) -> int:
    """Bytes accepted for bodies without a documented limit (claims, subscriptions, share)."""
    return max(settings.max_queue_metadata, settings.max_messages_post_size)


def body_too_large() -> HTTPError:
    return bad_body("Request body is too large.")


class _IntTooLarge(Exception):
    pass


def _checked_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:  # beyond Python's digit limit: certainly too large
        raise _IntTooLarge from exc
    if not INT64_MIN <= value <= INT64_MAX:
        raise _IntTooLarge
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON is nested too deeply (more than {MAX_JSON_DEPTH} levels)."


def json_depth_exceeds(doc: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``doc`` nests arrays/objects more than ``limit`` levels (iterative: no
    recursion, so no document can exhaust the stack here).

    One limit for every body (messages, metadata, PATCH values, subscription options), well
    below the 254 levels orjson can encode: whatever is accepted is stored and rendered back
    inside a few more levels of envelope (a queue list, a claim), so it is always readable.
    """
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def check_depth(doc: Any) -> Any:
    """``doc``, or 400 Invalid request body if it nests deeper than ``MAX_JSON_DEPTH``."""
    if json_depth_exceeds(doc):
        raise bad_body(TOO_DEEP)
    return doc


def parse_json(raw: bytes) -> Any:
    """A JSON object or array; every integer in signed 64-bit range (§1.4); at most
    ``MAX_JSON_DEPTH`` levels deep.

    orjson is fast but turns integers past 64 bits into floats silently, so a document with
    a run of 19+ digits is re-read by the stdlib parser with an integer range check.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_body(UNPARSEABLE) from None
    if _LONG_DIGITS.search(raw):
        try:
            doc = json.loads(raw, parse_int=_checked_int, parse_constant=_no_constants)
        except _IntTooLarge:
            raise bad_body(TOO_LARGE_INT) from None
        except (ValueError, RecursionError):
            raise bad_body(UNPARSEABLE) from None
    if not isinstance(doc, dict | list):
        raise bad_body(UNPARSEABLE)
    if raw.count(b"{") + raw.count(b"[") <= MAX_JSON_DEPTH:
        return doc  # fewer openings than the limit (counted in C): it cannot nest deeper
    return check_depth(doc)


def parse_required(raw: bytes, request: Request) -> Any:
    """A body the endpoint requires: empty is an error (two texts, like upstream)."""
    if not raw:
        declared = content_length(request)
        raise bad_body(UNPARSEABLE if declared is not None else EMPTY_BODY)
    return parse_json(raw)


def parse_optional(raw: bytes) -> Any | None:
    """A body the endpoint may go without: empty (or ``Content-Length: 0``) is None."""
    return None if not raw else parse_json(raw)


def require_object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise bad_body(WRONG_DOCUMENT)
    return doc


def int_field(doc: dict[str, Any], name: str, default: int) -> int:
    """An integer field: JSON ``true`` passes as 1 (upstream), floats and null do not."""
    if name not in doc:
        return default
    value = doc[name]
    if not isinstance(value, int):
        raise bad_body(f'The value of the "{name}" field must be a int.')
    return int(value)


# -- query strings -------------------------------------------------------------------------


class Query:
    """Query parameters with falcon's rules (§1.5): blanks are absent, lists split on commas."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in items:
            if value != "":
                self._values.setdefault(key, []).append(value)

    def names(self) -> list[str]:
        return list(self._values)

    def has(self, name: str) -> bool:
        return name in self._values

    def str(self, name: str) -> str | None:
        values = self._values.get(name)
        return None if values is None else values[-1]

    def int(self, name: str, default: int | None = None) -> int | None:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise HTTPError(400, INVALID_PARAM, f'The "{name}" parameter is invalid. '
                                                "The value must be an integer.") from None

    def bool(self, name: str, default: bool = False) -> bool:
        raw = self.str(name)
        if raw is None:
            return default
        if raw in TRUE_STRINGS:
            return True
        if raw in FALSE_STRINGS:
            return False
        raise HTTPError(400, INVALID_PARAM, f'The "{name}" parameter is invalid. The value of '
                                            'the parameter must be "true" or "false".')

    def list(self, name: str) -> list[str] | None:
        values = self._values.get(name)
        if values is None:
            return None
        items = [item for value in values for item in value.split(",") if item]
        return items or None


def query(request: Request) -> Query:
    return Query(query_items(request.scope.get("query_string", b"")))


def query_items(raw: bytes) -> list[tuple[str, str]]:
    """The (name, value) pairs of a query string, as ``request.query_params`` reads them
    (``parse_qsl`` of its latin-1 text, blanks kept).

    Without ``%`` or ``+`` there is nothing to unquote, and the split is done here:
    ``parse_qsl`` and the ``QueryParams`` around it cost a DELETE with its claim id some 30
    Python calls (about a tenth of a front's own CPU for it)."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    pairs = []
    for field in text.split("&"):
        if field:  # parse_qsl skips empty fields; a field without "=" has an empty value
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


def check_limit(value: int, maximum: int, message: str) -> int:
    if not 1 <= value <= maximum:
        raise bad_request(message)
    return value


def queues_limit(value: int, maximum: int) -> int:
    return check_limit(value, maximum, f"Limit must be at least 1 and no greater than {maximum}.")


def messages_limit(value: int, maximum: int) -> int:
    return check_limit(value, maximum,
                       f"Limit must be at least 1 and may not be greater than {maximum}.")


# -- names ---------------------------------------------------------------------------------


def valid_queue_name(name: str) -> bool:
    return len(name) <= QUEUE_NAME_MAX and QUEUE_NAME.fullmatch(name) is not None


def valid_project(project: str) -> bool:
    return len(project) <= PROJECT_MAX


# -- queues --------------------------------------------------------------------------------


DEAD_LETTER_QUEUE = "_dead_letter_queue"


def dead_letter_problem(value: Any) -> str | None:
    """A set ``_dead_letter_queue`` must name a queue one could create.

    Upstream stores anything; here a non-string or unusable name would be carried into the
    dead-letter outbox and stall the partition's delivery, so it is refused up front.
    """
    if value and not (isinstance(value, str) and valid_queue_name(value)):
        return "_dead_letter_queue must be a valid queue name."
    return None


def queue_metadata(doc: Any | None, limits: Limits) -> dict[str, Any]:
    """PUT body: an object of metadata whose reserved keys pass §6 (400 Invalid API request)."""
    if doc is None:
        return {}
    metadata = require_object(doc)
    problem = validate(metadata, limits) or dead_letter_problem(metadata.get(DEAD_LETTER_QUEUE))
    if problem is not None:
        raise bad_request(problem)
    return metadata


def _pointer_problem(pointer: str) -> str | None:
    if not pointer.startswith("/"):
        return f'Pointer `{pointer}` does not start with "/".'
    if re.search(r"/\s*?/", pointer[1:]):
        return f'Pointer `{pointer}` contains adjacent "/".'
    if len(pointer) > 1 and pointer.endswith("/"):
        return f'Pointer `{pointer}` end with "/".'
    if pointer[1:].strip() == "/":
        return f"Pointer `{pointer}` does not contains valid token."
    if re.search(r"~[^01]", pointer) or pointer.endswith("~"):
        return f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.'
    return None


def patch_operations(doc: Any) -> list[dict[str, Any]]:
    """Queue PATCH body (§5.4) as ``[{"op", "key", "value"}]``; all errors 400 Invalid body.

    Only syntax is checked here; whether a key exists is state, decided by apply.
    """
    if not isinstance(doc, list):
        raise bad_body("Request body must be a JSON array of operation objects.")
    allowed = ", ".join(PATCH_OPS)
    ops: list[dict[str, Any]] = []
    for change in doc:
        if not isinstance(change, dict):
            raise bad_body("Operations must be JSON objects.")
        if "op" not in change:
            raise bad_body("Unable to find `op` in JSON Schema change. It must be one of the "
                           f"following: {allowed}.")
        op = change["op"]
        if op not in PATCH_OPS:
            raise bad_body(f"Invalid operation: `{op}`. It must be one of the following: "
                           f"{allowed}.")
        if "path" not in change:
            raise bad_body("Unable to find 'path' in JSON Schema change")
        pointer = change["path"]
        if not isinstance(pointer, str):
            raise bad_body(f'Pointer `{pointer}` does not start with "/".')
        problem = _pointer_problem(pointer)
        if problem is not None:
            raise bad_body(problem)
        path = [part.replace("~1", "/").replace("~0", "~").strip()
                for part in pointer.lstrip("/").split("/")]
        if op != "remove" and "value" not in change:
            raise bad_body(f'Operation "{op}" requires a member named "value".')
        if op != "remove" and path[0].lower() != "metadata":
            raise bad_body("The root of path must be metadata, e.g /metadata/key.")
        if len(path) != 2:
            raise bad_body(f"Invalid JSON pointer for this resource: '/{'/'.join(path)}, "
                           "e.g /metadata/key'")
        if path[1] == DEAD_LETTER_QUEUE and op != "remove":
            problem = dead_letter_problem(change["value"])
            if problem is not None:
                raise bad_body(problem)
        ops.append({"op": op, "key": path[1], "value": change.get("value")})
    return ops


def purge_types(doc: Any | None) -> list[str]:
    """Purge body (§5.7): absent means both kinds."""
    if doc is None:
        return ["messages", "subscriptions"]
    doc = require_object(doc)
    if "resource_types" not in doc:
        raise bad_request('Post body must contain key "resource_types".')
    types = doc["resource_types"]
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types) or (
        set(types) - PURGE_TYPES
    ):
        raise bad_request("Resource types must be a sub set of {'messages', 'subscriptions'}.")
    return sorted(set(types))


# -- messages and claims -------------------------------------------------------------------


def message_ttl(ttl: int, settings: Settings) -> int:
    if not MIN_MESSAGE_TTL <= ttl <= settings.max_message_ttl:
        raise bad_request(f"The TTL for a message may not exceed {settings.max_message_ttl} "
                          f"seconds, and must be at least {MIN_MESSAGE_TTL} seconds long.")
    return ttl


def posted_messages(doc: Any, settings: Settings) -> list[tuple[Any, int | None, Any]]:
    """Message POST body (§8.1) as ``(body, ttl or None, raw delay or None)`` per message.

    ``delay`` is passed on unvalidated: only a delayed queue honours it, which is state
    (apply checks it); on ordinary queues it is dropped like upstream.
    """
    if not isinstance(doc, dict) or "messages" not in doc:
        raise bad_request("No messages were found in the request body.")
    messages = doc["messages"]
    if not isinstance(messages, list):
        raise bad_body(WRONG_DOCUMENT)
    if not messages:
        raise bad_request("No messages to enqueu.")
    out: list[tuple[Any, int | None, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise bad_body(WRONG_DOCUMENT)
        if "body" not in message:
            raise bad_body('Missing "body" field.')
        ttl = None
        if "ttl" in message:
            ttl = message_ttl(int_field(message, "ttl", 0), settings)
        out.append((message["body"], ttl, message.get("delay")))
    return out


def claim_create(doc: Any | None, settings: Settings) -> tuple[int, int]:
    """Claim POST body (§8.7): ttl and grace, each defaulted alone, both range-checked."""
    doc = {} if doc is None else require_object(doc)
    ttl = int_field(doc, "ttl", settings.default_claim_ttl)
    grace = int_field(doc, "grace", settings.default_claim_grace)
    claim_ttl(ttl, settings)
    if not MIN_CLAIM_GRACE <= grace <= settings.max_claim_grace:
        raise bad_request(f"The grace for a claim may not exceed {settings.max_claim_grace} "
                          f"seconds, and must be at least {MIN_CLAIM_GRACE} seconds long.")
    return ttl, grace


def claim_ttl(ttl: int, settings: Settings) -> int:
    if not MIN_CLAIM_TTL <= ttl <= settings.max_claim_ttl:
        raise bad_request(f"The TTL for a claim may not exceed {settings.max_claim_ttl} "
                          f"seconds, and must be at least {MIN_CLAIM_TTL} seconds long.")
    return ttl


def claim_update(doc: Any, settings: Settings) -> tuple[int, int]:
    """Claim PATCH body (§8.9): ttl range-checked; grace is not (upstream), but it is kept
    within ``[0, max_claim_grace]`` so no expiry computed from it can leave the key range."""
    doc = require_object(doc)
    ttl = claim_ttl(int_field(doc, "ttl", settings.default_claim_ttl), settings)
    grace = int_field(doc, "grace", settings.default_claim_grace)
    return ttl, min(max(grace, 0), settings.max_claim_grace)


# -- subscriptions -------------------------------------------------------------------------


def _subscription_fields(doc: dict[str, Any], settings: Settings, now_ms: int) -> dict[str, Any]:
    """The fields of a subscription body that carry a value, validated (§8.11)."""
    out: dict[str, Any] = {}
    if "subscriber" in doc:
        subscriber = doc["subscriber"]
        try:  # urlparse raises on a malformed IPv6 host ("http://[x")
            scheme = urlparse(subscriber).scheme if isinstance(subscriber, str) else None
        except ValueError:
            scheme = None
        if not scheme or scheme not in settings.subscriber_types:
            raise bad_request("The subscriber type of subscription must be supported in the "
                              f"list {list(settings.subscriber_types)}.")
        out["subscriber"] = subscriber
    options = doc.get("options")
    if options:
        if not isinstance(options, dict):
            raise bad_request("Options must be a dict.")
        if "_retry_policy" in options:
            problem = validate({"_retry_policy": options["_retry_policy"]}, Limits())
            if problem is not None:
                raise bad_request(problem)
        out["options"] = options
    elif "options" in doc:
        out["options"] = {}
    ttl = doc.get("ttl")
    if ttl:
        if not isinstance(ttl, int):
            raise bad_request("TTL must be an integer.")
        if ttl < MIN_SUBSCRIPTION_TTL:
            raise bad_request("The TTL for a subscription must be at least "
                              f"{MIN_SUBSCRIPTION_TTL} seconds long.")
        now = datetime.fromtimestamp(now_ms / 1000, UTC).replace(tzinfo=None)
        try:
            too_late = now + timedelta(seconds=ttl) >= SUBSCRIPTION_TTL_MAX_DATE
        except OverflowError:
            too_late = True
        if too_late:
            raise bad_request("The TTL seconds for a subscription plus current time must be "
                              f"less than {datetime.max}.")
        out["ttl"] = int(ttl)
    return out


def subscription_create(doc: Any | None, settings: Settings, now_ms: int) -> dict[str, Any]:
    """Subscription POST body: subscriber required; ttl and options defaulted."""
    if doc is None:
        doc = {}
    if isinstance(doc, list):
        raise bad_body(WRONG_DOCUMENT)
    if "subscriber" not in doc:
        raise bad_request("Missing parameter subscriber in body.")
    fields = _subscription_fields(doc, settings, now_ms)
    fields.setdefault("ttl", settings.default_subscription_ttl)
    fields.setdefault("options", {})
    return fields


def subscription_update(doc: Any | None, settings: Settings, now_ms: int) -> dict[str, Any]:
    """Subscription PATCH body: only the fields sent (``subscriber``, ``ttl``, ``options``)."""
    if not doc:
        raise bad_request("No subscription to create.")
    if not isinstance(doc, dict):
        raise bad_request("Subscriptions must be a dict.")
    return _subscription_fields(doc, settings, now_ms)


def confirmation(doc: Any) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("confirmed"), bool):
        raise bad_request("The 'confirmed' should be boolean.")
    return bool(doc["confirmed"])


# -- pre-signed URLs -----------------------------------------------------------------------


def parse_expires(value: Any, now: datetime) -> datetime:
    """``expires`` of a share request as naive UTC (§5.8), with upstream's texts."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise bad_request(f"`expires` should be date format, for example 2016-01-01T00:00:00, "
                          f"not {type(value).__name__} value: {value}")
    try:
        as_int = int(value)
    except ValueError:
        as_int = None
    if as_int:
        raise bad_request("`expires` should be date format, for example 2016-01-01T00:00:00, "
                          f"not integer value: {as_int}")
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        if parsed.tzinfo is not None:  # an offset can push it past year 1 or 9999
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise bad_request(f"Unable to parse date string {text!r}") from None
    if parsed <= now:
        raise bad_request("`expires` is lower than the current time")
    return parsed


def share_request(doc: Any, now: datetime, *,
                  has_key: bool) -> tuple[list[str] | None, list[str], datetime]:
    """Share POST body (§5.8): (path kinds or None for the default, methods, expiry).

    Checks run in upstream's order, so the missing-secret error comes after the path checks.
    """
    doc = require_object(doc)
    unknown = set(doc) - SHARE_KEYS
    if unknown:
        raise bad_request(f"Unknown keys: {unknown}")
    kinds = doc.get("paths") or None
    if kinds is not None:
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise bad_request("`paths` must be a non-empty list")
        invalid = set(kinds) - SHARE_PATHS
        if invalid:
            raise bad_request(f"Invalid paths: {invalid}")
    if not has_key:
        raise bad_request("The `key` can't be None")
    methods = doc.get("methods") or ["GET"]
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise bad_request("`methods` should be a list")
    expires = now + timedelta(days=1)
    if doc.get("expires") is not None:
        expires = parse_expires(doc["expires"], now)
    return kinds, methods, expires
