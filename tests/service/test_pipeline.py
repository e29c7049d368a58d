"""Routing (§1.1), the order of header checks (§1.2), response headers (§1.6), errors (§1.4)."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from projections.rocksstore import RocksStore
from projections.runner import Runner
from service.app import create_app
from service.gateway import LocalGateway
from tests.service.conftest import PROJECT, Factory, Service

REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NOT_FOUND = {"title": "404 Not Found"}
BARE = httpx.Headers()  # no Client-ID, no project


def bare(svc: Service) -> httpx.AsyncClient:
    """A client without the default headers."""
    return httpx.AsyncClient(transport=svc.client._transport, base_url="http://marconi.test")


# -- §1.1 routing ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/v2", "/nope", "/v1.1", "/v1", "/v3/queues", "/v2/queues/",
    "/v2/pools", "/v2/pools/p", "/v2/flavors", "/v2/flavors/f",
    "/v2/health", "/v2/queues/q/messages/m/extra",
])
async def test_unknown_paths_are_404(svc: Service, path: str) -> None:
    r = await svc.client.get(path)
    assert r.status_code == 404
    assert r.json() == NOT_FOUND
    assert r.headers["content-type"] == "application/json"


async def test_unknown_path_needs_no_headers(svc: Service) -> None:
    async with bare(svc) as c:
        r = await c.get("/v2")
    assert (r.status_code, r.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("HEAD", "/v2/queues/q", "GET, PUT, PATCH, DELETE, OPTIONS"),
    ("POST", "/v2/queues/q", "GET, PUT, PATCH, DELETE, OPTIONS"),
    ("POST", "/v2/queues/q/subscriptions/s/confirm", "PUT, OPTIONS"),
    ("PUT", "/v2/queues", "GET, OPTIONS"),
    ("DELETE", "/v2/queues/q/stats", "GET, OPTIONS"),
    ("GET", "/v2/queues/q/claims", "POST, OPTIONS"),
    ("PUT", "/v2/queues/q/messages", "GET, POST, DELETE, OPTIONS"),
    ("POST", "/v2/ping", "GET, HEAD, OPTIONS"),
    ("POST", "/", "GET, OPTIONS"),
])
async def test_known_path_wrong_method_is_405(svc: Service, method: str, path: str,
                                              allow: str) -> None:
    r = await svc.client.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    if method != "HEAD":
        assert r.json() == {"title": "405 Method Not Allowed"}


async def test_405_comes_after_the_header_checks(svc: Service) -> None:
    async with bare(svc) as c:
        r = await c.request("HEAD", "/v2/queues/q")
    assert r.status_code == 400  # Client-ID missing, found before the method is judged


@pytest.mark.parametrize(("path", "allow"), [
    ("/", "GET, OPTIONS"),
    ("/v2/", "GET, OPTIONS"),
    ("/v2/queues/q", "GET, PUT, PATCH, DELETE, OPTIONS"),
    ("/v2/queues/q/messages/m", "GET, DELETE, OPTIONS"),
    ("/v2/queues/q/claims/c", "GET, PATCH, DELETE, OPTIONS"),
    ("/v2/queues/bad%20name/stats", "GET, OPTIONS"),  # no checks at all
])
async def test_options_answers_allow_without_checks(svc: Service, path: str, allow: str) -> None:
    async with bare(svc) as c:
        r = await c.options(path, headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert r.headers["allow"] == allow
    assert r.content == b""
    assert REQUEST_ID.fullmatch(r.headers["x-openstack-request-id"])


async def test_options_on_unknown_path_is_404(svc: Service) -> None:
    r = await svc.client.options("/v2/nothing")
    assert (r.status_code, r.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize("name", ["caf%C3%A9", "a%20b", "a%2Bb", "x" * 65, "q%3A1"])
async def test_bad_queue_names_are_400(svc: Service, name: str) -> None:
    before = await svc.ends()
    r = await svc.client.put(f"/v2/queues/{name}")
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid queue identification",
                        "description": "The format of the submitted queue name or project id "
                                       "is not valid."}
    assert await svc.ends() == before


@pytest.mark.parametrize("name", ["a", "A-b_c.d", "x" * 64, "0"])
async def test_good_queue_names(svc: Service, name: str) -> None:
    assert (await svc.client.put(f"/v2/queues/{name}")).status_code == 201


# -- §1.2 order of checks --------------------------------------------------------------------


async def test_checks_run_in_contract_order(svc: Service) -> None:
    """Each step fixes the failure of the previous one and reveals the next check."""
    before = await svc.ends()
    headers = {"URL-Signature": "bad", "URL-Expires": "2099-01-01T00:00:00",
               "URL-Methods": "PUT", "URL-Paths": "/v2/queues", "Accept": "text/html",
               "Content-Type": "application/x-www-form-urlencoded", "Client-ID": "nope",
               "X-Project-ID": ""}
    path = "/v2/queues/bad name"
    async with bare(svc) as c:
        async def put() -> httpx.Response:
            return await c.put(path, content=b"a=1", headers=headers)

        r = await put()
        assert (r.status_code, r.json()) == (404, NOT_FOUND)
        for key in ("URL-Signature", "URL-Expires", "URL-Methods", "URL-Paths"):
            del headers[key]
        r = await put()
        assert r.status_code == 400
        assert r.json()["title"] == "Invalid Content-Type"
        assert r.json()["description"].startswith(
            "Endpoint does not accept `application/x-www-form-urlencoded` content;")
        headers["Content-Type"] = "application/json"
        r = await put()
        assert r.status_code == 406
        assert r.content == b""
        headers["Accept"] = "application/json"
        del headers["Client-ID"]
        r = await put()
        assert r.json() == {"title": "Missing header value",
                            "description": 'The "Client-Id" header is required.'}
        headers["Client-ID"] = "not-a-uuid"
        r = await put()
        assert r.json() == {"title": "Wrong UUID value",
                            "description": "Malformed hexadecimal UUID."}
        headers["Client-ID"] = str(uuid.uuid4())
        del headers["X-Project-ID"]
        r = await put()
        assert r.json() == {"title": "Project-Id Missing",
                            "description": "The header X-PROJECT-ID was missing"}
        headers["X-Project-ID"] = ""
        r = await put()
        assert r.json() == {"title": "Empty project header not allowed",
                            "description": "X-PROJECT-ID cannot be an empty string. Specify the "
                                           "right header X-PROJECT-ID and retry."}
        headers["X-Project-ID"] = PROJECT
        r = await put()
        assert r.json()["title"] == "Invalid queue identification"
        assert await svc.ends() == before
        path = "/v2/queues/good"
        r = await c.put(path, content=b"{}", headers=headers)
        assert r.status_code == 201


async def test_form_encoded_without_content_length_passes(svc: Service) -> None:
    r = await svc.client.get("/v2/queues",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200


@pytest.mark.parametrize(("accept", "ok"), [
    ("application/json", True), ("*/*", True), ("application/*", True),
    ("text/html, application/json;q=0.5", True), ("application/json; charset=utf-8", True),
    ("text/html", False), ("application/json;q=0", False), ("application/xml", False),
    ("application/json;q=0, */*", False), ("garbage", False),
])
async def test_accept_header(svc: Service, accept: str, ok: bool) -> None:
    r = await svc.client.get("/v2/queues", headers={"Accept": accept})
    if ok:
        assert r.status_code == 200
    else:
        assert r.status_code == 406
        assert r.content == b""
        assert "content-type" not in r.headers


@pytest.mark.parametrize("client_id", [
    "3b5b5f6c-6d7e-4f2a-9c1b-0a1b2c3d4e5f", "3b5b5f6c6d7e4f2a9c1b0a1b2c3d4e5f",
    "3B5B5F6C-6D7E-4F2A-9C1B-0A1B2C3D4E5F", "{3b5b5f6c-6d7e-4f2a-9c1b-0a1b2c3d4e5f}",
    "urn:uuid:3b5b5f6c-6d7e-4f2a-9c1b-0a1b2c3d4e5f",
])
async def test_client_id_uuid_spellings_are_accepted(svc: Service, client_id: str) -> None:
    r = await svc.client.get("/v2/queues", headers={"Client-ID": client_id})
    assert r.status_code == 200


async def test_client_id_required_on_every_v2_path_but_not_root(svc: Service) -> None:
    async with bare(svc) as c:
        assert (await c.get("/")).status_code == 300
        for path in ("/v2/", "/v2/ping", "/v2/queues", "/v2/queues/q/stats"):
            r = await c.get(path, headers={"X-Project-ID": "p"})
            assert r.status_code == 400, path
            assert r.json()["title"] == "Missing header value"
        r = await c.get("/v2/ping", headers={"Client-ID": str(uuid.uuid4())})
        assert r.json()["title"] == "Project-Id Missing"


async def test_client_id_off_mode_checks_length_only(make_service: Factory) -> None:
    svc = await make_service(client_id_uuid_safe="off")
    r = await svc.client.get("/v2/queues", headers={"Client-ID": "short"})
    assert r.status_code == 400
    assert r.json() == {"title": "Length of client id must be at least 10 and no greater "
                                 "than 36."}
    r = await svc.client.get("/v2/queues", headers={"Client-ID": "x" * 37})
    assert r.status_code == 400
    r = await svc.client.get("/v2/queues", headers={"Client-ID": "any-client-name"})
    assert r.status_code == 200


async def test_project_length_only_checked_on_queue_routes(svc: Service) -> None:
    long_project = "p" * 257
    r = await svc.client.get("/v2/queues", headers={"X-Project-ID": long_project})
    assert r.status_code == 200
    r = await svc.client.get("/v2/queues/q", headers={"X-Project-ID": long_project})
    assert r.status_code == 400
    assert r.json()["title"] == "Invalid queue identification"
    r = await svc.client.get("/v2/queues/q", headers={"X-Project-ID": "p" * 256})
    assert r.status_code == 200


# -- §1.6 headers and §1.4 error bodies ------------------------------------------------------


async def test_every_response_has_a_request_id(svc: Service) -> None:
    responses = [
        await svc.client.get("/"), await svc.client.get("/v2/"),
        await svc.client.put("/v2/queues/q"), await svc.client.get("/v2/queues/q"),
        await svc.client.get("/nope"), await svc.client.post("/v2/queues/q"),
        await svc.client.get("/v2/queues", headers={"Accept": "text/plain"}),
        await svc.client.delete("/v2/queues/q"),
    ]
    ids = {r.headers["x-openstack-request-id"] for r in responses}
    assert len(ids) == len(responses)
    assert all(REQUEST_ID.fullmatch(i) for i in ids)


async def test_content_types(svc: Service) -> None:
    r = await svc.client.get("/v2/queues")
    assert r.headers["content-type"] == "application/json"
    r = await svc.client.put("/v2/queues/q")
    assert r.status_code == 201 and "content-type" not in r.headers
    assert r.headers["content-length"] == "0"
    r = await svc.client.delete("/v2/queues/q")
    assert r.status_code == 204 and "content-type" not in r.headers
    r = await svc.client.get("/v2/")
    assert r.headers["content-type"] == "application/json-home"
    assert r.headers["cache-control"] == "max-age=86400"


async def test_versions_document(make_service: Factory) -> None:
    svc = await make_service(enable_api_versions=("2",))  # v1.x: tests/service/test_v1_api.py
    async with bare(svc) as c:
        r = await c.get("/")
    assert r.status_code == 300
    assert r.json() == {"versions": [{
        "id": "2", "status": "CURRENT", "updated": "2014-9-24T04:06:47Z",
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.messaging-v2+json"}],
        "links": [{"href": "/v2/", "rel": "self"}]}]}


async def test_home_document(svc: Service) -> None:
    r = await svc.client.get("/v2/")
    assert r.status_code == 200
    assert r.text.startswith('{\n    "resources"')  # indent 4, like upstream
    resources = r.json()["resources"]
    assert resources["rel/queue"]["hints"]["allow"] == ["GET", "PUT", "DELETE", "PATCH"]
    assert resources["rel/message_delete"]["href-template"] == (
        "/v2/queues/{queue_name}/messages/{message_id}{?claim}")
    assert resources["rel/post_messages"]["hints"]["accept-post"] == ["application/json"]
    assert "rel/health" not in resources and "rel/pools" not in resources
    assert not any("topic" in rel for rel in resources)


async def test_ping(svc: Service) -> None:
    r = await svc.client.get("/v2/ping")
    assert (r.status_code, r.content) == (204, b"")
    r = await svc.client.head("/v2/ping")
    assert r.status_code == 204


async def test_ping_is_503_when_the_projection_is_stuck(make_service: Factory) -> None:
    svc = await make_service(request_timeout=0.2)
    await svc.runner.stop()
    await svc.log.append(0, [b"not applied"])
    r = await svc.client.get("/v2/ping")
    assert (r.status_code, r.content) == (503, b"")
    assert (await svc.client.head("/v2/ping")).status_code == 204


async def test_timeouts_are_503_with_retry_after(make_service: Factory) -> None:
    svc = await make_service(request_timeout=0.2)
    await svc.runner.stop()
    r = await svc.client.put("/v2/queues/q")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json() == {"title": "Service temporarily unavailable",
                        "description": "Queue could not be created. Please try again in a "
                                       "few seconds."}
    r = await svc.client.get("/v2/queues/q/messages")  # its partition now has unapplied work
    assert r.status_code == 503
    assert r.json()["title"] == "Service temporarily unavailable"
    r = await svc.client.get("/v2/queues")  # fan-out: one stuck partition fails the page
    assert r.status_code == 503


async def test_unexpected_errors_are_500_json(tmp_path, make_service: Factory) -> None:
    """A store failure nobody anticipated: JSON 500 with the request id, never a crash."""
    svc = await make_service()
    store = RocksStore(tmp_path / "store")
    runner = Runner(svc.log, store, range(svc.log.partitions), sweep_interval=0)
    await svc.runner.stop()
    await runner.start()
    app = create_app(svc.settings, LocalGateway(svc.log, runner, store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://marconi.test", headers=svc.headers()) as c:
        assert (await c.put("/v2/queues/q")).status_code == 201
        store.close()  # under a running runner (a stopped one answers 503 before the store)
        r = await c.get("/v2/queues/q")
        await runner.stop()
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json()["title"] == "Internal server error"
    assert "closed" in r.json()["description"]
    assert REQUEST_ID.fullmatch(r.headers["x-openstack-request-id"])


# -- auth, policy --------------------------------------------------------------------------


async def test_health_is_admin_only(make_service: Factory) -> None:
    svc = await make_service(admin_mode=True)
    r = await svc.client.get("/v2/health")
    assert r.status_code == 403
    assert r.json() == {"title": "Not authorized",
                        "description": "You are not authorized to complete this action."}
    before = await svc.ends()
    r = await svc.client.get("/v2/health", headers={"X-Roles": "member, Admin"})
    assert r.status_code == 200
    body = r.json()
    assert body["storage_reachable"] is True
    assert set(body["operation_status"]) == {
        "create_queue", "post_messages", "claim_messages", "list_messages", "delete_messages",
        "delete_claim", "bulk_delete_messages", "delete_queue"}
    assert all(op["succeeded"] and op["ref"] is None for op in body["operation_status"].values())
    assert await svc.ends() != before  # the probe really ran through the log
    home = (await svc.client.get("/v2/")).json()["resources"]
    assert home["rel/health"] == {"href": "/v2/health",
                                  "hints": {"allow": ["GET"],
                                            "formats": {"application/json": {}}}}
    assert "rel/pools" in home and "rel/flavor" in home
    assert (await svc.client.get("/v2/pools")).status_code == 404  # pooling is off


async def test_token_auth(make_service: Factory) -> None:
    from ops.settings import TokenGrant

    svc = await make_service(auth="token", admin_mode=True, tokens={
        "tok-admin": TokenGrant(project="tp", roles=("admin",)),
        "tok-user": TokenGrant(roles=("member",), any_project=True)})
    r = await svc.client.get("/v2/queues")
    assert r.status_code == 401
    assert r.json() == {"title": "Unauthorized",
                        "description": "The request you have made requires authentication."}
    assert (await svc.client.get("/v2/queues", headers={"X-Auth-Token": "nope"})).status_code \
        == 401
    assert (await svc.client.get("/")).status_code == 300  # discovery stays open
    assert (await svc.client.get("/v2/nowhere")).status_code == 401  # auth wraps routing
    r = await svc.client.put("/v2/queues/tq", headers={"X-Auth-Token": "tok-admin",
                                                       "X-Project-ID": "ignored"})
    assert r.status_code == 201
    r = await svc.client.get("/v2/queues", headers={"X-Auth-Token": "tok-user",
                                                    "X-Project-ID": "tp"})
    assert [q["name"] for q in r.json()["queues"]] == ["tq"]  # created in the token's project
    r = await svc.client.get("/v2/health", headers={"X-Auth-Token": "tok-user",
                                                    "X-Roles": "admin"})
    assert r.status_code == 403  # roles come from the token, not the header
    r = await svc.client.get("/v2/health", headers={"X-Auth-Token": "tok-admin"})
    assert r.status_code == 200
