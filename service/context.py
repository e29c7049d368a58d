"""What a handler needs from a request: the app's settings and gateway, and what the
middleware learned (project, client id, roles, the queue name)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request

from projections.commands import Command
from projections.ids import new_id
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
