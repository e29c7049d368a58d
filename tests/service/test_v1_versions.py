"""The version list and ``enable_api_versions``: a version switched off answers 404 on every
route and leaves ``GET /``."""

from __future__ import annotations

import httpx
import pytest

from ops.settings import SettingsError, load_settings
from tests.service.conftest import Factory, Service

ENTRIES = {
    "1": {"id": "1", "status": "DEPRECATED", "updated": "2014-9-11T17:47:05Z",
          "media-types": [{"base": "application/json",
                           "type": "application/vnd.openstack.messaging-v1+json"}],
          "links": [{"href": "/v1/", "rel": "self"}]},
    "1.1": {"id": "1.1", "status": "DEPRECATED", "updated": "2016-7-29T02:22:47Z",
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.messaging-v1_1+json"}],
            "links": [{"href": "/v1.1/", "rel": "self"}]},
    "2": {"id": "2", "status": "CURRENT", "updated": "2014-9-24T04:06:47Z",
          "media-types": [{"base": "application/json",
                           "type": "application/vnd.openstack.messaging-v2+json"}],
          "links": [{"href": "/v2/", "rel": "self"}]},
}


async def versions(svc: Service) -> httpx.Response:
    async with httpx.AsyncClient(transport=svc.client._transport,
                                 base_url="http://marconi.test") as c:
        return await c.get("/")


async def test_all_three_by_default(svc: Service) -> None:
    r = await versions(svc)
    assert r.status_code == 300
    assert r.json() == {"versions": [ENTRIES["1"], ENTRIES["1.1"], ENTRIES["2"]]}
    for home in ("/v1/", "/v1.1/", "/v2/"):
        assert (await svc.client.get(home)).status_code == 200


@pytest.mark.parametrize(("enabled", "off"), [
    (("1.1", "2"), ["/v1/", "/v1/queues", "/v1/queues/q", "/v1/health"]),
    (("1", "2"), ["/v1.1/", "/v1.1/queues", "/v1.1/queues/q", "/v1.1/ping"]),
    (("1", "1.1"), ["/v2/", "/v2/queues", "/v2/queues/q", "/v2/ping"]),
])
async def test_a_version_switched_off_is_404(make_service: Factory, enabled: tuple[str, ...],
                                             off: list[str]) -> None:
    svc = await make_service(enable_api_versions=enabled)
    r = await versions(svc)
    assert r.json() == {"versions": [ENTRIES[v] for v in ("1", "1.1", "2") if v in enabled]}
    for path in off:
        r = await svc.client.get(path)
        assert (r.status_code, r.json()) == (404, {"title": "404 Not Found"}), path
    for v in enabled:
        prefix = "/v1" if v == "1" else f"/v{v}"
        assert (await svc.client.get(f"{prefix}/")).status_code == 200


def test_setting_spellings() -> None:
    assert load_settings(env={}).enable_api_versions == ("1", "1.1", "2")
    s = load_settings(env={"MARCONI_ENABLE_API_VERSIONS": "1.1, 2"})
    assert s.enable_api_versions == ("1.1", "2")
    with pytest.raises(SettingsError, match="enable_api_versions"):
        load_settings(env={"MARCONI_ENABLE_API_VERSIONS": "1.0,2"})
