"""``workers = 0`` means one front per core this process may use (its CPU affinity)."""

from __future__ import annotations

import os
import subprocess
import sys

from ops.serve import usable_cores


def test_usable_cores_follow_the_cpu_affinity() -> None:
    allowed = os.sched_getaffinity(0)
    assert usable_cores() == len(allowed)
    one = min(allowed)
    out = subprocess.run(
        [sys.executable, "-c", "import os; from ops.serve import usable_cores; "
         f"os.sched_setaffinity(0, {{{one}}}); print(usable_cores(), os.cpu_count())"],
        capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1"
    assert int(out[1]) == (os.cpu_count() or 1)  # which counts every core (2 here: it differs)
