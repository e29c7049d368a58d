"""Serve Marconi's own endpoints (metrics, node-to-node calls) beside the Zaqar API.

Paths under the given prefixes go to ``internal`` and skip every Zaqar check (Client-ID,
project, ...); everything else goes to the Zaqar app unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.types import ASGIApp, Receive, Scope, Send


class Mount:
    """Dispatch by path prefix: ``internal`` for Marconi's own paths, ``app`` for the rest."""

    def __init__(self, app: ASGIApp, *, internal: ASGIApp, prefixes: Sequence[str]) -> None:
        self.app = app
        self.internal = internal
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            await self.internal(scope, receive, send)
        else:
            await self.app(scope, receive, send)
