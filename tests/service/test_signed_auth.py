"""Pre-signed requests are authenticated by a valid signature only, in every auth mode.

Issue 9 item 1: ``Auth`` used to skip any request carrying ``URL-Signature`` and the signature
check did nothing for an empty value, so ``URL-Signature;`` (empty) read and deleted any
queue in token mode. Every variant below must be 404 with nothing appended, in every mode.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ops.settings import TokenGrant
from service import signing
from tests.service.conftest import PROJECT, Factory, Service

SECRET = "s3cret"
TOKEN = "tok-user"
NOT_FOUND = {"title": "404 Not Found"}
MODES = ["none", "token"]
QUEUE = "/v2/queues/secret"


async def _service(make_service: Factory, mode: str, secret: str | None = SECRET) -> Service:
    options: dict = {"auth": mode, "secret_key": secret}
    if mode == "token":
        options["tokens"] = {TOKEN: TokenGrant(project=PROJECT, roles=("member",))}
    svc = await make_service(**options)
    owner = {"X-Auth-Token": TOKEN} if mode == "token" else {}
    assert (await svc.client.put(QUEUE, headers=owner)).status_code == 201
    r = await svc.client.post(f"{QUEUE}/messages", json={"messages": [{"body": "private"}]},
                              headers=owner)
    assert r.status_code == 201
    return svc


def _share(methods: list[str], paths: list[str], project: str | None = PROJECT,
           expires: datetime | None = None) -> dict[str, str]:
    expires = expires or datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    doc = signing.create(SECRET, paths, methods, project, expires)
    return {"URL-Signature": str(doc["signature"]), "URL-Expires": str(doc["expires"]),
            "URL-Methods": ",".join(doc["methods"]),  # type: ignore[arg-type]
            "URL-Paths": ",".join(doc["paths"]),  # type: ignore[arg-type]
            "X-Project-ID": PROJECT}


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


GOOD = _share(["GET"], [f"{QUEUE}/messages"])
PAST = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)

VARIANTS: dict[str, tuple[str, str, dict[str, str | bytes]]] = {
    "empty signature": ("GET", f"{QUEUE}/messages", {"URL-Signature": ""}),
    "empty signature, delete queue": ("DELETE", QUEUE, {"URL-Signature": ""}),
    "blank signature": ("GET", f"{QUEUE}/messages", {"URL-Signature": "   "}),
    "blank signature with the other headers": (
        "GET", f"{QUEUE}/messages", {**GOOD, "URL-Signature": " "}),
    "garbage signature": ("GET", f"{QUEUE}/messages", {**GOOD, "URL-Signature": "0" * 64}),
    "non-ascii signature": ("GET", f"{QUEUE}/messages", {**GOOD, "URL-Signature": b"\xff" * 64}),
    "missing URL-Expires": ("GET", f"{QUEUE}/messages", _without(GOOD, "URL-Expires")),
    "missing URL-Methods": ("GET", f"{QUEUE}/messages", _without(GOOD, "URL-Methods")),
    "missing URL-Paths": ("GET", f"{QUEUE}/messages", _without(GOOD, "URL-Paths")),
    "empty URL-Paths": ("GET", f"{QUEUE}/messages", {**GOOD, "URL-Paths": ""}),
    "unparseable URL-Expires": ("GET", f"{QUEUE}/messages", {**GOOD, "URL-Expires": "soon"}),
    "wrong method": ("DELETE", f"{QUEUE}/messages", GOOD),
    "wrong method, delete queue": ("DELETE", QUEUE, _share(["DELETE"], [f"{QUEUE}/messages"])),
    "expired": ("GET", f"{QUEUE}/messages", _share(["GET"], [f"{QUEUE}/messages"],
                                                   expires=PAST)),
    "wrong project": ("GET", f"{QUEUE}/messages", {**GOOD, "X-Project-ID": "other"}),
    "other path": ("GET", f"{QUEUE}/stats", GOOD),
    "other queue": ("GET", "/v2/queues/secretX/messages", GOOD),
    "path as a regex": ("GET", "/v2/queues/aXb/messages",
                        _share(["GET"], ["/v2/queues/a.b/messages"])),
    "path prefix without a slash": ("GET", f"{QUEUE}/messagesX", GOOD),
    "signed path not at the start": ("GET", f"{QUEUE}/messages",
                                     _share(["GET"], ["/messages"])),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_tampered_or_empty_signatures_are_404(make_service: Factory, mode: str,
                                                    variant: str) -> None:
    svc = await _service(make_service, mode)
    method, path, headers = VARIANTS[variant]
    before = await svc.ends()
    async with httpx.AsyncClient(transport=svc.client._transport,
                                 base_url="http://marconi.test") as bare:
        r = await bare.request(method, f"{path}?echo=true",
                               headers={"Client-ID": svc.client_id, "X-Project-ID": PROJECT,
                                        **headers})
    assert (r.status_code, r.json()) == (404, NOT_FOUND), variant
    assert await svc.ends() == before


@pytest.mark.parametrize("mode", MODES)
async def test_signature_without_a_secret_key_is_404(make_service: Factory, mode: str) -> None:
    svc = await _service(make_service, mode, secret=None)
    r = await svc.client.get(f"{QUEUE}/messages?echo=true", headers=GOOD)
    assert (r.status_code, r.json()) == (404, NOT_FOUND)


@pytest.mark.parametrize("mode", MODES)
async def test_a_valid_signature_still_works(make_service: Factory, mode: str) -> None:
    svc = await _service(make_service, mode)
    async with httpx.AsyncClient(transport=svc.client._transport,
                                 base_url="http://marconi.test") as bare:
        headers = {"Client-ID": svc.client_id, **GOOD}
        r = await bare.get(f"{QUEUE}/messages?echo=true", headers=headers)
        assert r.status_code == 200
        assert [m["body"] for m in r.json()["messages"]] == ["private"]
        message = r.json()["messages"][0]["href"]
        # A signed path covers the resources beneath it, as upstream's regex did.
        assert (await bare.get(message, headers=headers)).status_code == 200
        # Signed requests carry no roles: X-Roles is not honoured for them.
        r = await bare.get("/v2/health", headers={**headers, "X-Roles": "admin"})
        assert r.status_code == 404
