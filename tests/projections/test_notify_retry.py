"""The retry schedule against Zaqar's formulas (zaqar/notification/tasks/webhook.py).

The reference functions below are upstream's, transcribed as plain lists; Marconi computes
each element lazily, and the two must agree element by element.
"""

from __future__ import annotations

import math

import pytest

from projections import retry

INTERVAL = 5  # consts.LINEAR_INTERVAL


def upstream_linear(lo: int, hi: int, times: int) -> list[int]:
    return list(range(lo, hi, times))


def upstream_geometric(lo: int, hi: int, times: int) -> list[int]:
    x_max = int((hi - lo) / times)
    k = math.pow(10, math.log10(hi / lo) / (x_max - 1))
    return [int(lo * math.pow(k, a - 1)) for a in range(1, x_max + 1)]


def upstream_exponential(lo: int, hi: int, times: int) -> list[int]:
    x_max = int((hi - lo) / times)
    k = math.pow(10, math.log10(hi / lo) / (x_max - 1))
    p = lo / k
    return [int(p * math.pow(k, a)) for a in range(1, x_max + 1)]


def upstream_arithmetic(lo: int, hi: int, times: int) -> list[int]:
    x_max = int((hi - lo) / times)
    d = 2.0 * (hi - lo) / (x_max * (x_max - 1))
    return [int(lo + (a - 1) * a * d / 2) for a in range(1, x_max + 1)]


UPSTREAM = {"linear": upstream_linear, "geometric": upstream_geometric,
            "exponential": upstream_exponential, "arithmetic": upstream_arithmetic}


def upstream_schedule(policy: dict) -> list[int]:
    """The sleeps of upstream's ``_retry_post`` in order (one attempt follows each)."""
    lo = policy.get("minimum_delay", 5)
    hi = policy.get("maximum_delay", 30)
    function = UPSTREAM[policy.get("retry_backoff_function", "linear")]
    return ([0] * policy.get("retries_with_no_delay", 3)
            + [lo] * policy.get("minimum_delay_retries", 3)
            + function(lo, hi, INTERVAL)
            + [hi] * policy.get("maximum_delay_retries", 3))


@pytest.mark.parametrize("function", sorted(UPSTREAM))
@pytest.mark.parametrize("lo,hi", [(5, 30), (1, 11), (2, 60), (10, 300), (7, 3600)])
def test_schedule_matches_upstream(function: str, lo: int, hi: int) -> None:
    policy = {"retry_backoff_function": function, "minimum_delay": lo, "maximum_delay": hi,
              "retries_with_no_delay": 2, "minimum_delay_retries": 1,
              "maximum_delay_retries": 2}
    assert retry.schedule(policy) == upstream_schedule(policy)


def test_defaults_are_upstreams() -> None:
    assert retry.schedule({}) == [0, 0, 0, 5, 5, 5, 5, 10, 15, 20, 25, 30, 30, 30]
    assert retry.schedule({}) == upstream_schedule({})


def test_known_values_of_each_function() -> None:
    base = {"retries_with_no_delay": 0, "minimum_delay_retries": 0, "maximum_delay_retries": 0,
            "minimum_delay": 5, "maximum_delay": 30}
    assert retry.schedule({**base, "retry_backoff_function": "geometric"}) == [5, 7, 12, 19, 30]
    assert retry.schedule({**base, "retry_backoff_function": "exponential"}) == [
        5, 7, 12, 19, 30]
    assert retry.schedule({**base, "retry_backoff_function": "arithmetic"}) == [
        5, 7, 12, 20, 30]


def test_first_failure_gets_the_first_retry_and_the_end_gives_up() -> None:
    policy = {"retries_with_no_delay": 1, "minimum_delay_retries": 0,
              "maximum_delay_retries": 0, "minimum_delay": 5, "maximum_delay": 15}
    assert [retry.next_delay(policy, n) for n in range(1, 5)] == [0, 5, 10, None]


def test_huge_counts_are_computed_lazily() -> None:
    policy = {"retries_with_no_delay": 10**12}
    assert retry.next_delay(policy, 10**11) == 0


@pytest.mark.parametrize("sub,queue,expected", [
    ({"minimum_delay": 1}, {"minimum_delay": 2}, {"minimum_delay": 1}),
    ({}, {"minimum_delay": 2}, {"minimum_delay": 2}),
    ({"minimum_delay": 1}, {"minimum_delay": 2, "ignore_subscription_override": True},
     {"minimum_delay": 2, "ignore_subscription_override": True}),
    ({"minimum_delay": 1, "ignore_subscription_override": True}, {"minimum_delay": 2},
     {"minimum_delay": 2}),
    ({"ignore_subscription_override": True}, None, {}),
    (None, None, {}),
])
def test_which_policy_applies(sub: dict | None, queue: dict | None, expected: dict) -> None:
    assert retry.effective_policy(sub, queue) == expected


def test_undefined_upstream_cases_fall_back_to_linear() -> None:
    policy = {"retry_backoff_function": "geometric", "minimum_delay": 0, "maximum_delay": 20,
              "retries_with_no_delay": 0, "minimum_delay_retries": 0,
              "maximum_delay_retries": 0}
    assert retry.schedule(policy) == [0, 5, 10, 15]
