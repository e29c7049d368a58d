"""``serve --workers 2 --front-nice N``: every front, a restarted one too, runs N steps nicer
than the core (the core keeps the CPU every request waits for; ``ops.front.yield_to_core``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ops.settings import Settings, SettingsError
from tests.e2e.test_crash import alive, children, free_port, start_server, wait_for


def niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def test_fronts_run_nicer_than_the_core_and_a_restarted_one_too(tmp_path: Path) -> None:
    proc = start_server(tmp_path / "data", free_port(), "--workers", "2", "--front-nice", "7")
    try:
        core = proc.pid
        wait_for(lambda: len(children(core)) == 2, 30, "two fronts")
        fronts = children(core)
        assert [niceness(p) - niceness(core) for p in fronts] == [7, 7]
        os.kill(fronts[0], signal.SIGKILL)
        wait_for(lambda: len([p for p in children(core) if p != fronts[0] and alive(p)]) == 2,
                 30, "the killed front was not started again")
        [again] = [p for p in children(core) if p not in fronts]
        # it sets its own priority once started, before it connects to the core
        wait_for(lambda: niceness(again) != niceness(core), 30, "the new front never yielded")
        assert niceness(again) - niceness(core) == 7
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.parametrize("nice", [-1, 20])
def test_a_front_nice_outside_0_to_19_is_refused(nice: int) -> None:
    with pytest.raises(SettingsError, match="front_nice"):
        Settings(front_nice=nice)
