"""``RoutesBySlashes``: the routing middleware tries only the routes a path's number of ``/``
and first segments allow, and finds exactly the route (and parameters) a scan of every route
finds."""

from __future__ import annotations

import re

from service import versions
from service.app import build_routes
from service.middleware import RoutesBySlashes, _match

ROUTES = build_routes(True, with_history=True, api_versions=versions.IDS)


def paths() -> list[str]:
    out = ["/", "", "/v2", "/v2/", "//", "/v2//queues", "/v2/queues/", "/v2/queues//messages",
           "/v2/queues/q\n", "/v2/ping\n", "/v2/ping\n\n", "/v2/\n", "/v2/queues/q/messages/",
           "/v2/queues/q/messages/m/x/y", "/v2/queues/q/Messages", "/v2/queues/q/message",
           "/v2/queues/q/messages/m/confirm", "/v2/queues/q/subscriptions/s/confirm\n",
           "/v1/queues/q/messages", "/v1.1/queues/q/claims/c", "/nowhere/at/all"]
    for route in ROUTES:
        template = getattr(route, "path", "")
        out.append(re.sub(r"\{[^}]+\}", "x-1", template))
        out.append(re.sub(r"\{[^}]+\}", "a.b", template) + "/extra")
    return out


def scope(path: str) -> dict:
    return {"type": "http", "path": path, "root_path": "", "method": "GET"}


def found(result: tuple | None) -> tuple | None:
    return None if result is None else (result[0], result[2])


def test_the_index_finds_what_a_full_scan_finds() -> None:
    index = RoutesBySlashes(ROUTES)
    for path in paths():
        expected = found(_match(ROUTES, scope(path)))
        assert found(_match(index.of(path), scope(path))) == expected, path


def test_the_index_tries_a_fraction_of_the_routes() -> None:
    index = RoutesBySlashes(ROUTES)
    tried = max(len(index.of(path)) for path in paths())
    assert tried * 4 < len(ROUTES)


def test_a_path_ending_in_a_literal_segment_tries_only_the_routes_ending_in_it() -> None:
    index = RoutesBySlashes(ROUTES)
    for path in ("/v2/queues/q/messages", "/v2/queues/q/claims", "/v2/queues/q/stats",
                 "/v2/queues/q/messages\n"):
        assert [getattr(r, "path", "") for r in index.of(path)] == [
            re.sub(r"/q/", "/{queue_name}/", path.rstrip("\n"))], path
