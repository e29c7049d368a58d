"""The core of ``marconi serve --workers N``: the one process that owns the FileLog, the
runner and RocksDB, answering its front processes over a Unix socket (``service.corewire``).

* A command (``E``): stamped with the partition clock here (``LocalGateway.now_ms``: one
  clock per partition however many fronts there are), executed by the ``LocalGateway``
  (append, fsync, apply) — the answer leaves only after that, so durable before 2xx holds.
  The outcome goes back as apply stored it (``execute_records``). The commands that arrive
  in one loop turn, from every front, are executed together (``CoreServer.submit``): per
  partition one stamp, one append, one wait for its round and one for apply.
* A request (``R``): the whole HTTP request, answered by this process's own app (the reads:
  a barrier here, then the store), its response sent back.
* Metrics (``M``): a front's samples, kept; a scrape is answered with the sum over every
  front and this process's log, projection and delivery figures (``service.metricsfanin``).

The gateway is looked up on the app for every frame: a live rebuild swaps it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson

from projections.commands import (
    COMMAND_TYPES,
    VERSION,
    Command,
    CommandDecodeError,
    decode_to_append,
)
from service import corewire as W
from service import metricsfanin as fanin
from service.errors import HTTPError, bad_request
from service.gateway import Stamped

logger = logging.getLogger("marconi.core")


def parse_command(record: bytes) -> tuple[type[Command], str, str, str, dict[str, Any]]:
    """The type, id, project, queue and fields of a front's encoded command, its shape checked
    (``bad_request`` otherwise): ``decode`` would fail with a 500 on some of it. The record
    itself is checked once stamped (``stamped_record``)."""
    try:
        fields = orjson.loads(record)
    except orjson.JSONDecodeError:
        raise bad_request("not a command: not JSON") from None
    tag = fields.get("t") if isinstance(fields, dict) else None
    kind = COMMAND_TYPES.get(tag) if isinstance(tag, str) else None
    if kind is None or fields.get("v") != VERSION:
        raise bad_request("not a command: unknown version or type")
    command_id, project, queue = fields.get("id"), fields.get("project"), fields.get("queue")
    if not (isinstance(command_id, str) and isinstance(project, str)
            and isinstance(queue, str) and "time_ms" in fields):
        raise bad_request(f"not a command: a {kind.TAG} without id, project, queue or time")
    return kind, command_id, project, queue, fields


def stamped_record(fields: dict[str, Any], time_ms: int) -> bytes:
    """The record to append: the fields with the core's time stamped in (no dataclass, no
    encode), decoded as apply will read it back from the log, so nothing apply cannot decode
    is appended — and apply takes that decoded command instead of decoding the record again
    (``commands.decode_to_append``)."""
    fields["time_ms"] = time_ms
    record = orjson.dumps(fields)
    try:
        decode_to_append(record)
    except CommandDecodeError as exc:
        raise bad_request(f"not a command: {exc}") from None
    return record


class CoreConnection(asyncio.Protocol):
    """One front's connection: frames in, answers out (many in flight)."""

    def __init__(self, server: CoreServer) -> None:
        self._server = server
        self._reader = W.FrameReader()
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)  # uvloop's is not a subclass
        self._writer = W.FrameWriter(self._transport)
        self._server.connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except W.WireError:
            logger.exception("a front sent a bad frame; dropping it")
            self._transport.close()
            return
        loop = asyncio.get_running_loop()
        for rid, kind, payload in frames:
            if kind == W.EXECUTE:
                self._server.submit(self._writer, rid, payload)
                continue
            task = loop.create_task(self._answer(rid, kind, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.disconnected(self)

    async def _answer(self, rid: int, kind: int, payload: bytes) -> None:
        try:
            if kind == W.REQUEST:
                self._writer.send(rid, W.RESPONSE_KIND, await self._server.request(payload))
            elif kind == W.METRICS:
                self._writer.send(rid, W.METRICS_TEXT, await self._server.metrics(self, payload))
            else:
                raise bad_request(f"unknown frame kind {kind}")
        except HTTPError as exc:
            self._writer.send(rid, W.ERROR, W.error_payload(exc))
        except Exception as exc:
            logger.exception("core: frame %d failed", rid)
            self._writer.send(rid, W.ERROR, W.error_payload(
                HTTPError(500, "Internal server error", str(exc) or type(exc).__name__)))


def private_unix_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` that only this user may connect to, from its
    first moment: it is bound in a fresh 0700 directory, made 0600 there, then renamed into
    place, so no other user's process can connect in between (a chmod after the bind leaves
    such a window)."""
    staging = Path(tempfile.mkdtemp(prefix=".c", dir=path.parent))  # mode 0700
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staging / "s"))
        (staging / "s").chmod(0o600)  # only this user's processes may send commands
        (staging / "s").rename(path)
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sock


class CoreServer:
    """The Unix socket the fronts connect to; ``app`` is the core's Starlette app."""

    def __init__(self, app: Any, path: Path) -> None:
        self.app = app
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[CoreConnection] = set()
        self._front_metrics: dict[CoreConnection, list[fanin.Family]] = {}
        self._queued: list[tuple[W.FrameWriter, int, bytes]] = []  # commands of this turn
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    @property
    def fronts(self) -> int:
        return len(self._connections)

    def connected(self, conn: CoreConnection) -> None:
        self._connections.add(conn)
        self.changed.set()

    def disconnected(self, conn: CoreConnection) -> None:
        self._connections.discard(conn)
        self._front_metrics.pop(conn, None)
        self.changed.set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.get_running_loop().create_unix_server(
            lambda: CoreConnection(self), sock=private_unix_socket(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def submit(self, writer: W.FrameWriter, rid: int, record: bytes) -> None:
        """Queue a front's command for the next batch: every command that arrives in this
        loop turn, from any front, is executed together (``_execute_queued``)."""
        if not self._queued:
            task = asyncio.get_running_loop().create_task(self._execute_queued())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._queued.append((writer, rid, record))

    async def _execute_queued(self) -> None:
        """Execute the commands queued so far and send each its answer."""
        queued, self._queued = self._queued, []
        unanswered = set(range(len(queued)))

        def answer(i: int, result: bytes | HTTPError | BaseException) -> None:
            unanswered.discard(i)
            writer, rid, _ = queued[i]
            if isinstance(result, bytes):
                writer.send(rid, W.OUTCOME, result)
            elif isinstance(result, HTTPError):
                writer.send(rid, W.ERROR, W.error_payload(result))
            else:
                logger.error("core: frame %d failed", rid, exc_info=result)
                writer.send(rid, W.ERROR, W.error_payload(HTTPError(
                    500, "Internal server error", str(result) or type(result).__name__)))

        try:
            await self.execute_many([record for _, _, record in queued], answer)
        except Exception as exc:  # a bug: whoever has no answer yet gets a 500
            for i in sorted(unanswered):
                answer(i, exc)

    async def execute_many(self, records: list[bytes],
                           answer: Callable[[int, bytes | HTTPError | BaseException], None],
                           ) -> None:
        """Execute front-encoded commands: ``answer(i, ...)`` gets the ``i``-th one's answer
        (the stamp and outcome bytes, or its error) as soon as it is known. A record that is
        no command answers its own 400 and is never appended; the rest are stamped and
        appended per partition, in the order they came, one append per partition."""
        gateway = self.app.state.gateway
        parsed: dict[int, list[tuple[int, type[Command], str, dict[str, Any]]]] = {}
        for i, record in enumerate(records):
            try:
                kind, command_id, project, queue, fields = parse_command(record)
            except HTTPError as exc:
                answer(i, exc)
                continue
            parsed.setdefault(gateway.partition_of(project, queue), []).append(
                (i, kind, command_id, fields))
        stamped: list[tuple[int, int, list[tuple[int, Stamped]]]] = []
        for partition, commands in parsed.items():
            # One stamp for the partition's commands of this batch: they are stamped at the
            # same moment, as back-to-back calls of ``now_ms`` in one millisecond would be.
            stamp = gateway.now_ms(partition)
            batch: list[tuple[int, Stamped]] = []
            for i, kind, command_id, fields in commands:
                try:
                    batch.append((i, Stamped(kind, command_id, stamped_record(fields, stamp),
                                             stamp)))
                except HTTPError as exc:
                    answer(i, exc)
            if batch:
                stamped.append((partition, stamp, batch))
        if len(stamped) == 1:
            await self._execute_batch(gateway, *stamped[0], answer)
        elif stamped:  # concurrently: the partitions' appends share a commit round
            await asyncio.gather(*(self._execute_batch(gateway, *group, answer)
                                   for group in stamped))

    @staticmethod
    async def _execute_batch(gateway: Any, partition: int, stamp: int,
                             batch: list[tuple[int, Stamped]],
                             answer: Callable[[int, bytes | HTTPError | BaseException], None],
                             ) -> None:
        try:
            results = await gateway.execute_records(partition, [cmd for _, cmd in batch])
        except Exception as exc:  # a bug: every command of the batch answers it
            for i, _ in batch:
                answer(i, exc)
            return
        time = W.U64.pack(stamp)  # what the front reports as the command's time
        for (i, _), result in zip(batch, results, strict=True):
            answer(i, result if isinstance(result, HTTPError) else time + result)

    async def execute(self, record: bytes) -> bytes:
        """One command, as a batch of one: its stamp and outcome bytes, or its error raised."""
        answers: list[bytes | HTTPError | BaseException] = []
        await self.execute_many([record], lambda _, result: answers.append(result))
        (result,) = answers
        if isinstance(result, BaseException):
            raise result
        return result

    async def metrics(self, conn: CoreConnection, payload: bytes) -> bytes:
        """Keep a front's samples; for a scrape, answer every process's sum (the text)."""
        try:
            self._front_metrics[conn] = fanin.decode(payload[1:])
        except (ValueError, TypeError):
            raise bad_request("not metric samples") from None
        if payload[:1] != W.SCRAPE:
            return b""
        metrics = self.app.state.metrics
        refresh = getattr(self.app.state.status, "refresh", None)
        if refresh is not None:  # log starts and sizes, as a scrape of one process reads them
            await refresh()
        own = fanin.families_of(metrics.registry, skip_prefix=fanin.FRONT_ONLY_PREFIX)
        return fanin.render(fanin.merge([own, *self._front_metrics.values()]))

    async def request(self, payload: bytes) -> bytes:
        scope, body = W.request_from(payload)
        sent = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        finally:
            done.set()
        return W.response_payload(status, headers, b"".join(chunks))
