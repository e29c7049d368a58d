"""``serve --workers N`` in one test process: a real core (``ops.core.CoreServer`` on a Unix
socket, over the real app, FileLog and runner) and a front app talking to it through
``RemoteGateway`` — the same code the front processes run, without the processes."""

from __future__ import annotations

import asyncio
import os
import random
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ops.core import CoreServer
from projections.commands import SetRules, decode
from service import corewire as W
from service.app import create_app
from service.remotegateway import CoreLink, ForwardedHistory, RemoteGateway
from tests.service.conftest import PARTITIONS, PROJECT, Factory, Service


@dataclass
class Split:
    core: Service
    front: httpx.AsyncClient
    link: CoreLink


@pytest.fixture
async def split(make_service: Factory, tmp_path: Path) -> AsyncIterator[Split]:
    core = await make_service()
    transport = core.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    server = CoreServer(transport.app, tmp_path / "core.sock")
    await server.start()
    link = await CoreLink.connect(str(tmp_path / "core.sock"))
    gateway = RemoteGateway(link, PARTITIONS, timeout=5.0)
    app = create_app(core.settings, gateway, history_reader=ForwardedHistory(link, 5.0))
    front = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                              base_url="http://front.test",
                              headers={"Client-ID": core.client_id, "X-Project-ID": PROJECT})
    yield Split(core, front, link)
    await front.aclose()
    link.close()
    await server.stop()


async def test_post_list_claim_delete_through_a_front(split: Split) -> None:
    r = await split.front.post("/v2/queues/q/messages",
                               json={"messages": [{"body": i, "ttl": 300} for i in range(3)]})
    assert r.status_code == 201, r.text
    assert len(r.json()["resources"]) == 3
    listed = await split.front.get("/v2/queues/q/messages?echo=true")  # forwarded whole
    assert listed.status_code == 200
    assert [m["body"] for m in listed.json()["messages"]] == [0, 1, 2]
    claim = await split.front.post("/v2/queues/q/claims?limit=2", json={"ttl": 60, "grace": 60})
    assert claim.status_code == 201, claim.text
    hrefs = [m["href"] for m in claim.json()["messages"]]
    assert len(hrefs) == 2 and all("claim_id=" in h for h in hrefs)
    for href in hrefs:
        assert (await split.front.delete(href)).status_code == 204
    left = await split.front.get("/v2/queues/q/messages?echo=true&include_claimed=true")
    assert [m["body"] for m in left.json()["messages"]] == [2]


async def test_the_core_stamps_the_time(split: Split) -> None:
    """One clock per partition: the core's, not the front's wall clock."""
    split.core.clock.advance(3600)
    r = await split.front.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]})
    assert r.status_code == 201
    stamps = []
    for p in range(PARTITIONS):
        for rec in await split.core.log.read(p, 0, 100):
            cmd = decode(rec.value)
            if not isinstance(cmd, SetRules):  # the owner's, at start (rules version)
                stamps.append(cmd.time_ms)
    assert len(stamps) == 1
    assert stamps[0] >= split.core.clock() - 60_000  # an hour ahead of the front's clock


async def test_a_forwarded_request_keeps_the_body_it_was_read_with(
        make_service: Factory, tmp_path: Path) -> None:
    """PUT with the queue quota on reads every partition (a forward) after reading the body."""
    core = await make_service(max_queues_per_project=5)
    transport = core.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    server = CoreServer(transport.app, tmp_path / "core2.sock")
    await server.start()
    link = await CoreLink.connect(str(tmp_path / "core2.sock"))
    app = create_app(core.settings, RemoteGateway(link, PARTITIONS, timeout=5.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f",
                                 headers={"Client-ID": core.client_id,
                                          "X-Project-ID": PROJECT}) as front:
        r = await front.put("/v2/queues/meta", json={"colour": "blue"})
        assert r.status_code == 201, r.text
        got = await front.get("/v2/queues/meta")
        assert got.json()["colour"] == "blue"
    link.close()
    await server.stop()


async def test_bad_input_is_refused_in_the_front(split: Split) -> None:
    before = await split.core.ends()
    r = await split.front.post("/v2/queues/q/messages", json={"messages": [{"ttl": -5}]})
    assert r.status_code == 400
    assert set(r.json()) == {"title", "description"}
    assert await split.core.ends() == before


async def test_the_core_gone_answers_503(split: Split) -> None:
    split.link.close()
    await asyncio.sleep(0.05)
    r = await split.front.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    r = await split.front.get("/v2/queues/q/messages")
    assert r.status_code == 503


async def test_recorded_refusals_come_back_as_zaqar_errors(split: Split) -> None:
    """The front answers a refusal apply recorded exactly as a single process does."""
    await split.front.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]})
    claim = await split.front.post("/v2/queues/q/claims", json={"ttl": 60, "grace": 60})
    href = claim.json()["messages"][0]["href"]
    path, _, _ = href.partition("?")
    wrong = path + "?claim_id=" + "b" * 32
    r = await split.front.delete(wrong)
    assert r.status_code >= 400
    same = await split.core.client.delete(wrong)  # the core's own app, no front
    assert (r.status_code, r.json()) == (same.status_code, same.json())


