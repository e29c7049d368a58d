"""The static documents: version discovery (§4.1) and the v2 JSON-home (§4.2)."""

from __future__ import annotations

from typing import Any

VERSIONS: dict[str, Any] = {"versions": [{
    "id": "2", "status": "CURRENT", "updated": "2014-9-24T04:06:47Z",
    "media-types": [{"base": "application/json",
                     "type": "application/vnd.openstack.messaging-v2+json"}],
    "links": [{"href": "/v2/", "rel": "self"}],
}]}

_JSON = {"application/json": {}}


def _rel(template: str, variables: dict[str, str], allow: list[str], *,
         accept_post: bool = False) -> dict[str, Any]:
    hints: dict[str, Any] = {"allow": allow, "formats": dict(_JSON)}
    if accept_post:
        hints["accept-post"] = ["application/json"]
    return {"href-template": template, "href-vars": variables, "hints": hints}


_Q = {"queue_name": "param/queue_name"}

RESOURCES: dict[str, Any] = {
    "rel/queues": _rel("/v2/queues{?marker,limit,detailed}",
                       {"marker": "param/marker", "limit": "param/queue_limit",
                        "detailed": "param/detailed"}, ["GET"]),
    "rel/queue": _rel("/v2/queues/{queue_name}", _Q, ["GET", "PUT", "DELETE", "PATCH"]),
    "rel/queue_stats": _rel("/v2/queues/{queue_name}/stats", _Q, ["GET"]),
    "rel/queue_share": _rel("/v2/queues/{queue_name}/share", _Q, ["POST"]),
    "rel/queue_purge": _rel("/v2/queues/{queue_name}/purge", _Q, ["POST"]),
    "rel/messages": _rel(
        "/v2/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}",
        {**_Q, "marker": "param/marker", "limit": "param/messages_limit",
         "echo": "param/echo", "include_claimed": "param/include_claimed"}, ["GET"]),
    "rel/post_messages": _rel("/v2/queues/{queue_name}/messages", _Q, ["POST"],
                              accept_post=True),
    "rel/messages_delete": _rel("/v2/queues/{queue_name}/messages{?ids,pop}",
                                {**_Q, "ids": "param/ids", "pop": "param/pop"}, ["DELETE"]),
    "rel/message_delete": _rel(
        "/v2/queues/{queue_name}/messages/{message_id}{?claim}",
        {**_Q, "message_id": "param/message_id", "claim": "param/claim_id"}, ["DELETE"]),
    "rel/message_get": _rel("/v2/queues/{queue_name}/messages/{message_id}",
                            {**_Q, "message_id": "param/message_id"}, ["GET"]),
    "rel/claim": _rel("/v2/queues/{queue_name}/claims/{claim_id}",
                      {**_Q, "claim_id": "param/claim_id"}, ["GET"]),
    "rel/post_claim": _rel("/v2/queues/{queue_name}/claims{?limit}",
                           {**_Q, "limit": "param/claim_limit"}, ["POST"], accept_post=True),
    "rel/patch_claim": _rel("/v2/queues/{queue_name}/claims/{claim_id}",
                            {**_Q, "claim_id": "param/claim_id"}, ["PATCH"], accept_post=True),
    "rel/delete_claim": _rel("/v2/queues/{queue_name}/claims/{claim_id}",
                             {**_Q, "claim_id": "param/claim_id"}, ["DELETE"]),
    "rel/subscriptions_get": _rel(
        "/v2/queues/{queue_name}/subscriptions{?marker,limit}",
        {**_Q, "marker": "param/marker", "limit": "param/subscription_limit"}, ["GET"]),
    "rel/subscriptions_post": _rel("/v2/queues/{queue_name}/subscriptions", _Q, ["POST"],
                                   accept_post=True),
    "rel/subscription": _rel("/v2/queues/{queue_name}/subscriptions/{subscriptions_id}",
                             {**_Q, "subscriptions_id": "param/subscriptions_id"},
                             ["GET", "DELETE"]),
    "rel/subscription_patch": _rel(
        "/v2/queues/{queue_name}/subscriptions/{subscriptions_id}",
        {**_Q, "subscriptions_id": "param/subscriptions_id"}, ["PATCH"], accept_post=True),
    "rel/ping": _rel("/v2/ping", {}, ["GET"]),
}

ADMIN_RESOURCES: dict[str, Any] = {
    "rel/pools": _rel("/v2/pools{?detailed,limit,marker}",
                      {"detailed": "param/detailed", "limit": "param/pool_limit",
                       "marker": "param/marker"}, ["GET"]),
    "rel/pool": _rel("/v2/pools/{pool_name}", {"pool_name": "param/pool_name"},
                     ["GET", "PUT", "PATCH", "DELETE"]),
    "rel/flavors": _rel("/v2/flavors{?detailed,limit,marker}",
                        {"detailed": "param/detailed", "limit": "param/flavor_limit",
                         "marker": "param/marker"}, ["GET"]),
    "rel/flavor": _rel("/v2/flavors/{flavor_name}", {"flavor_name": "param/flavor_name"},
                       ["GET", "PUT", "PATCH", "DELETE"]),
    "rel/health": {"href": "/v2/health", "hints": {"allow": ["GET"], "formats": dict(_JSON)}},
}


def home(admin_mode: bool) -> dict[str, Any]:
    resources = dict(RESOURCES)
    if admin_mode:
        resources.update(ADMIN_RESOURCES)
    return {"resources": resources}
