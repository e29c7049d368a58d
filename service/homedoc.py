"""The static documents: the v2 JSON-home (§4.2) and those of v1.1 and v1.0 (their own
relation names: v1.0 spells ``rel/queue-metadata``, ``rel/post-messages``). The version list
(§4.1) is built from ``service.versions``."""

from __future__ import annotations

from typing import Any

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


def _v1_1(admin_mode: bool) -> dict[str, Any]:
    p = "/v1.1"
    resources: dict[str, Any] = {
        "rel/queues": _rel(f"{p}/queues{{?marker,limit,detailed}}",
                           {"marker": "param/marker", "limit": "param/queue_limit",
                            "detailed": "param/detailed"}, ["GET"]),
        "rel/queue": _rel(f"{p}/queues/{{queue_name}}", _Q, ["PUT", "DELETE"]),
        "rel/queue_stats": _rel(f"{p}/queues/{{queue_name}}/stats", _Q, ["GET"]),
        "rel/messages": _rel(
            f"{p}/queues/{{queue_name}}/messages{{?marker,limit,echo,include_claimed}}",
            {**_Q, "marker": "param/marker", "limit": "param/messages_limit",
             "echo": "param/echo", "include_claimed": "param/include_claimed"}, ["GET"]),
        "rel/post_messages": _rel(f"{p}/queues/{{queue_name}}/messages", _Q, ["POST"],
                                  accept_post=True),
        "rel/messages_delete": _rel(f"{p}/queues/{{queue_name}}/messages{{?ids,pop}}",
                                    {**_Q, "ids": "param/ids", "pop": "param/pop"},
                                    ["DELETE"]),
        "rel/message_delete": _rel(
            f"{p}/queues/{{queue_name}}/messages/{{message_id}}{{?claim}}",
            {**_Q, "message_id": "param/message_id", "claim": "param/claim_id"}, ["DELETE"]),
        "rel/claim": _rel(f"{p}/queues/{{queue_name}}/claims/{{claim_id}}",
                          {**_Q, "claim_id": "param/claim_id"}, ["GET"]),
        "rel/post_claim": _rel(f"{p}/queues/{{queue_name}}/claims{{?limit}}",
                               {**_Q, "limit": "param/claim_limit"}, ["POST"],
                               accept_post=True),
        "rel/patch_claim": _rel(f"{p}/queues/{{queue_name}}/claims/{{claim_id}}",
                                {**_Q, "claim_id": "param/claim_id"}, ["PATCH"],
                                accept_post=True),
        "rel/delete_claim": _rel(f"{p}/queues/{{queue_name}}/claims/{{claim_id}}",
                                 {**_Q, "claim_id": "param/claim_id"}, ["DELETE"]),
        "rel/ping": {"href-template": f"{p}/ping",
                     "hints": {"allow": ["GET"], "formats": dict(_JSON)}},
    }
    if admin_mode:
        resources.update({
            rel: {**doc, **({"href-template": doc["href-template"].replace("/v2/", f"{p}/")}
                            if "href-template" in doc else {"href": f"{p}/health"})}
            for rel, doc in ADMIN_RESOURCES.items()})
    return {"resources": resources}


def _v1_0() -> dict[str, Any]:
    p = "/v1"
    return {"resources": {
        "rel/queues": _rel(f"{p}/queues{{?marker,limit,detailed}}",
                           {"marker": "param/marker", "limit": "param/queue_limit",
                            "detailed": "param/detailed"}, ["GET"]),
        "rel/queue": _rel(f"{p}/queues/{{queue_name}}", _Q, ["GET", "HEAD", "PUT", "DELETE"]),
        "rel/queue-metadata": _rel(f"{p}/queues/{{queue_name}}/metadata", _Q, ["GET", "PUT"]),
        "rel/queue-stats": _rel(f"{p}/queues/{{queue_name}}/stats", _Q, ["GET"]),
        "rel/messages": _rel(
            f"{p}/queues/{{queue_name}}/messages{{?marker,limit,echo,include_claimed}}",
            {**_Q, "marker": "param/marker", "limit": "param/messages_limit",
             "echo": "param/echo", "include_claimed": "param/include_claimed"}, ["GET"]),
        "rel/post-messages": _rel(f"{p}/queues/{{queue_name}}/messages", _Q, ["POST"],
                                  accept_post=True),
        "rel/claim": _rel(f"{p}/queues/{{queue_name}}/claims{{?limit}}",
                          {**_Q, "limit": "param/claim_limit"}, ["POST"], accept_post=True),
    }}


def home_v1(version_id: str, admin_mode: bool) -> dict[str, Any]:
    """The JSON-home of v1.0 (``"1"``) or v1.1 (``"1.1"``)."""
    return _v1_0() if version_id == "1" else _v1_1(admin_mode)
