"""The SSRF guard: tenants choose subscriber URLs, so non-public targets are refused at
subscribe time (400, nothing appended) and again after DNS resolution at send time."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from ops.settings import Settings
from projections import commands as C
from service.errors import HTTPError
from service.forwarded import admit
from service.notify import ssrf
from service.notify.webhook import WebhookSender
from tests.service.conftest import Factory
from tests.support.receivers import HttpReceiver

REFUSED_URLS = [
    "http://127.0.0.1/", "http://127.1:8080/x", "http://2130706433/", "http://0x7f.1/",
    "http://localhost:9/", "http://app.localhost/", "http://10.0.0.1:5679",
    "https://192.168.1.10/", "http://172.16.0.1/", "http://169.254.169.254/latest/meta-data",
    "http://metadata.google.internal/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://[fd00:ec2::254]/", "http://[fe80::1]/", "http://100.64.0.1/", "http://0.0.0.0/",
    "http://224.0.0.1/", "http:///nohost",
]
ALLOWED_URLS = ["http://example.com/hook", "https://8.8.8.8/", "http://[2001:4860::8888]/",
                "mailto:ops@example.com"]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_non_public_literals_are_refused(url: str) -> None:
    assert ssrf.literal_refusal(url) == ssrf.REFUSED


@pytest.mark.parametrize("url", ALLOWED_URLS)
def test_public_targets_pass(url: str) -> None:
    assert ssrf.literal_refusal(url) is None


async def test_subscribe_time_400_appends_nothing(make_service: Factory) -> None:
    svc = await make_service(notification_private_targets=False)
    before = await svc.ends()
    r = await svc.client.post("/v2/queues/q/subscriptions",
                              json={"subscriber": "http://169.254.169.254/"})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": ssrf.REFUSED}
    assert await svc.ends() == before
    r = await svc.client.post("/v2/queues/q/subscriptions",
                              json={"subscriber": "http://example.com/hook"})
    assert r.status_code == 201
    sid = r.json()["subscription_id"]
    r = await svc.client.patch(f"/v2/queues/q/subscriptions/{sid}",
                               json={"subscriber": "http://[::1]:8080/"})
    assert r.status_code == 400


async def test_allowed_when_private_targets_are_on(make_service: Factory) -> None:
    svc = await make_service(notification_private_targets=True)
    r = await svc.client.post("/v2/queues/q/subscriptions",
                              json={"subscriber": "http://127.0.0.1:9/"})
    assert r.status_code == 201


async def test_send_time_check_follows_dns() -> None:
    """``localhost`` resolves to loopback: refused after resolution, nothing is sent."""
    receiver = HttpReceiver().start()
    guarded = WebhookSender(timeout=2, private_targets=False)
    open_ = WebhookSender(timeout=2, private_targets=True)
    try:
        port = receiver.url.rsplit(":", 1)[1]
        with pytest.raises(ssrf.TargetRefused):
            await ssrf.resolve_checked("localhost", int(port))
        result = await guarded.post(f"http://localhost:{port}/", b"{}", {})
        assert result["r"] == "refused" and result["error"] == ssrf.REFUSED
        result = await guarded.post(f"http://127.0.0.1:{port}/", b"{}", {})
        assert result["r"] == "refused" and result["error"] == ssrf.REFUSED
        # a name no rule knows (this machine's own) goes through the resolver's check
        own = socket.gethostname()
        if not ssrf.address_allowed(ipaddress.ip_address(
                socket.getaddrinfo(own, 80, type=socket.SOCK_STREAM)[0][4][0])):
            result = await guarded.post(f"http://{own}:{port}/", b"{}", {})
            assert result["r"] == "refused" and result["error"] == ssrf.REFUSED
        assert receiver.snapshot() == []
        assert (await open_.post(f"http://localhost:{port}/", b"{}", {}))["r"] == "delivered"
        assert len(receiver.snapshot()) == 1
    finally:
        await guarded.aclose()
        await open_.aclose()
        receiver.stop()


def test_forwarded_commands_meet_the_same_guard_and_restamping() -> None:
    settings = Settings(require_confirmation=True)
    common = {"id": "x", "project": "p", "client_id": "7d5a0b3c-1f04-4b8e-9b59-0a4f9f5b3c11"}
    with pytest.raises(HTTPError):
        admit(C.CreateSubscription(**common, queue="q", subscription_id="s",
                                   subscriber="http://10.1.2.3/"), settings)
    cmd = admit(C.CreateSubscription(**common, queue="!t", subscription_id="s",
                                     subscriber="http://example.com/"), settings)
    assert isinstance(cmd, C.CreateSubscription) and cmd.require_confirmation
    post = admit(C.PostMessages(**common, queue="q", messages=[C.NewMessage(id="m", body=1)],
                                size=10, deliver=False), settings)
    assert isinstance(post, C.PostMessages) and post.deliver  # the owner's settings decide