def test_frames_survive_any_cut() -> None:
    frames = [(i, W.EXECUTE if i % 2 else W.REQUEST, bytes([i]) * (i * 37)) for i in range(1, 30)]
    stream = b"".join(W.frame(*f) for f in frames)
    rng = random.Random(5)
    for _ in range(20):
        reader = W.FrameReader()
        got = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 200)
            got += reader.feed(stream[pos:pos + step])
            pos += step
        assert got == frames


def test_a_bad_frame_length_is_refused() -> None:
    with pytest.raises(W.WireError):
        W.FrameReader().feed(b"\x00\x00\x00\x01xxxx")


async def test_one_scrape_of_a_front_shows_every_process(tmp_path: Path) -> None:
    """``/metrics`` on a front: the requests of every front, summed, and the core's log and
    projection figures (which live only in the core)."""
    from service.metrics import Metrics, parse_samples
    from service.remotegateway import CoreMetrics
    from tests.service.test_metrics import MSGS_ROUTE, close, observed_app

    core = await observed_app(tmp_path)
    transport = core.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    server = CoreServer(transport.app, tmp_path / "core.sock")
    await server.start()
    settings = transport.app.state.settings  # type: ignore[attr-defined]
    fronts, links = [], []
    for _ in range(2):
        link = await CoreLink.connect(str(tmp_path / "core.sock"))
        metrics = Metrics()
        metrics.fan_in = CoreMetrics(link, 5.0)
        app = create_app(settings, RemoteGateway(link, PARTITIONS, timeout=5.0),
                         metrics=metrics)
        fronts.append(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://front.test",
            headers={"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c",
                     "X-Project-ID": PROJECT}))
        links.append(link)
    a, b = fronts
    for front, posts in ((a, 2), (b, 1)):
        for i in range(posts):
            r = await front.post("/v2/queues/q/messages", json={"messages": [{"body": i}]})
            assert r.status_code == 201
    assert (await b.get("/metrics")).status_code == 200  # b's samples reach the core
    r = await a.get("/metrics")
    assert r.status_code == 200
    samples = {(name, frozenset(labels.items())): value
               for name, labels, value in parse_samples(r.text)}
    posted = frozenset({"method": "POST", "route": MSGS_ROUTE, "status": "201"}.items())
    assert samples[("marconi_http_requests_total", posted)] == 3  # both fronts, once each
    assert samples[("marconi_log_appended_records_total", frozenset())] >= 3  # the core's
    assert any(name == "marconi_projection_applied_offset" for name, _ in samples)
    for front in fronts:
        await front.aclose()
    for link in links:
        link.close()
    await server.stop()
    await close(core)


