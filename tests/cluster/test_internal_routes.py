"""``/_marconi/*`` is closed by default and validates every forwarded command (issue 9 item 2).

In-process: the node's real internal app over a real FileLog, store and Runner that serves
every partition (the owner of everything), reached through httpx's ASGI transport. What a
forged ``POST /_marconi/execute`` used to do: chosen (duplicate) message ids, ttl 1e9, claim
limit 1e6, fields of the wrong type answering 500 *and leaving a record apply cannot fold*.
The ``marconi node`` start-up refusal runs the real CLI.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from log.filelog import FileLog
from ops.settings import Settings
from projections import commands as C
from projections.memstore import MemoryStore
from projections.runner import Runner
from service.cluster import SECRET_HEADER, ClusterGateway, internal_app

PARTITIONS = 2
SECRET = uuid.uuid4().hex
ADDRESS = "http://node.test"
ROOT = Path(__file__).resolve().parents[2]
CLIENT = str(uuid.uuid4())


@dataclass
class Node:
    client: httpx.AsyncClient
    log: FileLog
    runner: Runner

    async def ends(self) -> list[int]:
        return [await self.log.end_offset(p) for p in range(PARTITIONS)]

    async def execute(self, cmd: C.Command | dict[str, Any],
                      secret: str | None = SECRET) -> httpx.Response:
        body = C.encode(cmd) if isinstance(cmd, C.Command) else orjson.dumps(cmd)
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return await self.client.post("/_marconi/execute", content=body, headers=headers)


async def _node(tmp_path: Path, secret: str | None) -> AsyncIterator[Node]:
    settings = Settings(data=str(tmp_path), partitions=PARTITIONS)
    log = FileLog(tmp_path / "log", PARTITIONS)
    await log.start()
    store = MemoryStore()
    runner = Runner(log, store, range(PARTITIONS), sweep_interval=0)
    await runner.start()
    for _ in range(500):
        if runner.ready_partitions == list(range(PARTITIONS)):
            break
        await asyncio.sleep(0.01)
    assert runner.ready_partitions == list(range(PARTITIONS))
    gateway = ClusterGateway(log, runner, store, address=ADDRESS,
                             owners=lambda: dict.fromkeys(range(PARTITIONS), ADDRESS))
    app = internal_app(gateway, runner, store, lambda: {}, settings=settings, secret=secret)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ADDRESS)
    try:
        yield Node(client, log, runner)
    finally:
        await client.aclose()
        await gateway.aclose()
        await runner.stop()
        await log.stop()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async for n in _node(tmp_path, SECRET):
        yield n


def base(cls: type[C.Command], **fields: Any) -> C.Command:
    common = {"id": uuid.uuid4().hex, "project": "proj", "queue": "q", "client_id": CLIENT}
    return cls(**{**common, **fields})


def post(*messages: C.NewMessage, **fields: Any) -> C.Command:
    return base(C.PostMessages, messages=list(messages), **{"size": 100, **fields})


def message(mid: str = "chosen", body: Any = "x", ttl: Any = None) -> C.NewMessage:
    return C.NewMessage(id=mid, body=body, ttl=ttl)


async def test_paths_need_the_secret(node: Node) -> None:
    before = await node.ends()
    for wrong in (None, "", "guess", SECRET[:-1]):
        r = await node.execute(post(message()), secret=wrong)
        assert r.status_code == 403
        headers = {SECRET_HEADER: wrong} if wrong is not None else {}
        for path, params in (("queues", {"partition": "0"}),
                             ("queue", {"partition": "0", "project": "p", "queue": "q"}),
                             ("digest", {})):
            r = await node.client.get(f"/_marconi/{path}", params=params, headers=headers)
            assert r.status_code == 403, path
    assert await node.ends() == before


async def test_forged_ids_are_restamped(node: Node) -> None:
    """Chosen, duplicate message ids and a chosen claim id: the owner stamps its own."""
    r = await node.execute(post(message("dup"), message("dup")))
    assert r.status_code == 200
    ids = r.json()["ids"]
    assert len(set(ids)) == 2 and "dup" not in ids
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    r = await node.execute(base(C.CreateClaim, claim_id="mine", ttl=60, grace=60, limit=2))
    assert r.status_code == 200
    assert r.json()["claim_id"] != "mine"


def _nested(depth: int) -> Any:
    doc: Any = []
    for _ in range(depth - 1):
        doc = [doc]
    return doc


BAD: dict[str, C.Command | dict[str, Any]] = {
    "ttl 1e9": post(message(ttl=10**9)),
    "ttl of the wrong type": post(message(ttl="600")),
    "no messages": post(),
    "size of the wrong type": post(message(), size="big"),
    "post beyond the size limit": post(message(body="x" * 300_000)),
    "body nested too deep": post(message(body=_nested(100))),
    "claim limit 1e6": base(C.CreateClaim, claim_id="c", ttl=60, grace=60, limit=10**6),
    "claim ttl of the wrong type": base(C.CreateClaim, claim_id="c", ttl="60", grace=60),
    "claim ttl 1e9": base(C.UpdateClaim, claim_id="c", ttl=10**9, grace=60),
    "pop 1e6": base(C.PopMessages, count=10**6),
    "delete 1000 ids": base(C.DeleteMessages, message_ids=[str(i) for i in range(1000)]),
    "message ids of the wrong type": base(C.DeleteMessages, message_ids=[1, 2]),
    "metadata of the wrong type": base(C.CreateQueue, metadata=["not", "an", "object"]),
    "reserved metadata out of range": base(C.CreateQueue,
                                           metadata={"_max_messages_post_size": "big"}),
    "patch op of the wrong shape": base(C.UpdateQueue, ops=[{"op": "move", "key": "a"}]),
    "purge of an unknown kind": base(C.PurgeQueue, resource_types=["queues"]),
    "subscriber of an unknown scheme": base(C.CreateSubscription, subscription_id="s",
                                            subscriber="gopher://x", ttl=3600),
    "subscription options of the wrong type": base(C.CreateSubscription, subscription_id="s",
                                                   subscriber="http://x", options=[1]),
    "confirmed of the wrong type": base(C.ConfirmSubscription, subscription_id="s",
                                        confirmed="yes"),  # type: ignore[arg-type]
    "bad queue name": base(C.DeleteQueue, queue="bad name"),
    "project of the wrong type": {"v": 1, "t": "queue.delete", "id": "x", "project": 7,
                                  "queue": "q", "client_id": CLIENT},
    "client id not a uuid": base(C.DeleteQueue, client_id="someone"),
    "sweep": base(C.Sweep, cutoff_ms=2**62, max_count=10**9),
    "outbox done": base(C.OutboxDone, origin_offset=0),
    "dead-letter import": base(C.ImportDeadLetters, source_partition=0, origin_offset=10**9),
    "create_queue of the wrong type": post(message(ttl=600), create_queue="no"),
    "unknown field": {"v": 1, "t": "queue.delete", "id": "x", "project": "p", "queue": "q",
                      "client_id": CLIENT, "surprise": 1},
    "not a command": {"v": 1, "t": "queue.explode", "id": "x"},
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_forged_commands_are_refused_before_the_log(node: Node, case: str) -> None:
    assert (await node.execute(post(message(ttl=600)))).status_code == 200
    before = await node.ends()
    r = await node.execute(BAD[case])
    assert r.status_code == 400, (case, r.text)
    assert set(r.json()) == {"title", "description"}
    assert await node.ends() == before
    assert not node.runner._failed  # nothing unappliable reached the runner


async def test_legitimate_commands_pass(node: Node) -> None:
    """Commands as the public API builds them are admitted unchanged but for fresh ids."""
    ok = [
        base(C.CreateQueue, metadata={"_max_messages_post_size": 1000, "k": [1, {"a": 2}]}),
        base(C.UpdateQueue, ops=[{"op": "add", "key": "k2", "value": {"x": 1}}],
             limits=Settings().limits().as_dict()),
        post(message(ttl=600), message(body={"n": [1, 2]})),
        base(C.CreateClaim, claim_id="c", ttl=60, grace=60, limit=1),
        base(C.DeleteMessages, message_ids=["a", "b"]),
        base(C.PopMessages, count=1),
        base(C.CreateSubscription, subscription_id="s", subscriber="http://example.com/x",
             ttl=3600, options={"k": "v"}),
        base(C.PurgeQueue, resource_types=["messages"]),
        base(C.DeleteQueue),
        # v1.0: no X-Project-ID is the global namespace "", no Client-ID is client "";
        # its post refuses a missing queue, its PUT …/metadata replaces the document
        base(C.DeleteQueue, project="", client_id=""),
        post(message(ttl=600), create_queue=False),
        base(C.UpdateQueue, ops=[{"op": "clear", "key": "", "value": None},
                                 {"op": "add", "key": "k", "value": 1}],
             limits=Settings().limits().as_dict()),
    ]
    for cmd in ok:
        r = await node.execute(cmd)
        assert r.status_code == 200, (cmd.TAG, r.text)


async def test_open_only_when_asked(tmp_path: Path) -> None:
    """``secret=None`` (``--insecure-cluster``) opens the paths; validation still holds."""
    async for n in _node(tmp_path, None):
        assert (await n.execute(post(message(ttl=600)), secret=None)).status_code == 200
        before = await n.ends()
        assert (await n.execute(BAD["ttl 1e9"], secret=None)).status_code == 400
        assert await n.ends() == before


def _start_node(*extra: str, secret: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MARCONI_CLUSTER_SECRET"}
    if secret is not None:
        env["MARCONI_CLUSTER_SECRET"] = secret
    # Port 9 on loopback: nothing listens, so a node that did start would fail on Kafka (1).
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "node", "--kafka", "127.0.0.1:9", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_node_refuses_to_start_without_a_secret() -> None:
    done = _start_node(secret=None)
    assert done.returncode == 2
    assert "MARCONI_CLUSTER_SECRET is not set" in done.stderr
    assert "--insecure-cluster" in done.stderr
    done = _start_node(secret="short")
    assert done.returncode == 2
    assert "too short" in done.stderr
