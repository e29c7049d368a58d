"""Inputs the fuzzing (``marconi bench fuzz`` and targeted probes around it) found answering
500; each must be Zaqar's 400 and append nothing."""

from __future__ import annotations

import pytest

from tests.service.conftest import Factory

SUBSCRIBER_TYPES = ("The subscriber type of subscription must be supported in the list "
                    "['http', 'https', 'mailto', 'trust+http', 'trust+https'].")


@pytest.mark.parametrize("expires", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00",
                                     "9999-12-31T23:00:00-23:59"])
async def test_share_expiry_whose_utc_time_is_out_of_range(make_service: Factory,
                                                           expires: str) -> None:
    svc = await make_service(secret_key="k")
    before = await svc.ends()
    r = await svc.client.post("/v2/queues/q/share", json={"expires": expires})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request",
                        "description": f"Unable to parse date string {expires!r}"}
    assert await svc.ends() == before


async def test_share_expiry_at_the_end_of_time_still_works(make_service: Factory) -> None:
    svc = await make_service(secret_key="k")
    r = await svc.client.post("/v2/queues/q/share",
                              json={"expires": "9999-12-31T23:59:59+00:00"})
    assert r.status_code == 200 and r.json()["expires"] == "9999-12-31T23:59:59"


@pytest.mark.parametrize("subscriber", ["http://[x", "http://x]", "https://[::1/hook",
                                        "mailto://[bad"])
async def test_subscriber_uri_that_urlparse_rejects(make_service: Factory,
                                                    subscriber: str) -> None:
    svc = await make_service()
    before = await svc.ends()
    r = await svc.client.post("/v2/queues/q/subscriptions", json={"subscriber": subscriber})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": SUBSCRIBER_TYPES}
    r = await svc.client.patch("/v2/queues/q/subscriptions/s1", json={"subscriber": subscriber})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": SUBSCRIBER_TYPES}
    assert await svc.ends() == before
