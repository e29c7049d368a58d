"""Hypercorn (0.18, pinned), tuned for many small responses: one send per response.

Hypercorn writes every h11 event to the socket as soon as it has it — the status line and
headers, then the body — so a small JSON answer costs two ``send`` calls and wakes the client
twice. ``CoalescingTCPServer`` collects what a connection writes during one event-loop turn
and sends it together; a large body still waits for the socket to drain, as before.

``install()`` points Hypercorn's asyncio worker at it (it builds its ``TCPServer`` by name in
``hypercorn.asyncio.run``); ``ops.serve`` and ``ops.front`` call it before serving.
"""

from __future__ import annotations

from hypercorn.asyncio import run as hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.events import Event, RawData

HIGH_WATER = 64 * 1024  # bytes buffered in the transport before a send waits for the socket


class CoalescingTCPServer(TCPServer):
    """A Hypercorn connection whose writes of one loop turn leave in one ``send``."""

    _pending: list[bytes] | None = None

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            self._flush()  # a close (or an idle change) never overtakes written bytes
            await super().protocol_send(event)
            return
        if not self._pending:
            self._pending = []
            self.loop.call_soon(self._flush)
        self._pending.append(event.data)
        if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
            self._flush()
            await self.writer.drain()

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self.writer.is_closing():
            self.writer.write(b"".join(pending))


def install() -> None:
    hypercorn_run.TCPServer = CoalescingTCPServer  # type: ignore[misc]