async def test_the_front_encodes_a_command_once_and_the_core_only_stamps_it(
        split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    """One encode per command (the front's): the core stamps the record as it came, without
    building the command and encoding it again, and relays apply's outcome bytes."""
    from projections import commands, queries

    encodes = 0
    plain = commands._plain

    def counting(cmd: commands.Command) -> dict:
        nonlocal encodes
        encodes += 1
        return plain(cmd)

    monkeypatch.setattr(commands, "_plain", counting)
    before = {p: len(await split.core.log.read(p, 0, 1000)) for p in range(PARTITIONS)}
    r = await split.front.post("/v2/queues/q/messages", json={"messages": [{"body": 7}]})
    assert r.status_code == 201, r.text
    assert encodes == 1
    (record,) = [rec for p in range(PARTITIONS)
                 for rec in (await split.core.log.read(p, 0, 1000))[before[p]:]]
    cmd = decode(record.value)
    assert record.value == commands.encode(cmd)  # same bytes a full re-encode would give
    p = split.core.gateway.partition_of(PROJECT, "q")
    raw = queries.outcome_raw(split.core.store, p, cmd.id)
    kind, answer = await split.link.call(W.EXECUTE, commands.encode(cmd), 5.0)
    assert kind == W.OUTCOME and answer[W.U64.size:] == raw  # a retry: the stored outcome


@pytest.mark.parametrize("record", [
    b"not json", b"[1]", b'{"v": 1, "t": "queue.explode", "id": "x"}',
    b'{"v": 2, "t": "messages.post", "id": "x", "project": "p", "queue": "q", "time_ms": 0}',
    b'{"v": 1, "t": ["messages.post"], "id": "x"}',
    b'{"v": 1, "t": "messages.post", "id": 5, "project": "p", "queue": "q", "time_ms": 0}',
    b'{"v": 1, "t": "messages.post", "id": "x", "project": "p", "queue": "q"}',
])
async def test_a_record_that_is_no_command_is_refused_before_the_log(
        split: Split, record: bytes) -> None:
    before = await split.core.ends()
    kind, payload = await split.link.call(W.EXECUTE, record, 5.0)
    assert kind == W.ERROR and W.error_from(payload).status == 400
    assert await split.core.ends() == before


async def test_the_core_decodes_a_command_once_and_apply_folds_what_the_log_holds(
        split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's check and apply share one decode of the record appended; a fold of the
    same log into a fresh store (no kept command) decodes the record itself, to the same."""
    from projections import commands, queries
    from projections.memstore import MemoryStore
    from projections.runner import digest_partition, fold

    decodes = 0
    plain = commands.decode

    def counting(record: bytes) -> commands.Command:
        nonlocal decodes
        decodes += 1
        return plain(record)

    monkeypatch.setattr(commands, "decode", counting)
    r = await split.front.post("/v2/queues/q/messages", json={"messages": [{"body": 7}]})
    assert r.status_code == 201, r.text
    assert decodes == 1
    p = split.core.gateway.partition_of(PROJECT, "q")
    fresh = MemoryStore()
    await fold(split.core.log, fresh, p, 0)
    assert decodes > 1  # the rebuild found nothing kept: it decoded what the log holds
    assert digest_partition(fresh, p) == digest_partition(split.core.store, p)
    cmd = commands.decode(next(rec.value for rec in await split.core.log.read(p, 0, 1000)
                               if b"messages.post" in rec.value))
    assert queries.outcome(fresh, p, cmd.id) == queries.outcome(split.core.store, p, cmd.id)


async def test_the_core_finds_an_outcome_without_reading_the_partition_meta(
        split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outcome is looked up under its stamped time's generation first: per command the
    core reads the meta record once (its clock), not again for the outcome."""
    from projections import queries

    reads = 0
    plain = queries.read_meta

    def counting(view: object, partition: int) -> dict:
        nonlocal reads
        reads += 1
        return plain(view, partition)  # type: ignore[arg-type]

    monkeypatch.setattr(queries, "read_meta", counting)
    r = await split.front.post("/v2/queues/q/messages", json={"messages": [{"body": 7}]})
    assert r.status_code == 201, r.text
    assert reads == 1
    r = await split.front.post("/v2/queues/q/claims", json={"ttl": 60, "grace": 60})
    assert r.status_code == 201, r.text
    assert r.json()["messages"][0]["body"] == 7


async def test_a_call_the_core_leaves_unanswered_times_out_and_a_late_answer_is_dropped(
        tmp_path: Path) -> None:
    """The deadline sweep fails a call past its timeout; the other calls still get theirs."""
    held: list[tuple[int, asyncio.StreamWriter]] = []

    async def silent_core(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = W.FrameReader()
        while data := await reader.read(65536):
            for rid, _, payload in frames.feed(data):
                if payload == b"answer":
                    writer.write(W.frame(rid, W.OUTCOME, b"ok"))
                else:
                    held.append((rid, writer))

    server = await asyncio.start_unix_server(silent_core, str(tmp_path / "core.sock"))
    link = await CoreLink.connect(str(tmp_path / "core.sock"))
    try:
        with pytest.raises(TimeoutError):
            await link.call(W.EXECUTE, b"hold", 0.05)
        assert await link.call(W.EXECUTE, b"answer", 5.0) == (W.OUTCOME, b"ok")
        rid, writer = held[0]
        writer.write(W.frame(rid, W.OUTCOME, b"late"))  # for a call that gave up: ignored
        assert await link.call(W.EXECUTE, b"answer", 5.0) == (W.OUTCOME, b"ok")
        assert link._pending == {}
    finally:
        link.close()
        server.close()


async def test_core_socket_is_private_and_leaves_nothing_beside_it(make_service: Factory,
                                                                  tmp_path: Path) -> None:
    """Under a permissive umask the socket is still 0600 (it is made so before it is renamed
    to its path), and the directory it was bound in is gone."""
    core = await make_service()
    transport = core.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    path = tmp_path / "core.sock"
    old_umask = os.umask(0)
    try:
        server = CoreServer(transport.app, path)
        await server.start()
    finally:
        os.umask(old_umask)
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".c")] == []
        link = await CoreLink.connect(str(path))
        link.close()
    finally:
        await server.stop()
