"""Live operator tools against a real ``marconi serve`` (in-process, real Hypercorn on a
loopback port): ``rebuild`` while serving keeps every answer correct and swaps the store in;
``partitions`` and ``snapshot`` ask the running server; ``/metrics`` is served beside it."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path

import httpx

from ops import admin
from ops.partitions import status_rows
from ops.serve import run
from ops.settings import Settings
from ops.snapshot import read_snapshot
from projections.rocksstore import RocksStore
from projections.runner import digest

PARTITIONS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until_up(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            if (await client.get("/v2/ping")).status_code == 204:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        await asyncio.sleep(0.05)


async def test_rebuild_while_serving_keeps_answering(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data=str(data), port=free_port(), partitions=PARTITIONS,
                        request_timeout=2.0, graceful_timeout=1.0)
    stop = asyncio.Event()
    server = asyncio.create_task(run(settings, explicit_partitions=True, stop=stop))
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "p"}
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", headers=headers,
                               timeout=10)
    try:
        await _until_up(client)
        for i in range(60):  # some history for the rebuild to fold
            r = await client.post(f"/v2/queues/q{i % 6}/messages",
                                  json={"messages": [{"body": i}] * 5})
            assert r.status_code == 201
        old_store = admin.store_dir(data)

        posted: list[str] = []
        failures: list[str] = []
        swapped = asyncio.Event()
        after_swap = 0

        async def traffic() -> None:
            """Post, then read back: every write visible, every answer a success."""
            nonlocal after_swap
            i = 0
            while not swapped.is_set() or after_swap < 20:
                r = await client.post("/v2/queues/live/messages",
                                      json={"messages": [{"body": i}]})
                if r.status_code != 201:
                    failures.append(f"post {r.status_code} {r.text}")
                    continue
                mid = r.json()["resources"][0].rsplit("/", 1)[1]
                posted.append(mid)
                got = await client.get(f"/v2/queues/live/messages/{mid}")
                if got.status_code != 200 or got.json()["body"] != i:
                    failures.append(f"get {got.status_code} {got.text}")
                stats = await client.get("/v2/queues/live/stats")
                if stats.status_code != 200 or stats.json()["messages"]["total"] != len(posted):
                    failures.append(f"stats {stats.status_code} {stats.text} vs {len(posted)}")
                i += 1
                if swapped.is_set():
                    after_swap += 1

        load = asyncio.create_task(traffic())
        await asyncio.sleep(0.2)
        rc = await asyncio.to_thread(admin.rebuild_command, str(data), timeout=30)
        swapped.set()
        await load
        assert rc == 0
        assert failures == []
        assert len(posted) > 20

        new_store = admin.store_dir(data)
        assert new_store != old_store and new_store.name.startswith("store-")
        # every acknowledged write is in the swapped-in store
        r = await client.get("/v2/queues/live/messages",
                             params={"ids": ",".join(posted[-20:])})
        assert r.status_code == 200 and len(r.json()["messages"]) == 20

        # the admin history route, replayed in serve's worker process, pages on
        admin_headers = {"X-Roles": "admin"}
        r = await client.get("/v2/queues/live/history?limit=5", headers=admin_headers)
        assert r.status_code == 200, r.text
        first = r.json()["history"]
        assert [e["outcome"]["ids"][0] for e in first] == posted[:5]
        r = await client.get(r.json()["links"][0]["href"], headers=admin_headers)
        assert [e["outcome"]["ids"][0] for e in r.json()["history"]] == posted[5:10]

        rows, source = await asyncio.to_thread(status_rows, data)
        assert source == "server"
        assert [row["partition"] for row in rows] == list(range(PARTITIONS))
        assert all(row["lag"] == 0 for row in rows)
        # + one SetRules per partition: the owner switched each to the latest rules
        assert sum(row["end_offset"] for row in rows) == 60 + len(posted) + PARTITIONS

        snap = tmp_path / "snap"
        answer = await asyncio.to_thread(
            admin.request, data, {"op": "snapshot", "dest": str(snap)}, timeout=10)
        assert read_snapshot(snap)["offsets"] == answer["snapshot"]["offsets"]

        metrics = (await client.get("/metrics")).text
        assert 'marconi_http_requests_total{method="POST",route="/v2/queues/{queue_name}/' \
               'messages",status="201"}' in metrics

        deadline = time.monotonic() + 10  # the old store retires after the request timeout
        while old_store.exists():
            assert time.monotonic() < deadline, "old store was not retired"
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
        stop.set()
        assert await asyncio.wait_for(server, 30) == 0

    # stopped: the swapped-in store equals a fresh replay of the whole log
    with RocksStore(admin.store_dir(data)) as store:
        live = digest(store)
    rebuilt, records, *_ = await admin.rebuild(str(data), progress=False)
    assert rebuilt == live
    assert records == 60 + len(posted) + PARTITIONS  # and the SetRules records


async def test_tools_say_clearly_when_no_server_answers(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "log").mkdir(parents=True)
    try:
        admin.require_log(data)
    except admin.ControlError as exc:
        assert "no log at" in str(exc)
    else:
        raise AssertionError("a directory without a log was accepted")
    (data / "log" / "meta.json").write_text("{}")
    try:
        await asyncio.to_thread(admin.request, data, {"op": "status"}, timeout=0.3)
    except admin.ControlError as exc:
        assert "did not answer" in str(exc) and "marconi serve" in str(exc)
    else:
        raise AssertionError("a request nobody answered succeeded")
    assert list(admin.control_dir(data).iterdir()) == []  # nothing left behind
