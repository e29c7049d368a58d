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
    return str(request.scope["path_params"]["queue_name"])


_IDS: list[str] = []  # ids drawn and not handed out yet (``new_id``)
_BATCH = 256  # ids per draw: 4 KiB of os.urandom, one syscall
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))  # byte 6 of a version-4 UUID
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))  # byte 8: RFC 4122's variant


def _draw_ids() -> None:
    """``_BATCH`` ids from one read of ``os.urandom``, each 16 bytes with a version-4 UUID's
    version and variant bits (set in every id at once), as hex."""
    raw = bytearray(os.urandom(16 * _BATCH))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    text = raw.hex()
    _IDS[:] = [text[i:i + 32] for i in range(0, len(text), 32)]


def _forget_ids() -> None:
    _IDS.clear()  # a forked child must never hand out its parent's unused ids


os.register_at_fork(after_in_child=_forget_ids)


def new_id() -> str:
    """Ids of commands, messages, claims and subscriptions: 32 hex chars (DESIGN §2.2).

    The hex of a version-4 UUID, without a ``uuid.UUID`` object: drawn 256 at a time, so an
    id costs a list pop (three of these per message post, and a request id)."""
    if not _IDS:
        _draw_ids()
    return _IDS.pop()


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
