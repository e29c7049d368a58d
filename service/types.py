"""The typed contracts of the service: ASGI callables (as in starlette/types.py) and the
``Gateway`` seam handlers talk to, so a scaled-out gateway can replace the local one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import Response

from log import LogHealth
from projections.commands import Command
from projections.store import View

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Handler = Callable[[Request], Awaitable[Response]]
Outcome = dict[str, Any]


@runtime_checkable
class Gateway(Protocol):
    """Where commands go and reads come from.

    ``LocalGateway`` owns every partition (embedded mode); a forwarding gateway would send a
    command to the node owning its partition. Failures to reach the log or the projection in
    time raise ``service.errors.Unavailable`` (503 with Retry-After).
    """

    @property
    def partitions(self) -> int:
        """How many partitions the log has."""
        ...

    def partition_of(self, project: str, queue: str) -> int:
        """The partition of a queue (stable hash of project/queue)."""
        ...

    def now_ms(self, partition: int) -> int:
        """The time to stamp on a command for ``partition``: never behind its log time."""
        ...

    def queue_now_ms(self, project: str, queue: str) -> int:
        """``now_ms`` of the queue's partition (a gateway that does not need the partition,
        such as a front's, which the core stamps again, need not hash the queue for it)."""
        ...

    async def execute(self, cmd: Command) -> Outcome:
        """Append ``cmd`` durably, wait until it is applied, return its recorded outcome."""
        ...

    async def view_for(self, project: str, queue: str) -> tuple[View, int, int]:
        """A read barrier on the queue's partition: (view, partition, now in ms)."""
        ...

    async def views_all(self) -> list[tuple[int, View]]:
        """A read barrier on every partition (for project-wide reads such as list queues)."""
        ...

    async def reachable(self) -> bool:
        """Whether the log and the projection answer (ping)."""
        ...

    def log_health(self) -> LogHealth:
        """Whether the log takes writes now (a disk-full or I/O error says not), and why."""
        ...
