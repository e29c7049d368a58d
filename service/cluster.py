"""The scaled-out gateway: local for partitions this node serves, forwarded once otherwise.

Routing (DESIGN.md §4, §7 "ownership routes; it does not fence"):

* A partition this node tails and has caught up (``Runner.ready``) is served locally, exactly
  like ``LocalGateway`` — a barrier from the log, then the store. Correct whoever else thinks
  they own it, because apply is deterministic and reads wait for a barrier taken now.
* Otherwise the request goes to the owner named by the last group assignment, once:
  - a command as its encoded bytes to ``POST /_marconi/execute``; the owner stamps the time
    (one clock per partition: forwarded requests carry no time) and answers the outcome; the
    ids stamped here travel with it;
  - a single-queue read as the whole HTTP request (``Forward``: the owner runs the same
    handler on its own store), marked with ``x-marconi-forwarded`` so it is never sent on;
    a read that is not a per-queue request (the admin health probe) fetches that queue's
    keys from ``GET /_marconi/queue`` instead;
  - list queues fetches the queue index of each remote partition from
    ``GET /_marconi/queues`` (the owner takes its barrier first) and merges it like local ones.
* No owner, an owner that is this node but still restoring, a request that was already
  forwarded, or an owner that cannot be reached in time: 503 with Retry-After and Zaqar's
  body — never a wrong answer, never a wait past the request timeout.

``cluster_app`` puts the Zaqar app and the internal routes (``/_marconi/...``) together.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from log import Log, LogError, LogHealth
from projections import keys as K
from projections import queries
from projections.commands import Command, CommandDecodeError, decode, encode
from projections.memstore import MemoryStore
from projections.runner import Runner, digest_partition, wall_ms
from projections.store import View, ViewStore
from service.errors import HTTPError, Unavailable, error_response
from service.forwarded import admit
from service.gateway import OPERATION_FAILED, READ_FAILED, LocalGateway
from service.mount import Mount
from service.responses import JSONResponse
from service.types import ASGIApp, Outcome, Receive, Scope, Send

if TYPE_CHECKING:
    from ops.settings import Settings

logger = logging.getLogger(__name__)

FORWARDED_HEADER = "x-marconi-forwarded"
SECRET_HEADER = "x-marconi-cluster-secret"
INTERNAL_PREFIX = "/_marconi/"
# Headers not copied between the client, this node and the owner.
_HOP_BY_HOP = frozenset({
    "host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
    "proxy-connection", "te", "trailer", "x-openstack-request-id", "content-encoding",
})

_forwarded: contextvars.ContextVar[bool] = contextvars.ContextVar("marconi_forwarded",
                                                                  default=False)
# Whether the request in flight is a per-queue Zaqar request that can be replayed on the
# owner as a whole (elsewhere, e.g. the admin health probe, a remote read fetches the queue).
_proxyable: contextvars.ContextVar[bool] = contextvars.ContextVar("marconi_proxyable",
                                                                  default=False)
QUEUE_PATH = ("/v2/queues/", "/v1.1/queues/", "/v1/queues/")  # per-queue paths of every API

Owners = Callable[[], Mapping[int, str]]


class ForwardMarker:
    """Marks a request another node forwarded here, so it is answered here or 503, never
    forwarded again (the flag lives in a context variable the gateway reads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        marked = any(k == FORWARDED_HEADER.encode() for k, _ in scope["headers"])
        token = _forwarded.set(marked)
        proxy_token = _proxyable.set(scope["path"].startswith(QUEUE_PATH))
        try:
            await self.app(scope, receive, send)
        finally:
            _proxyable.reset(proxy_token)
            _forwarded.reset(token)


class Forward(HTTPError):
    """Raised by ``view_for`` for a queue another node serves: its response is the owner's."""

    def __init__(self, gateway: ClusterGateway, owner: str) -> None:
        super().__init__(503, "Forward", f"to {owner}")
        self.gateway = gateway
        self.owner = owner

    def response(self) -> Response:
        return _ProxyResponse(self.gateway, self.owner)


class _ProxyResponse(Response):
    """Replays the current (bodiless) read request on the owner and relays its answer."""

    def __init__(self, gateway: ClusterGateway, owner: str) -> None:
        super().__init__(status_code=503)
        self._gateway = gateway
        self._owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._gateway.proxy(self._owner, scope)
        await response(scope, receive, send)


class ClusterGateway:
    """The ``Gateway`` of one node of a cluster (see the module docstring)."""

    def __init__(self, log: Log, runner: Runner, store: ViewStore, *, owners: Owners,
                 address: str, clock: Callable[[], int] = wall_ms, timeout: float = 10.0,
                 connect_timeout: float = 1.0, max_connections: int = 256,
                 secret: str | None = None) -> None:
        self._log = log
        self._runner = runner
        self._store = store
        self._owners = owners
        self.address = address
        self._timeout = timeout
        self._clock = clock
        self._local = LocalGateway(log, runner, store, clock, timeout=timeout)
        self._client = httpx.AsyncClient(
            headers={SECRET_HEADER: secret} if secret else None,
            timeout=httpx.Timeout(timeout + 1.0, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the Gateway protocol ------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return self._log.partitions

    def partition_of(self, project: str, queue: str) -> int:
        return self._local.partition_of(project, queue)

    def now_ms(self, partition: int) -> int:
        """The local clock (the owner re-stamps a forwarded command with its own)."""
        return self._local.now_ms(partition)

    def queue_now_ms(self, project: str, queue: str) -> int:
        return self._local.queue_now_ms(project, queue)

    def route(self, partition: int, failed: str) -> str | None:
        """None to serve ``partition`` here, else the owner's address; 503 if neither can."""
        if self._runner.ready(partition):
            return None
        owner = self._owners().get(partition)
        if owner is None:
            reason = "has no owner"
        elif owner == self.address:
            reason = "is being restored here"
        elif _forwarded.get():
            reason = "was forwarded here but is not served here"
        else:
            return owner
        logger.debug("partition %d %s: 503", partition, reason)
        raise Unavailable(failed)

    async def execute(self, cmd: Command) -> Outcome:
        failed = OPERATION_FAILED.get(type(cmd), "The command could not be completed.")
        partition = self.partition_of(cmd.project, cmd.queue)
        owner = self.route(partition, failed)
        if owner is None:
            return await self._local.execute(cmd)
        return await self._forward_execute(owner, cmd, failed)

    async def execute_here(self, cmd: Command) -> Outcome:
        """A command forwarded to this node: stamp this partition's time, execute, or 503."""
        failed = OPERATION_FAILED.get(type(cmd), "The command could not be completed.")
        partition = self.partition_of(cmd.project, cmd.queue)
        if not self._runner.ready(partition):
            raise Unavailable(failed)
        stamped = dataclasses.replace(cmd, time_ms=self._local.now_ms(partition))
        return await self._local.execute(stamped)

    async def view_for(self, project: str, queue: str) -> tuple[View, int, int]:
        partition = self.partition_of(project, queue)
        owner = self.route(partition, READ_FAILED)
        if owner is None:
            return await self._local.view_for(project, queue)
        if _proxyable.get():
            raise Forward(self, owner)
        view = await self._remote_queue(owner, partition, project, queue)
        now = max(self._clock(), int(queries.partition_state(view, partition)["time"]))
        return view, partition, now

    async def views_all(self) -> list[tuple[int, View]]:
        routes = {p: self.route(p, READ_FAILED) for p in range(self.partitions)}

        async def one(p: int) -> tuple[int, View]:
            owner = routes[p]
            if owner is None:
                await self._local_barrier(p)
                return p, self._store
            return p, await self._remote_queues(owner, p)

        return list(await asyncio.gather(*(one(p) for p in range(self.partitions))))

    def log_health(self) -> LogHealth:
        return self._log.health()

    async def reachable(self) -> bool:
        """Every partition has an owner, and the ones served here pass a barrier."""
        owners = self._owners()
        if any(p not in owners for p in range(self.partitions)):
            return False
        try:
            await asyncio.gather(*(self._local_barrier(p)
                                   for p in self._runner.ready_partitions))
        except HTTPError:
            return False
        return True

    # -- local helpers -------------------------------------------------------------------

    async def _local_barrier(self, partition: int) -> None:
        try:
            await self._runner.barrier(partition, self._timeout)
        except (TimeoutError, RuntimeError, LogError):
            raise Unavailable(READ_FAILED) from None

    async def queue_index(self, partition: int) -> list[tuple[bytes, bytes]]:
        """Every queue-index entry of a partition served here, after a barrier."""
        if not self._runner.ready(partition):
            raise Unavailable(READ_FAILED)
        await self._local_barrier(partition)
        prefix = K.kind_prefix(partition, K.QUEUE)
        return list(self._store.scan(prefix, K.prefix_end(prefix)))

    async def queue_state(self, partition: int, project: str,
                          queue: str) -> list[tuple[bytes, bytes]]:
        """Every key of one queue (and its partition's clock), after a barrier."""
        if not self._runner.ready(partition):
            raise Unavailable(READ_FAILED)
        await self._local_barrier(partition)
        ranges = [(K.meta(partition), K.prefix_end(K.meta(partition)))]
        record = K.queue(partition, project, queue)
        ranges.append((record, record + b"\x00"))
        for kind in (*K.INCARNATION_KINDS, K.SUB, K.SUBURI):
            prefix = K.sub_scope(partition, kind, project, queue)
            ranges.append((prefix, K.prefix_end(prefix)))
        return [pair for lo, hi in ranges for pair in self._store.scan(lo, hi)]

    # -- talking to owners ---------------------------------------------------------------

    async def _remote_queue(self, owner: str, partition: int, project: str,
                            queue: str) -> View:
        """One queue's state from its owner, for reads that cannot be replayed there."""
        try:
            response = await self._client.get(
                f"{owner}{INTERNAL_PREFIX}queue",
                params={"partition": str(partition), "project": project, "queue": queue},
                headers={FORWARDED_HEADER: self.address})
        except httpx.HTTPError:
            raise Unavailable(READ_FAILED) from None
        if response.status_code != 200:
            raise _relayed_error(response)
        pairs = orjson.loads(response.content)["items"]
        return MemoryStore({bytes.fromhex(k): bytes.fromhex(v) for k, v in pairs})

    async def _forward_execute(self, owner: str, cmd: Command, failed: str) -> Outcome:
        try:
            response = await self._client.post(
                f"{owner}{INTERNAL_PREFIX}execute", content=encode(cmd),
                headers={FORWARDED_HEADER: self.address})
        except httpx.HTTPError as exc:
            logger.info("forward %s to %s failed: %r", cmd.TAG, owner, exc)
            raise Unavailable(failed) from None
        if response.status_code == 200:
            return orjson.loads(response.content)  # type: ignore[no-any-return]
        raise _relayed_error(response)

    async def _remote_queues(self, owner: str, partition: int) -> View:
        try:
            response = await self._client.get(
                f"{owner}{INTERNAL_PREFIX}queues", params={"partition": str(partition)},
                headers={FORWARDED_HEADER: self.address})
        except httpx.HTTPError:
            raise Unavailable(READ_FAILED) from None
        if response.status_code != 200:
            raise _relayed_error(response)
        pairs = orjson.loads(response.content)["items"]
        return MemoryStore({bytes.fromhex(k): bytes.fromhex(v) for k, v in pairs})

    async def proxy(self, owner: str, scope: Scope) -> Response:
        """Send the current read request to ``owner`` as it came; the owner's answer or 503."""
        path = scope.get("raw_path") or scope["path"].encode()
        url = f"{owner}{path.decode('latin-1')}"
        query = scope.get("query_string") or b""
        if query:
            url += "?" + query.decode("latin-1")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.decode("latin-1").lower() not in _HOP_BY_HOP]
        headers.append((FORWARDED_HEADER, self.address))
        try:
            reply = await self._client.request(scope["method"], url, headers=headers)
        except httpx.HTTPError as exc:
            logger.info("forward %s %s to %s failed: %r", scope["method"], scope["path"],
                        owner, exc)
            return Unavailable(READ_FAILED).response()
        out = Response(content=reply.content, status_code=reply.status_code)
        out.raw_headers = [(k, v) for k, v in reply.headers.raw
                           if k.decode("latin-1").lower() not in _HOP_BY_HOP]
        out.raw_headers.append((b"content-length", str(len(reply.content)).encode()))
        return out


def _relayed_error(response: httpx.Response) -> HTTPError:
    """The owner's refusal as this node's: same status, title, description, Retry-After."""
    title: str | None = None
    description: str | None = None
    try:
        body: Any = orjson.loads(response.content) if response.content else {}
        title, description = body.get("title"), body.get("description")
    except (orjson.JSONDecodeError, AttributeError):
        description = response.text[:200]
    headers = {}
    if "retry-after" in response.headers:
        headers["Retry-After"] = response.headers["retry-after"]
    if response.status_code == 503:
        err: HTTPError = Unavailable("The request could not be completed.")
        err.description = description or err.description
        return err
    return HTTPError(response.status_code, title, description, headers)


# -- the internal routes (node to node, and for operators and tests) --------------------


def _json(content: Any, status: int = 200) -> Response:
    return JSONResponse(content, status_code=status)


def internal_app(gateway: ClusterGateway, runner: Runner, store: View,
                 status: Callable[[], Mapping[str, Any]], *, settings: Settings,
                 secret: str | None) -> ASGIApp:
    """``/_marconi/``: execute, queues (index of a partition), queue (one queue's state),
    status, ready, digest.

    These are node-to-node and operator paths without Zaqar auth, closed by the cluster
    secret: every path but ``status`` and ``ready`` (read-only, no queue data) needs the
    ``x-marconi-cluster-secret`` header the nodes send each other (403 otherwise).
    ``secret=None`` leaves them open — only ``marconi node --insecure-cluster`` asks for
    that. A load balancer in front must not expose them either (compose.yaml's nginx answers
    404). Whatever the secret, a forwarded command is validated and re-stamped like a
    request (``service.forwarded.admit``) before it can reach the log.
    """

    async def execute(request: Request) -> Response:
        try:
            cmd = admit(decode(await request.body()), settings)
        except CommandDecodeError as exc:
            return error_response(400, "Invalid API request", str(exc))
        except HTTPError as exc:
            return exc.response()
        try:
            outcome = await gateway.execute_here(cmd)
        except HTTPError as exc:
            return exc.response()
        return _json(outcome)

    async def queues(request: Request) -> Response:
        try:
            partition = int(request.query_params["partition"])
            items = await gateway.queue_index(partition)
        except (KeyError, ValueError):
            return error_response(400, "Invalid API request", "partition is required")
        except HTTPError as exc:
            return exc.response()
        return _json({"items": [(k.hex(), v.hex()) for k, v in items]})

    async def queue(request: Request) -> Response:
        try:
            q = request.query_params
            items = await gateway.queue_state(int(q["partition"]), q["project"], q["queue"])
        except (KeyError, ValueError):
            return error_response(400, "Invalid API request",
                                  "partition, project and queue are required")
        except HTTPError as exc:
            return exc.response()
        return _json({"items": [(k.hex(), v.hex()) for k, v in items]})

    async def node_status(request: Request) -> Response:
        return _json(dict(status()))

    async def ready(request: Request) -> Response:
        """For health checks: 200 once joined and serving everything assigned here."""
        st = status()
        ok = st.get("generation", 0) > 0 and st.get("owned") == st.get("ready")
        return _json({"ready": ok}, 200 if ok else 503)

    async def digest(request: Request) -> Response:
        """Per-partition (applied offset, digest) of what this node serves, after a barrier."""
        out: dict[str, Any] = {}
        for p in runner.ready_partitions:
            try:
                await runner.barrier(p, 10.0)
            except (TimeoutError, RuntimeError, LogError):
                continue
            if runner.ready(p):  # no await between these two: one consistent view
                out[str(p)] = {"offset": runner.applied_offset(p),
                               "digest": digest_partition(store, p)}
        return _json(out)

    app = Starlette(routes=[
        Route(f"{INTERNAL_PREFIX}execute", execute, methods=["POST"]),
        Route(f"{INTERNAL_PREFIX}queues", queues, methods=["GET"]),
        Route(f"{INTERNAL_PREFIX}queue", queue, methods=["GET"]),
        Route(f"{INTERNAL_PREFIX}status", node_status, methods=["GET"]),
        Route(f"{INTERNAL_PREFIX}ready", ready, methods=["GET"]),
        Route(f"{INTERNAL_PREFIX}digest", digest, methods=["GET"]),
    ])
    return app if not secret else _SecretCheck(app, secret)


class _SecretCheck:
    """Refuses internal calls without the cluster secret (constant-time comparison)."""

    OPEN = (f"{INTERNAL_PREFIX}status", f"{INTERNAL_PREFIX}ready")

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.secret = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.OPEN:
            given = next((v for k, v in scope["headers"] if k == SECRET_HEADER.encode()), b"")
            if not hmac.compare_digest(given, self.secret):
                await error_response(403, "Not authorized", "Cluster-internal path.")(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


def cluster_app(zaqar: ASGIApp, internal: ASGIApp) -> Mount:
    """The node's ASGI app: internal routes beside the Zaqar app, forwarded marks honoured."""
    return Mount(ForwardMarker(zaqar), internal=internal, prefixes=[INTERNAL_PREFIX])


__all__ = ["ClusterGateway", "Forward", "ForwardMarker", "cluster_app", "internal_app"]
