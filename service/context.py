"""What a handler needs from a request: the app's settings and gateway, and what the
middleware learned (project, client id, roles, the queue name)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request

from projections.commands import Command
from service.errors import HTTPError
from service.types import Gateway

if TYPE_CHECKING:
    from ops.settings import Settings

C = TypeVar("C", bound=Command)


# These read the scope straight (``scope["app"]``, ``scope["state"]``), not through
# ``request.app`` / ``request.state``: a handler asks for them several times per request,
# and each property and ``State.__getattr__`` on the way was a Python call.


def settings(request: Request) -> Settings:
    return request.scope["app"].state.settings  # type: ignore[no-any-return]


def gateway(request: Request) -> Gateway:
    return request.scope["app"].state.gateway  # type: ignore[no-any-return]


def project(request: Request) -> str:
    return str(request.scope["state"]["project"])


def client_id(request: Request) -> str:
    """The Client-ID; "" for a v1.0 request without one (it is optional there)."""
    return str(request.scope["state"].get("client_id", ""))


def queue_name(request: Request) -> str:
    return str(request.path_params["queue_name"])


_RANDOM = bytearray()


def random16() -> bytearray:
    """16 bytes from ``os.urandom``, drawn 4 KiB at a time (one syscall per 256 ids)."""
    global _RANDOM
    if len(_RANDOM) < 16:
        _RANDOM = bytearray(os.urandom(4096))
    out = _RANDOM[-16:]
    del _RANDOM[-16:]
    return out


def _forget_random() -> None:
    _RANDOM.clear()  # a forked child must never reuse its parent's unread random bytes


os.register_at_fork(after_in_child=_forget_random)


def new_id() -> str:
    """Ids of commands, messages, claims and subscriptions: 32 hex chars (DESIGN §2.2).

    The hex of a version-4 UUID, made from random bytes without a ``uuid.UUID`` object
    (three of these per message post)."""
    b = random16()
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


def require_role(request: Request, role: str) -> None:
    """oslo.policy's ``role:<role>`` (case-insensitive), else Zaqar's 403 (§1.3)."""
    if role not in request.scope["state"].get("roles", []):
        raise HTTPError(403, "Not authorized", "You are not authorized to complete this action.")


def command(request: Request, cls: type[C], **fields: object) -> C:
    """A command on the request's queue, stamped with ids, client, project and partition time."""
    gw = gateway(request)
    proj = project(request)
    queue = queue_name(request)
    return cls(id=new_id(), project=proj, queue=queue, client_id=client_id(request),
               time_ms=gw.queue_now_ms(proj, queue), **fields)  # type: ignore[arg-type]
