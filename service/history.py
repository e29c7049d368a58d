"""``GET /v2/queues/{queue_name}/history``: a queue's audited history over HTTP, for admins.

A Marconi addition (Zaqar has no such endpoint), so it is routed whether or not
``admin_mode`` is on, but only the ``admin`` role may read it (else Zaqar's exact 403).
Paging is by log offset: ``marker`` is the offset of the last entry of the previous page and
the next page starts after it; ``links`` carries ``rel: next`` like the other lists.

Outcomes are recomputed by replaying the queue's partition into a scratch store
(``projections.audit.History``), because the live store keeps outcomes only for a window.
Replay must start from a known state: offset 0, or the newest snapshot at or before the marker
(DESIGN.md §8), so a cold page costs at most one snapshot interval of replay plus the page. To
keep paging cheaper still, the replay that produced a full page is parked as a cursor keyed by
(project, queue, last offset); the request for the next page continues it, so walking the
whole history costs one replay in total. A marker before the retained history is a 400 that
says what is retained.
Cursors are few (``max_cursors``) and expire after ``idle_seconds``; each holds a scratch
RocksDB with bounded memory.

Replay is CPU work (apply into a scratch store). ``HistoryReader`` runs it in the calling
event loop, which suits tests and tools; ``marconi serve`` wraps the same reader in a worker
process (``ops/historyproc.py``): measured on 100k commands, a cold page replayed in the
server's loop held a concurrent ``GET /v2/queues/q`` for 6.4 s; in the worker, 10 ms at most.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from log import Log
from projections.audit import Entry, History, NotRetainedError
from projections.snapshots import SnapshotStore
from service import render
from service.context import project, queue_name, require_role
from service.errors import INVALID_PARAM, HTTPError
from service.responses import JSONResponse
from service.validation import check_limit, query

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


@dataclass
class _Cursor:
    history: History
    entries: AsyncIterator[Entry]
    log: Log | None = None  # a log opened for this cursor alone
    counted: int = 0  # records of this replay already added to the reader's count
    used: float = field(default_factory=time.monotonic)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.entries.aclose()  # type: ignore[attr-defined]
        await self.history.__aexit__(None, None, None)
        if self.log is not None:
            await self.log.stop()


class HistoryReader:
    """Pages of a queue's history from a log, with parked cursors for sequential paging."""

    def __init__(self, log: Log | None = None, *,
                 open_log: Callable[[], Awaitable[Log]] | None = None, batch: int = 2000,
                 max_cursors: int = 8, idle_seconds: float = 60.0,
                 scratch_dir: str | None = None,
                 snapshots: SnapshotStore | None = None) -> None:
        """Read ``log``, or a log ``open_log`` opens per new replay (a read-only view as of
        that moment, closed with its cursor)."""
        if (log is None) == (open_log is None):
            raise ValueError("give exactly one of log and open_log")
        self._log = log
        self._open_log = open_log
        self._batch = batch
        self._max = max_cursors
        self._idle = idle_seconds
        self._scratch = scratch_dir
        self._snapshots = snapshots
        self._cursors: OrderedDict[tuple[str, str, int], _Cursor] = OrderedDict()
        self.replays = 0  # replays started cold (tests read it)
        self.replayed = 0  # records those replays read (tests count the work)

    async def page(self, project: str, queue: str, marker: int | None,
                   limit: int) -> list[Entry]:
        """Up to ``limit`` entries of the queue with offset > ``marker``, oldest first."""
        await self._expire()
        after = -1 if marker is None else marker
        cursor = self._cursors.pop((project, queue, after), None)
        if cursor is None:
            cursor = await self._open(project, queue, marker)
        out: list[Entry] = []
        parked = False
        try:
            async for entry in cursor.entries:
                if entry.offset <= after:
                    continue
                out.append(entry)
                if len(out) >= limit:
                    break
            if len(out) >= limit:
                await self._park((project, queue, out[-1].offset), cursor)
                parked = True
        finally:
            self.replayed += cursor.history.replayed - cursor.counted
            cursor.counted = cursor.history.replayed
            if not parked:
                await cursor.close()
        return out

    async def _open(self, project: str, queue: str, marker: int | None) -> _Cursor:
        log = self._log
        owned = None
        if log is None:
            assert self._open_log is not None
            log = owned = await self._open_log()
        history = History(log, project, queue, batch=self._batch, scratch_dir=self._scratch,
                          snapshots=self._snapshots)
        self.replays += 1
        return _Cursor(history, history.entries(after_offset=marker), owned)

    async def _park(self, key: tuple[str, str, int], cursor: _Cursor) -> None:
        cursor.used = time.monotonic()
        self._cursors[key] = cursor
        while len(self._cursors) > self._max:
            _, oldest = self._cursors.popitem(last=False)
            await oldest.close()

    async def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, c in self._cursors.items() if now - c.used > self._idle]:
            await self._cursors.pop(key).close()

    async def close(self) -> None:
        """Drop every parked cursor and its scratch store (at shutdown)."""
        while self._cursors:
            _, cursor = self._cursors.popitem()
            await cursor.close()


class HistorySource(Protocol):
    """What the route needs: pages of entries (``HistoryReader`` or a process around it)."""

    async def page(self, project: str, queue: str, marker: int | None,
                   limit: int) -> list[Entry]:
        ...

    async def close(self) -> None:
        ...


def _reader(request: Request) -> HistorySource:
    return request.app.state.history  # type: ignore[no-any-return]


def _marker(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise HTTPError(400, INVALID_PARAM, 'The "marker" parameter is invalid. '
                                            "The value must be a log offset.")
    return value


async def queue_history(request: Request) -> Response:
    """Admin only: the commands on a queue with who/when/what and their outcomes."""
    require_role(request, "admin")
    q = query(request)
    limit = check_limit(q.int("limit", DEFAULT_LIMIT) or 0, MAX_LIMIT,
                        f"Limit must be at least 1 and may not be greater than {MAX_LIMIT}.")
    marker = _marker(q.str("marker"))
    queue = queue_name(request)
    try:
        entries = await _reader(request).page(project(request), queue, marker, limit)
    except NotRetainedError as exc:
        raise HTTPError(400, INVALID_PARAM, f'The "marker" parameter is invalid: {exc}.'
                        ) from None
    links: list[dict[str, str]] = []
    if entries:
        params = [("limit", q.str("limit") or "")] if q.has("limit") else []
        params.append(("marker", str(entries[-1].offset)))
        links = render.next_link(f"/v2/queues/{queue}/history", params)
    return JSONResponse({"history": [e.as_json() for e in entries], "links": links})
