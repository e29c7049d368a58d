"""Notifications end to end in one process: the real app, FileLog, runner with the delivery
duty and the real senders, against a real HTTP receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from log.filelog import FileLog
from ops.notify import NotifierWiring
from ops.settings import Settings
from projections import delivery
from projections.audit import History
from projections.memstore import MemoryStore
from projections.runner import Runner
from service.app import create_app
from service.gateway import LocalGateway
from service.metrics import Metrics
from tests.support.receivers import HttpReceiver, SmtpReceiver

PROJECT = "notify-proj"
PARTITIONS = 2


@dataclass
class Node:
    client: httpx.AsyncClient
    runner: Runner
    store: MemoryStore
    log: FileLog
    metrics: Metrics

    async def post(self, queue: str, *bodies: Any, base: str = "queues") -> list[str]:
        r = await self.client.post(f"/v2/{base}/{queue}/messages",
                                   json={"messages": [{"body": b, "ttl": 600} for b in bodies]})
        assert r.status_code == 201, r.text
        return [href.rsplit("/", 1)[1] for href in r.json()["resources"]]

    async def subscribe(self, queue: str, subscriber: str, base: str = "queues",
                        **extra: Any) -> str:
        r = await self.client.post(f"/v2/{base}/{queue}/subscriptions",
                                   json={"subscriber": subscriber, "ttl": 3600, **extra})
        assert r.status_code == 201, r.text
        return str(r.json()["subscription_id"])

    def pending(self) -> int:
        return sum(delivery.pending_count(self.store, p) for p in range(PARTITIONS))


Factory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[Factory]:
    started: list[tuple[httpx.AsyncClient, Runner, FileLog, NotifierWiring]] = []

    async def factory(**overrides: Any) -> Node:
        overrides.setdefault("notification_private_targets", True)
        overrides.setdefault("notification_timeout", 2.0)
        settings = Settings(data=str(tmp_path), partitions=PARTITIONS, **overrides)
        log = FileLog(tmp_path / f"log{len(started)}", PARTITIONS)
        await log.start()
        store = MemoryStore()
        wiring = NotifierWiring(settings)
        runner = Runner(log, store, range(PARTITIONS), sweep_interval=0,
                        **wiring.runner_options(settings))  # type: ignore[arg-type]
        metrics = Metrics()
        runner.on_delivery = metrics.delivery
        await runner.start()
        await runner.settled()  # rules switched: a command appended before would fold under 1
        gateway = LocalGateway(log, runner, store, timeout=settings.request_timeout)
        app = create_app(settings, gateway, metrics=metrics)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://marconi.test",
                                   headers={"Client-ID": str(uuid.uuid4()),
                                            "X-Project-ID": PROJECT})
        started.append((client, runner, log, wiring))
        return Node(client, runner, store, log, metrics)

    yield factory
    for client, runner, log, wiring in started:
        for step in (client.aclose, runner.stop, wiring.aclose, log.stop):
            await _bounded(step)


async def _bounded(step: Callable[[], Awaitable[None]]) -> None:
    """A stop that does not finish in time fails with the stacks of every task (a hang in
    shutdown is a bug to see, not a test run that never ends)."""
    try:
        await asyncio.wait_for(step(), 30)
    except TimeoutError:
        import io
        out = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(file=out)
        raise AssertionError(f"{step} did not finish:\n{out.getvalue()}") from None


@pytest.fixture
def receiver() -> Any:
    r = HttpReceiver().start()
    yield r
    r.stop()


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_webhook_gets_zaqar_payload_headers_and_idempotency_key(
        make_node: Factory, receiver: HttpReceiver) -> None:
    node = await make_node()
    sid = await node.subscribe("q", receiver.url + "/hook",
                               options={"post_headers": {"X-Token": "abc"}})
    (mid,) = await node.post("q", {"event": "created", "n": 1})
    await eventually(lambda: len(receiver.hits) >= 1 and node.pending() == 0)
    (hit,) = receiver.snapshot()
    assert hit.path == "/hook"
    assert hit.json() == {"body": {"event": "created", "n": 1}, "ttl": 600, "queue_name": "q",
                          "Message_Type": "Notification"}
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["X-Token"] == "abc"
    assert hit.headers["Idempotency-Key"] == f"{mid}:{sid}"
    shown = (await node.client.get(f"/v2/queues/q/subscriptions/{sid}")).json()
    assert shown["delivery"]["delivered"] == 1
    assert shown["delivery"]["pending"] == 0
    metrics = node.metrics.render().decode()
    assert 'marconi_notification_attempts_total{kind="notification",outcome="delivered",' \
           'scheme="http"} 1.0' in metrics


async def test_post_data_template_and_messages_before_subscribing_are_not_sent(
        make_node: Factory, receiver: HttpReceiver) -> None:
    node = await make_node()
    await node.post("q", "before")
    await node.subscribe("q", receiver.url, options={
        "post_data": '{"wrapped": "$zaqar_message$", "k": 1}'})
    await node.post("q", "after")
    await eventually(lambda: len(receiver.hits) >= 1 and node.pending() == 0)
    (hit,) = receiver.snapshot()
    assert hit.json() == {"wrapped": {"body": "after", "ttl": 600, "queue_name": "q",
                                      "Message_Type": "Notification"}, "k": 1}


async def test_failed_attempt_is_retried_from_the_log_and_counted(
        make_node: Factory, receiver: HttpReceiver, tmp_path: Path) -> None:
    receiver.decide = lambda n, path, body: 503 if n < 2 else 200
    node = await make_node()
    sid = await node.subscribe("q", receiver.url)
    await node.post("q", "x")
    await eventually(lambda: len(receiver.hits) >= 3 and node.pending() == 0)
    assert [h.status for h in receiver.snapshot()] == [503, 503, 200]
    stats = (await node.client.get(f"/v2/queues/q/subscriptions/{sid}")).json()["delivery"]
    assert stats["delivered"] == 1 and stats["failed"] == 2
    assert stats["last_status"] == 503 and stats["last_error"] == "HTTP 503"
    # Every attempt is in the queue's audited history (what ``marconi replay`` prints).
    async with History(node.log, PROJECT, "q", scratch_dir=str(tmp_path)) as history:
        rows = [e async for e in history.entries() if "deliver" in e.command]
    attempts = [a for row in rows for a in row.args["attempts"]]
    assert [(a["subscription_id"], a["outcome"], a["status"]) for a in attempts] == [
        (sid, "failed", 503), (sid, "failed", 503), (sid, "delivered", 200)]
    assert [row.outcome for row in rows] == [
        {"delivered": 0, "retry": 1, "given_up": 0, "unknown": 0},
        {"delivered": 0, "retry": 1, "given_up": 0, "unknown": 0},
        {"delivered": 1, "retry": 0, "given_up": 0, "unknown": 0}]


async def test_a_4xx_answer_is_final_and_a_dead_receiver_does_not_hold_up_others(
        make_node: Factory, receiver: HttpReceiver) -> None:
    receiver.decide = lambda n, path, body: 404 if path == "/gone" else 200
    slow = HttpReceiver(delay=1.5).start()
    try:
        node = await make_node(notification_per_subscription=1)
        gone = await node.subscribe("q", receiver.url + "/gone")
        await node.subscribe("q", slow.url + "/slow")
        await node.subscribe("q", receiver.url + "/ok")
        started = time.monotonic()
        await node.post("q", *range(5))
        await eventually(lambda: sum(h.path == "/ok" for h in receiver.snapshot()) == 5)
        assert time.monotonic() - started < 5  # the slow one takes 7.5 s for its five
        assert len(slow.snapshot()) <= 3
        def gone_given_up() -> int:
            found = [delivery.subscription_stats(node.store, p, PROJECT, "q", gone)
                     for p in range(PARTITIONS)]
            return sum(f["given_up"] for f in found if f)

        await eventually(lambda: gone_given_up() >= 5)
        stats = (await node.client.get(f"/v2/queues/q/subscriptions/{gone}")).json()
        assert stats["delivery"]["given_up"] == 5  # refused: not retried (upstream)
        assert stats["delivery"]["delivered"] == 0
    finally:
        slow.stop()


async def test_topic_messages_go_to_topic_subscribers(make_node: Factory,
                                                      receiver: HttpReceiver) -> None:
    node = await make_node()
    await node.subscribe("news", receiver.url, base="topics")
    await node.subscribe("news", receiver.url + "/queue")  # the queue of the same name
    await node.post("news", "headline", base="topics")
    await eventually(lambda: len(receiver.hits) >= 1 and node.pending() == 0)
    (hit,) = receiver.snapshot()
    assert hit.path == "/" and hit.json()["queue_name"] == "news"


async def test_mail_arrives_with_subject_from_options_and_uri(make_node: Factory) -> None:
    smtp = SmtpReceiver().start()
    try:
        node = await make_node(smtp_host="127.0.0.1", smtp_port=smtp.port)
        await node.subscribe("q", "mailto:ops@example.com",
                             options={"subject": "Queue news", "from": "zaqar@example.com"})
        await node.subscribe("q", "mailto:dev@example.com?subject=Override")
        await node.post("q", {"alert": "disk full"})
        await eventually(lambda: len(smtp.mails) >= 2 and node.pending() == 0)
        by_to = {m["To"]: m for m in smtp.mails}
        ops, dev = by_to["ops@example.com"], by_to["dev@example.com"]
        assert ops["Subject"] == "Queue news" and ops["From"] == "zaqar@example.com"
        assert dev["Subject"] == "Override"
        import json
        payload = json.loads(ops.get_payload(decode=True))
        assert payload == {"body": {"alert": "disk full"}, "ttl": 600, "queue_name": "q",
                           "Message_Type": "Notification"}
    finally:
        smtp.stop()


async def test_confirmation_flow(make_node: Factory, receiver: HttpReceiver) -> None:
    node = await make_node(require_confirmation=True, secret_key="s3cret")
    sid = await node.subscribe("q", receiver.url)
    await eventually(lambda: len(receiver.hits) >= 1)
    confirm = receiver.snapshot()[0].json()
    assert confirm["Message_Type"] == "SubscriptionConfirmation"
    assert confirm["URL-Methods"] == "PUT"
    assert confirm["URL-Paths"] == f"/v2/queues/q/subscriptions/{sid}/confirm"
    await eventually(lambda: node.pending() == 0)
    await node.post("q", "unconfirmed")  # not delivered: the subscription is not confirmed
    assert node.pending() == 0  # decided when the post applied: nothing was recorded
    headers = {"URL-Signature": confirm["URL-Signature"], "URL-Expires": confirm["URL-Expires"],
               "URL-Methods": confirm["URL-Methods"], "URL-Paths": confirm["URL-Paths"],
               "X-Project-ID": confirm["X-Project-ID"]}
    # The pre-signed URL alone authorises the confirm (no other credentials).
    async with httpx.AsyncClient(transport=node.client._transport,
                                 base_url="http://marconi.test",
                                 headers={"Client-ID": str(uuid.uuid4())}) as anonymous:
        r = await anonymous.put(confirm["WSGISubscribeURL"], headers=headers,
                                json={"confirmed": True})
    assert r.status_code == 204, r.text
    assert (await node.client.get(f"/v2/queues/q/subscriptions/{sid}")).json()["confirmed"]
    await node.post("q", "confirmed")
    await eventually(lambda: len(receiver.hits) >= 2 and node.pending() == 0)
    assert [h.json().get("body") for h in receiver.snapshot()[1:]] == ["confirmed"]
    r = await node.client.put(f"/v2/queues/q/subscriptions/{sid}/confirm",
                              json={"confirmed": False})
    assert r.status_code == 204
    await eventually(lambda: len(receiver.hits) >= 3 and node.pending() == 0)
    assert receiver.snapshot()[2].json()["Message_Type"] == "UnsubscribeConfirmation"
    await node.post("q", "stopped")
    assert node.pending() == 0  # ``confirmed: false`` stops deliveries at the post
    assert len(receiver.snapshot()) == 3
