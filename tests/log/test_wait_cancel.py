"""``FileLog.wait`` honours a cancel of its caller even when the record it waits for arrives
in the same loop turn (Python 3.11's ``wait_for`` swallowed that cancel: a runner's stop then
waited forever on a tail that went on polling)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from log.filelog import FileLog


async def test_cancel_in_the_turn_the_record_arrives_is_not_swallowed(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", 1, durable=False) as log:
        waiting = asyncio.create_task(log.wait(0, 0, timeout=5.0))
        while not log._parts[0].waiters:  # parked on its future
            await asyncio.sleep(0)
        (fut,) = log._parts[0].waiters
        fut.set_result(None)  # what publishing a round does ...
        waiting.cancel()  # ... and a stop in the same turn
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 2.0)


async def test_a_timed_out_wait_leaves_no_future_behind(tmp_path: Path) -> None:
    async with FileLog(tmp_path / "log", 1, durable=False) as log:
        for _ in range(5):
            assert await log.wait(0, 0, timeout=0.01) == 0
        assert log._parts[0].waiters == []
