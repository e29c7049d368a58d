"""Admission of a command another node forwarded (``POST /_marconi/execute``).

A forwarded command is input like any request body: the node that appends it checks it
with the very validators the public API runs on a request (``service.validation``), against
its own settings, and stamps afresh everything the public API stamps — the command id, the
ids of new messages, claims and subscriptions, the settings apply uses — so a caller can
choose none of them (no duplicate or chosen message ids, no ttl of 1e9, no claim limit of
1e6, no field of the wrong type). Commands the public API never issues (sweeps, dead-letter
imports, outbox acknowledgements: the runner appends those itself) are refused. A record
that apply cannot fold must never reach the log (DESIGN.md §2.8).

The ``time_ms`` of a forwarded command is stamped by the owner (``execute_here``).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from projections import commands as C
from projections import ids
from service import topics
from service import validation as V
from service.errors import INVALID_BODY, HTTPError, bad_request
from service.notify import ssrf

if TYPE_CHECKING:
    from ops.settings import Settings

NewId = Callable[[], str]


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string.")
    return value


def _check_common(cmd: C.Command, settings: Settings) -> None:
    """Project, queue and client id as the middleware checks them on a request."""
    project = _str(cmd.project, "project")
    queue = _str(cmd.queue, "queue")
    client_id = _str(cmd.client_id, "client_id")
    # project "" is v1.0's global namespace (a v1.0 request without X-Project-ID)
    name = topics.public_name(queue)  # a topic travels under its internal queue name
    if not V.valid_project(project) or not V.valid_queue_name(name):
        raise HTTPError(400, "Invalid queue identification",
                        "The format of the submitted queue name or project id is not valid.")
    if client_id == "":  # a v1.0 request may go without a Client-ID
        pass
    elif settings.client_id_uuid_safe == "strict":
        try:
            canonical = str(uuid.UUID(client_id))
        except ValueError:
            raise HTTPError(400, "Wrong UUID value", "Malformed hexadecimal UUID.") from None
        if canonical != client_id:
            raise HTTPError(400, "Wrong UUID value", "Malformed hexadecimal UUID.")
    elif not settings.min_length_client_id <= len(client_id) <= settings.max_length_client_id:
        raise bad_request("Bad client id length.")


def _size(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except (orjson.JSONEncodeError, TypeError):
        raise HTTPError(400, INVALID_BODY, V.UNPARSEABLE) from None


def _json_value(value: Any, cap: int, too_large: str) -> None:
    """Within the depth limit and ``cap`` bytes once encoded, as a request body must be."""
    V.check_depth(value)
    if _size(value) > cap:
        raise bad_request(too_large)


def _ids(values: Any, name: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise bad_request(f"{name} must be a list of strings.")
    return list(values)


def admit(cmd: C.Command, settings: Settings, new_id: NewId = ids.new_id,
          now_ms: int | None = None) -> C.Command:
    """``cmd`` validated and re-stamped as if this node had built it from a request; 400
    (Zaqar's body) for anything the public API would refuse or never produce."""
    check = _CHECKS.get(type(cmd))
    if check is None:
        raise bad_request(f"{cmd.TAG} is not accepted from another node.")
    _check_common(cmd, settings)
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    fields = check(cmd, _Context(settings, new_id, now))
    return dataclasses.replace(cmd, id=new_id(), **fields)


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    s: Settings
    new_id: NewId
    now_ms: int


def _create_queue(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.CreateQueue)
    limit = c.s.max_queue_metadata
    _json_value(cmd.metadata, limit, f"Queue metadata is too large. Max size: {limit}")
    return {"metadata": V.queue_metadata(cmd.metadata, c.s.limits()), **_quota(cmd, c)}


def _update_queue(cmd: C.Command, c: _Context) -> dict[str, Any]:
    """The ops as ``patch_operations`` leaves them: ``{"op", "key", "value"}`` each."""
    assert isinstance(cmd, C.UpdateQueue)
    limit = c.s.max_queue_metadata
    _json_value(cmd.ops, limit, f"Queue metadata is too large. Max size: {limit}")
    if not isinstance(cmd.ops, list):
        raise HTTPError(400, INVALID_BODY,
                        "Request body must be a JSON array of operation objects.")
    for op in cmd.ops:
        if (not isinstance(op, dict) or set(op) != {"op", "key", "value"}
                or op["op"] not in (*V.PATCH_OPS, "clear") or not isinstance(op["key"], str)):
            raise HTTPError(400, INVALID_BODY, "Operations must be JSON objects.")
        if op["key"] == V.DEAD_LETTER_QUEUE and op["op"] != "remove":
            problem = V.dead_letter_problem(op["value"])
            if problem is not None:
                raise HTTPError(400, INVALID_BODY, problem)
    return {"ops": [dict(op) for op in cmd.ops], "limits": c.s.limits().as_dict()}


def _quota(cmd: C.Command, c: _Context) -> dict[str, Any]:
    """The queue quota from this node's settings; the count elsewhere as the sender saw it
    (a non-negative integer: it can only make the quota stricter or as the sender had it)."""
    elsewhere = _int(getattr(cmd, "queues_elsewhere", 0), "queues_elsewhere")
    if elsewhere < 0:
        raise bad_request("queues_elsewhere must not be negative.")
    return {"max_queues": c.s.max_queues_per_project,
            "queues_elsewhere": elsewhere if c.s.max_queues_per_project else 0}


def _nothing(cmd: C.Command, c: _Context) -> dict[str, Any]:
    return {}


def _purge(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.PurgeQueue)
    return {"resource_types": V.purge_types({"resource_types": cmd.resource_types})}


def _post(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.PostMessages)
    limit = c.s.max_messages_post_size
    too_large = f"Message collection size is too large. Max size {limit}"
    if not isinstance(cmd.messages, list):
        raise HTTPError(400, INVALID_BODY, V.WRONG_DOCUMENT)
    doc = {"messages": [{"body": m.body, **({} if m.ttl is None else {"ttl": m.ttl}),
                         **({} if m.delay is None else {"delay": m.delay})}
                        for m in cmd.messages]}
    _json_value(doc, limit, too_large)
    size = cmd.size
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= limit:
        raise bad_request(too_large)
    parsed = V.posted_messages(doc, c.s)
    messages = [C.NewMessage(id=c.new_id(), body=body, ttl=ttl, delay=delay)
                for body, ttl, delay in parsed]
    if not isinstance(cmd.create_queue, bool):  # False: v1.0's post to existing queues only
        raise bad_request("create_queue must be a boolean.")
    return {"messages": messages, "size": size, "default_ttl": c.s.default_message_ttl,
            "max_post_size": c.s.max_messages_post_size, "max_delay": c.s.max_message_delay,
            "create_queue": cmd.create_queue, "max_messages": c.s.max_messages_per_queue,
            "deliver": c.s.notifications, "require_confirmation": c.s.require_confirmation,
            **_quota(cmd, c)}


def _delete_message(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.DeleteMessage)
    _str(cmd.message_id, "message_id")
    if cmd.claim_id is not None:
        _str(cmd.claim_id, "claim_id")
    return {}


def _delete_messages(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.DeleteMessages)
    ids = _ids(cmd.message_ids, "message_ids")
    limit = c.s.max_messages_per_page
    V.check_limit(len(ids), limit,
                  f"ids parameter should have at least 1 and not greater than {limit} values.")
    return {"message_ids": ids}


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer.")
    return value


def _pop(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.PopMessages)
    limit = c.s.max_messages_per_claim_or_pop
    V.check_limit(_int(cmd.count, "count"), limit,
                  f"Pop value must be at least 1 and may not be greater than {limit}.")
    return {}


def _create_claim(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.CreateClaim)
    V.messages_limit(_int(cmd.limit, "limit"), c.s.max_messages_per_claim_or_pop)
    ttl, grace = V.claim_create({"ttl": _int(cmd.ttl, "ttl"),
                                 "grace": _int(cmd.grace, "grace")}, c.s)
    return {"claim_id": c.new_id(), "ttl": ttl, "grace": grace}


def _update_claim(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.UpdateClaim)
    _str(cmd.claim_id, "claim_id")
    ttl, grace = V.claim_update({"ttl": _int(cmd.ttl, "ttl"),
                                 "grace": _int(cmd.grace, "grace")}, c.s)
    if grace != cmd.grace:
        raise bad_request("grace is out of range.")
    return {"ttl": ttl, "grace": grace}


def _release_claim(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.ReleaseClaim)
    _str(cmd.claim_id, "claim_id")
    return {}


def _subscription_doc(value: dict[str, Any], s: Settings) -> None:
    _json_value(value, V.body_cap(s), "Subscription is too large.")


def _create_subscription(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.CreateSubscription)
    doc = {"subscriber": cmd.subscriber, "ttl": _int(cmd.ttl, "ttl"), "options": cmd.options}
    _subscription_doc(doc, c.s)
    fields = V.subscription_create(doc, c.s, c.now_ms)
    _ssrf(fields, c.s)
    return {"subscription_id": c.new_id(), "require_confirmation": c.s.require_confirmation,
            "max_subscriptions": c.s.max_subscriptions_per_queue, **fields, **_quota(cmd, c)}


def _update_subscription(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.UpdateSubscription)
    _str(cmd.subscription_id, "subscription_id")
    if not isinstance(cmd.changes, dict) or set(cmd.changes) - {"subscriber", "ttl", "options"}:
        raise bad_request("Subscriptions must be a dict.")
    _subscription_doc(cmd.changes, c.s)
    changes = V.subscription_update(cmd.changes, c.s, c.now_ms)
    if changes != cmd.changes:
        raise bad_request("Subscriptions must be a dict.")
    _ssrf(changes, c.s)
    return {"changes": changes}


def _subscription_id(cmd: C.Command, c: _Context) -> dict[str, Any]:
    _str(getattr(cmd, "subscription_id", None), "subscription_id")
    return {}


def _confirm(cmd: C.Command, c: _Context) -> dict[str, Any]:
    assert isinstance(cmd, C.ConfirmSubscription)
    _str(cmd.subscription_id, "subscription_id")
    return {"confirmed": V.confirmation({"confirmed": cmd.confirmed}),
            "require_confirmation": c.s.require_confirmation}


def _ssrf(fields: dict[str, Any], s: Settings) -> None:
    """The subscribe-time SSRF guard, as the public handler runs it (DESIGN §9)."""
    subscriber = fields.get("subscriber")
    if isinstance(subscriber, str) and not s.notification_private_targets:
        problem = ssrf.literal_refusal(subscriber)
        if problem is not None:
            raise bad_request(problem)


_Check = Callable[[C.Command, _Context], dict[str, Any]]
_CHECKS: dict[type[C.Command], _Check] = {
    C.CreateQueue: _create_queue,
    C.UpdateQueue: _update_queue,
    C.DeleteQueue: _nothing,
    C.PurgeQueue: _purge,
    C.PostMessages: _post,
    C.DeleteMessage: _delete_message,
    C.DeleteMessages: _delete_messages,
    C.PopMessages: _pop,
    C.CreateClaim: _create_claim,
    C.UpdateClaim: _update_claim,
    C.ReleaseClaim: _release_claim,
    C.CreateSubscription: _create_subscription,
    C.UpdateSubscription: _update_subscription,
    C.DeleteSubscription: _subscription_id,
    C.ConfirmSubscription: _confirm,
}
