"""Service-level endpoints (zaqar-api.md §4): versions, home document, ping, health."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from projections import queries
from projections.commands import (
    Command,
    CreateClaim,
    CreateQueue,
    DeleteMessage,
    DeleteMessages,
    DeleteQueue,
    NewMessage,
    PostMessages,
    ReleaseClaim,
)
from projections.ids import new_id
from service.context import client_id, gateway, project, require_role, settings
from service.errors import HTTPError, Unavailable, check_outcome
from service.homedoc import home
from service.metrics import NodeStatus
from service.responses import JSONHomeResponse, JSONResponse, empty
from service.types import Gateway
from service.versions import version_list

logger = logging.getLogger(__name__)


async def versions(request: Request) -> Response:
    """The enabled API versions (``enable_api_versions``), upstream's order and entries."""
    return JSONResponse(version_list(settings(request).enable_api_versions), status_code=300)


async def home_document(request: Request) -> Response:
    return JSONHomeResponse(home(settings(request).admin_mode),
                            headers={"Cache-Control": "max-age=86400"})


async def ping(request: Request) -> Response:
    """GET answers 503 when the log refuses writes (disk full) or the log or projection does
    not answer; HEAD is always 204."""
    if request.method == "HEAD":
        return empty(204)
    gw = gateway(request)
    if gw.log_health().ok and await gw.reachable():
        return empty(204)
    return empty(503)


async def health(request: Request) -> Response:
    """Admin only: a real cycle of operations on a scratch queue, each timed (§4.4)."""
    require_role(request, "admin")
    return JSONResponse(await health_report(request))


async def health_report(request: Request) -> dict[str, Any]:
    """The health body: reachability, then a real cycle of timed operations (§4.4)."""
    gw = gateway(request)
    if not await gw.reachable():
        raise Unavailable("Health status could not be read.")
    probe = _Probe(gw, project(request), f"health-{uuid.uuid4().hex}", client_id(request),
                   settings(request).default_message_ttl)
    log_health = gw.log_health()
    body: dict[str, Any] = {"storage_reachable": True, "operation_status": await probe.run(),
                            "log": {"writable": log_health.ok, "error": log_health.error}}
    status: NodeStatus | None = getattr(request.app.state, "status", None)
    if status is not None:
        body["partitions"] = partition_detail(status)
    return body


def partition_detail(status: NodeStatus) -> dict[str, dict[str, Any]]:
    """Marconi's own health detail: log and projection state of each partition, keyed by
    partition number (an addition to Zaqar's body; clients ignore unknown keys)."""
    return {str(row.partition): row.as_json() for row in status.partition_status()}


class _Probe:
    """Runs the operations upstream's health check runs, through the gateway."""

    def __init__(self, gw: Gateway, project: str, queue: str, client: str, ttl: int) -> None:
        self.gw = gw
        self.project = project
        self.queue = queue
        self.client = client
        self.ttl = ttl
        self.status: dict[str, dict[str, Any]] = {}

    def _cmd(self, cls: type[Command], **fields: Any) -> Command:
        return cls(id=new_id(), project=self.project, queue=self.queue, client_id=self.client,
                   time_ms=self.gw.queue_now_ms(self.project, self.queue), **fields)

    async def _op(self, name: str, cmd: Command | None) -> dict[str, Any]:
        started = time.perf_counter()
        ref = None
        outcome: dict[str, Any] = {}
        try:
            if cmd is None:  # a read
                view, partition, now = await self.gw.view_for(self.project, self.queue)
                queries.list_messages(view, partition, self.project, self.queue, now,
                                      marker=None, limit=10, client_id=None, echo=True,
                                      include_claimed=True, include_delayed=True)
            else:
                outcome = dict(check_outcome(await self.gw.execute(cmd)))
        except HTTPError as exc:
            ref = str(uuid.uuid4())
            logger.warning("health %s failed (ref %s): %s", name, ref, exc)
        self.status[name] = {"succeeded": ref is None,
                             "seconds": round(time.perf_counter() - started, 6), "ref": ref}
        return outcome

    async def run(self) -> dict[str, dict[str, Any]]:
        await self._op("create_queue", self._cmd(CreateQueue))
        posted = await self._op("post_messages", self._cmd(
            PostMessages, messages=[NewMessage(id=new_id(), body={"probe": True}, ttl=self.ttl),
                                    NewMessage(id=new_id(), body={"probe": True}, ttl=self.ttl)],
            default_ttl=self.ttl))
        claim_id = new_id()
        claimed = await self._op("claim_messages", self._cmd(
            CreateClaim, claim_id=claim_id, ttl=60, grace=60, limit=1))
        claim_id = str(claimed.get("claim_id", claim_id))  # a forwarded claim gets the owner's id
        await self._op("list_messages", None)
        held = [m["id"] for m in claimed.get("messages", [])]
        await self._op("delete_messages", self._cmd(
            DeleteMessage, message_id=held[0] if held else "", claim_id=claim_id))
        await self._op("delete_claim", self._cmd(ReleaseClaim, claim_id=claim_id))
        await self._op("bulk_delete_messages", self._cmd(
            DeleteMessages, message_ids=list(posted.get("ids", []))))
        await self._op("delete_queue", self._cmd(DeleteQueue))
        return self.status
