"""Reserved queue metadata keys (zaqar-api.md §6): validation and the defaults shown on reads.

Pure functions shared by the service (PUT, before append) and apply (PATCH, against state).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

QUEUE_NAME = re.compile(r"[a-zA-Z0-9_\-.]{1,64}")


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured limits metadata is checked against (stamped on commands that need them)."""

    max_messages_post_size: int = 262144
    max_message_ttl: int = 1209600
    max_message_delay: int = 900
    default_message_ttl: int = 3600
    default_message_delay: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "max_messages_post_size": self.max_messages_post_size,
            "max_message_ttl": self.max_message_ttl,
            "max_message_delay": self.max_message_delay,
            "default_message_ttl": self.default_message_ttl,
            "default_message_delay": self.default_message_delay,
        }

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Limits:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


RESERVED_SHOWN = (
    "_max_messages_post_size",
    "_default_message_ttl",
    "_default_message_delay",
    "_dead_letter_queue",
    "_dead_letter_queue_messages_ttl",
    "_max_claim_count",
    "_enable_encrypt_messages",
)
RESERVED = (*RESERVED_SHOWN, "_flavor", "_retry_policy")

RETRY_INT_KEYS = (
    "retries_with_no_delay", "minimum_delay_retries", "minimum_delay", "maximum_delay",
    "maximum_delay_retries",
)
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "exponential", "geometric")


def _is_int(value: Any) -> bool:
    """JSON ints; ``true`` counts as 1 like upstream, and then usually fails a range check."""
    return isinstance(value, int)


def validate(metadata: dict[str, Any], limits: Limits) -> str | None:
    """The first validation message for ``metadata``, or None when it is acceptable."""
    size = metadata.get("_max_messages_post_size")
    if size is not None:
        if not _is_int(size):
            return "_max_messages_post_size must be integer."
        if not 0 < size <= limits.max_messages_post_size:
            return (f"_max_messages_post_size can not exceed {limits.max_messages_post_size}, "
                    " and must be at least greater than 0.")
    ttl = metadata.get("_default_message_ttl")
    if ttl is not None:
        if not _is_int(ttl):
            return "_default_message_ttl must be integer."
        if not 60 <= ttl <= limits.max_message_ttl:
            return (f"_default_message_ttl can not exceed {limits.max_message_ttl} seconds, "
                    "and must be at least 60 seconds long.")
    delay = metadata.get("_default_message_delay")
    if delay is not None:
        if not _is_int(delay):
            return "_default_message_delay must be integer."
        if not 0 <= delay <= limits.max_message_delay:
            return (f"The TTL can not exceed {limits.max_message_delay} seconds, and must be "
                    "at least 0 seconds long.")
    dlq = metadata.get("_dead_letter_queue")
    if dlq is not None and not (isinstance(dlq, str) and QUEUE_NAME.fullmatch(dlq)):
        return "_dead_letter_queue must be a valid queue name."
    count = metadata.get("_max_claim_count")
    if count is not None and not _is_int(count):
        return "_max_claim_count must be integer."
    dlq_ttl = metadata.get("_dead_letter_queue_messages_ttl")
    if dlq_ttl is not None:
        if not _is_int(dlq_ttl):
            return "_dead_letter_queue_messages_ttl must be integer."
        if not 60 <= dlq_ttl <= limits.max_message_ttl:
            return (f"The TTL for a message may not exceed {limits.max_message_ttl} seconds, "
                    "and must be at least 60 seconds long.")
    encrypt = metadata.get("_enable_encrypt_messages")
    if encrypt is not None and not isinstance(encrypt, bool):
        return "_enable_encrypt_messages must be boolean."
    policy = metadata.get("_retry_policy")
    if policy is not None:
        return _validate_retry_policy(policy)
    return None


def _validate_retry_policy(policy: Any) -> str | None:
    if not isinstance(policy, dict):
        return "retry_policy must be a dict."
    for key in RETRY_INT_KEYS:
        if key in policy and not _is_int(policy[key]):
            return f"Retry policy: {key} must be a integer."
    if "retry_backoff_function" in policy:
        function = policy["retry_backoff_function"]
        if not isinstance(function, str):
            return "retry_backoff_function must be a string."
        if function not in BACKOFF_FUNCTIONS:
            return "invalid retry_backoff_function."
    if "ignore_subscription_override" in policy and not isinstance(
        policy["ignore_subscription_override"], bool
    ):
        return "ignore_subscription_override must be a boolean."
    minimum = policy.get("minimum_delay", 5)
    maximum = policy.get("maximum_delay", 30)
    if minimum >= maximum:
        return "minimum_delay must less than maximum_delay."
    if maximum - minimum < 10:
        return "invalid minimum_delay and maximum_delay."
    return None


def with_defaults(stored: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Stored metadata with every shown reserved key that is missing or falsy defaulted."""
    defaults: dict[str, Any] = {
        "_max_messages_post_size": limits.max_messages_post_size,
        "_default_message_ttl": limits.default_message_ttl,
        "_default_message_delay": limits.default_message_delay,
        "_dead_letter_queue": None,
        "_dead_letter_queue_messages_ttl": None,
        "_max_claim_count": None,
        "_enable_encrypt_messages": False,
    }
    out = dict(stored)
    for key, value in defaults.items():
        if not out.get(key):
            out[key] = value
    return out
