"""Zaqar's notification retry policy as pure functions (zaqar/notification/tasks/webhook.py).

Upstream retries inside a thread with ``time.sleep``; Marconi records each failed attempt
and the time of the next one in the log, so the schedule is computed here, at apply time,
from the policy and the number of failures so far. The phases are upstream's, in order:

1. ``retries_with_no_delay`` attempts at once (default 3);
2. ``minimum_delay_retries`` attempts, ``minimum_delay`` seconds apart (3, 5 s);
3. the backoff function from ``minimum_delay`` to ``maximum_delay`` (linear, arithmetic,
   geometric or exponential; step ``LINEAR_INTERVAL`` = 5);
4. ``maximum_delay_retries`` attempts, ``maximum_delay`` seconds apart (3, 30 s);

then the delivery is given up. Elements are computed one at a time (never as a list), so a
tenant's ``retries_with_no_delay: 10**9`` costs nothing until it is used.
"""

from __future__ import annotations

import math
from typing import Any

RETRIES_WITH_NO_DELAY = 3
MINIMUM_DELAY_RETRIES = 3
MINIMUM_DELAY = 5
MAXIMUM_DELAY = 30
MAXIMUM_DELAY_RETRIES = 3
LINEAR_INTERVAL = 5
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "geometric", "exponential")
MAX_DELAY_SECONDS = 10**9  # keys are u64 ms; anything beyond is clamped


def effective_policy(subscription_policy: Any, queue_policy: Any) -> dict[str, Any]:
    """Which policy applies (upstream's ``_retry_policy`` choice, bit for bit).

    The queue's policy wins when either says ``ignore_subscription_override``; otherwise the
    subscription's own, else the queue's, else the defaults.
    """
    sub = subscription_policy if isinstance(subscription_policy, dict) else {}
    queue = queue_policy if isinstance(queue_policy, dict) else {}
    if sub.get("ignore_subscription_override") or queue.get("ignore_subscription_override"):
        return queue
    return sub or queue


def _int(policy: dict[str, Any], key: str, default: int) -> int:
    value = policy.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def _backoff_len(minimum: int, maximum: int, function: str) -> int:
    if function == "linear":
        return len(range(minimum, maximum, LINEAR_INTERVAL))
    return max(int((maximum - minimum) / LINEAR_INTERVAL), 0)


def backoff_delay(function: str, minimum: int, maximum: int, a: int) -> int:
    """Element ``a`` (0-based) of upstream's backoff function ``function``.

    ``linear`` is ``range(min, max, 5)``; the others, with ``x_max = int((max - min) / 5)``:
    geometric ``int(min * k**(x-1))``, exponential ``int(min / k * k**x)`` with
    ``k = 10 ** (log10(max / min) / (x_max - 1))``, arithmetic
    ``int(min + (x-1) * x * d / 2)`` with ``d = 2 (max - min) / (x_max (x_max - 1))``, for
    ``x = a + 1``. Where upstream's formula is undefined (a zero or negative minimum, one
    element) the linear value is used instead of failing.
    """
    x = a + 1
    x_max = int((maximum - minimum) / LINEAR_INTERVAL)
    try:
        if function == "geometric":
            k = math.pow(10, math.log10(maximum / minimum) / (x_max - 1))
            return int(minimum * math.pow(k, x - 1))
        if function == "exponential":
            k = math.pow(10, math.log10(maximum / minimum) / (x_max - 1))
            p = minimum / k
            return int(p * math.pow(k, x))
        if function == "arithmetic":
            d = 2.0 * (maximum - minimum) / (x_max * (x_max - 1))
            return int(minimum + (x - 1) * x * d / 2)
    except (ZeroDivisionError, ValueError, OverflowError):
        pass
    return minimum + a * LINEAR_INTERVAL


def next_delay(policy: dict[str, Any], failures: int) -> int | None:
    """Seconds until the next attempt after ``failures`` failed ones; None: give up.

    ``failures`` counts every failed attempt including the first (the post-time one).
    """
    retry = failures - 1  # index of the retry about to be scheduled
    if retry < 0:
        return 0
    no_delay = max(_int(policy, "retries_with_no_delay", RETRIES_WITH_NO_DELAY), 0)
    if retry < no_delay:
        return 0
    retry -= no_delay
    minimum = _int(policy, "minimum_delay", MINIMUM_DELAY)
    maximum = _int(policy, "maximum_delay", MAXIMUM_DELAY)
    min_retries = max(_int(policy, "minimum_delay_retries", MINIMUM_DELAY_RETRIES), 0)
    if retry < min_retries:
        return _clamp(minimum)
    retry -= min_retries
    function = policy.get("retry_backoff_function", "linear")
    if function not in BACKOFF_FUNCTIONS:
        function = "linear"
    steps = _backoff_len(minimum, maximum, function)
    if retry < steps:
        return _clamp(backoff_delay(function, minimum, maximum, retry))
    retry -= steps
    if retry < max(_int(policy, "maximum_delay_retries", MAXIMUM_DELAY_RETRIES), 0):
        return _clamp(maximum)
    return None


def _clamp(seconds: int) -> int:
    return min(max(seconds, 0), MAX_DELAY_SECONDS)


def schedule(policy: dict[str, Any], limit: int = 1000) -> list[int]:
    """The delays of every retry (at most ``limit``), for display and tests."""
    out: list[int] = []
    while len(out) < limit:
        delay = next_delay(policy, len(out) + 1)
        if delay is None:
            break
        out.append(delay)
    return out
