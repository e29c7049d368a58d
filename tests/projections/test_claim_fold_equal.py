"""Claim and delete got cheaper (issue 15) without a rules version: the same log must fold to
the same keys and values, checkpoint by checkpoint, as the code before the change did.

The expected digests were produced with the code of da673f1 (main before issue 15's change,
with this module and ``claim_history.py`` added first): ``checkpoints(history(seed), 50)``
and the workload's, printed by hand; batches 1 and 7 gave the same. Per record, the change
sets (tombstones included) were also compared with that code's, equal for these logs and
for ``Workload`` under every rules version. Any change to what claim, delete, expiry or
their indexes write changes these digests — that needs a rules version (DESIGN §7), not a
new digest here. The logs are folded under the rules that were the latest then
(``OUTCOME_GENERATIONS``); what rules 8 change is tested in ``test_lean_expiry``.
"""

from __future__ import annotations

import pytest

from projections.commands import encode
from projections.rules import versions
from tests.projections.claim_history import history
from tests.projections.foldcheck import checkpoints
from tests.projections.workload import Workload

# Folded with the code of da673f1; see the module docstring.
EXPECTED = {
    1: "1857bbb60e2c68c7f56a64e430cec580b3852661b4530d5f21b3b1388356d886",
    2: "ce9a43eedf1fa42772b466830790f41839c3a5dd833778429fd24f92565c0a7f",
}
EXPECTED_WORKLOAD_3 = "0f6bf957f515096d9ed0c59ed13136cf7246bff73f6463940763669b8c00a099"


@pytest.mark.parametrize("seed", sorted(EXPECTED))
def test_claim_and_delete_traffic_folds_as_before(seed: int) -> None:
    records = history(seed, rules=versions.OUTCOME_GENERATIONS)
    for batch in (1, 50):
        assert checkpoints(records, batch) == EXPECTED[seed], batch


def test_the_general_workload_folds_as_before() -> None:
    records = [encode(cmd) for cmd in
               Workload(3, rules=versions.OUTCOME_GENERATIONS).commands(3000)]
    assert checkpoints(records, 50) == EXPECTED_WORKLOAD_3
