"""Topics (zaqar-api.md §8.13): a topic is a queue of another kind, in the same state.

Every topic operation is the queue operation on an internal queue name, ``!`` + the topic
name: ``!`` can never start a queue name (``^[a-zA-Z0-9_\\-.]+$``), so the namespaces cannot
meet, and it sorts before every character a queue name may start with, so a project's
topics are one contiguous key range beside its queues. Messages posted to a topic are
stored, listed and delivered to its subscribers exactly as a queue's; claims are not routed
(upstream has none for topics). What differs is only what the client sees: hrefs under
``/v2/topics/``, the ``topics`` key of the list, three reserved defaults in the metadata, and
the topic wording of name errors. All of that is decided here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from projections.metadata import Limits

MARK = "!"
TOPIC_DEFAULT_KEYS = ("_max_messages_post_size", "_default_message_ttl",
                      "_default_message_delay")
T = "/v2/topics/{topic_name}"


def internal(topic: str) -> str:
    """The queue name a topic is stored under."""
    return MARK + topic


def is_topic(queue: str) -> bool:
    return queue.startswith(MARK)


def public_name(queue: str) -> str:
    """The name a client knows: the topic name for a topic, else the queue name."""
    return queue[len(MARK):] if is_topic(queue) else queue


def base_href(queue: str) -> str:
    """``/v2/topics/<t>`` or ``/v2/queues/<q>`` for an internal queue name."""
    if is_topic(queue):
        return f"/v2/topics/{public_name(queue)}"
    return f"/v2/queues/{queue}"


def topic_defaults(stored: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Stored topic metadata with the three reserved defaults a topic shows (upstream)."""
    defaults = {"_max_messages_post_size": limits.max_messages_post_size,
                "_default_message_ttl": limits.default_message_ttl,
                "_default_message_delay": limits.default_message_delay}
    out = dict(stored)
    for key in TOPIC_DEFAULT_KEYS:
        if not out.get(key):
            out[key] = defaults[key]
    return out


Handler = Callable[[Request], Awaitable[Response]]


def on_topic(handler: Handler) -> Handler:
    """Run a queue handler on a topic: ``queue_name`` becomes the topic's internal name."""

    async def endpoint(request: Request) -> Response:
        params = request.scope.setdefault("path_params", {})
        params["queue_name"] = internal(params["topic_name"])
        return await handler(request)

    endpoint.__name__ = f"topic_{getattr(handler, '__name__', 'handler')}"
    endpoint.__doc__ = handler.__doc__
    return endpoint


QUEUE_ONLY_DEFAULTS = ("_dead_letter_queue", "_dead_letter_queue_messages_ttl",
                       "_max_claim_count", "_enable_encrypt_messages")


def with_topic_metadata(handler: Handler) -> Handler:
    """A queue metadata handler (GET, PATCH) answering with a topic's view of the metadata:
    the queue-only reserved keys are left out where they are only the filled-in default."""
    inner = on_topic(handler)

    async def endpoint(request: Request) -> Response:
        response = await inner(request)
        if response.status_code != 200:
            return response
        doc = orjson.loads(bytes(response.body))
        for key in QUEUE_ONLY_DEFAULTS:
            if key in doc and not doc[key]:
                del doc[key]
        body = orjson.dumps(doc)
        response.body = body
        response.headers["content-length"] = str(len(body))
        return response

    endpoint.__name__ = inner.__name__
    return endpoint
