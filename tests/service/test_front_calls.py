"""The Python calls a front's own layers make per request on the hot paths (issue 15),
counted by cProfile in-process (``marconi bench front``'s harness: the app ``ops.front``
serves over a real ``RemoteGateway``, the core's answer canned). A count, not a time: it
does not move with the machine's load. Main bfaa5a2 made 324 (post), 312 (claim) and 234
(delete); these bounds leave a little room over what the front makes now (227, 219, 152)."""

from __future__ import annotations

import asyncio
import cProfile
import pstats

import pytest
import uvloop

from ops.bench import front

BOUNDS = {"post": 235, "claim": 227, "delete": 160}
REQUESTS = 200


async def calls_per_request(name: str) -> float:
    link = front.InstantLink()
    app = front.front_app(link)
    (scenario,) = [s for s in front.scenarios() if s.name == name]
    link.answer = scenario.answer
    one = front.driver(app, scenario)
    for _ in range(50):  # warm: caches, the first draw of ids, metric series
        await one()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(REQUESTS):
        await one()
    profile.disable()
    return pstats.Stats(profile).total_calls / REQUESTS  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_a_request_makes_few_calls(name: str) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        calls = runner.run(calls_per_request(name))
    assert calls <= BOUNDS[name], f"{name}: {calls:.1f} calls per request"
