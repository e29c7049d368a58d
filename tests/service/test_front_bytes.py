"""A front answers byte for byte as it did before its hot paths were cut (issue 15): every
case of ``tests/service/front_cases.py`` — the hot paths, the core's refusals and hostile
input — against the answers kept in ``front_golden.json`` (main bfaa5a2's), with what the
front sent the core for each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.service import front_cases

GOLDEN = json.loads((Path(__file__).parent / "front_golden.json").read_text())


@pytest.fixture(scope="module")
def answered() -> dict:
    import asyncio

    return asyncio.run(front_cases.answers())


def test_every_case_is_kept() -> None:
    assert sorted(GOLDEN) == sorted(c.name for c in front_cases.CASES)


@pytest.mark.parametrize("name", [c.name for c in front_cases.CASES])
def test_the_front_answers_as_before(answered: dict, name: str) -> None:
    assert answered[name] == GOLDEN[name]
