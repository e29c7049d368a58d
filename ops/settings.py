"""Settings: every knob of a node, loaded once (TOML file, then ``MARCONI_*`` env, then flags).

Nothing else reads configuration: ``load_settings`` builds one frozen ``Settings`` and the
wiring passes the values into constructors. Names and defaults follow Zaqar's options
(zaqar-api.md §2) so an operator can carry a ``zaqar.conf`` over by hand.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from projections.metadata import Limits

logger = logging.getLogger("marconi.settings")

ENV_PREFIX = "MARCONI_"
AUTH_MODES = ("none", "token", "keystone")
CLIENT_ID_MODES = ("strict", "off")
LOG_FORMATS = ("text", "json")
API_VERSIONS = ("1", "1.1", "2")  # upstream's ids: GET / and enable_deprecated_api_versions
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "t", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "f", "n", ""})


class SettingsError(ValueError):
    """A settings file or variable that cannot be used; the message names it."""


FOREVER = "forever"
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, name: str = "duration") -> float:
    """Seconds in ``90s``, ``10m``, ``12h``, ``7d``, ``2w`` (a bare number is seconds); every
    duration setting uses this one parser. SettingsError naming ``name`` otherwise."""
    raw = str(text).strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else "s"
    number = raw[:-1] if raw[-1:] in _DURATION_UNITS else raw
    try:
        value = float(number)
    except ValueError:
        raise SettingsError(f"{name}: {text!r} is not a duration like 90s, 10m, 12h or 7d") \
            from None
    if not value > 0 or value != value or value == float("inf"):
        raise SettingsError(f"{name}: {text!r} must be a positive duration")
    return value * _DURATION_UNITS[unit]


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a static token stands for: its project and roles.

    A token without a project lets its holder name any X-Project-ID, i.e. act as every
    tenant. That is refused at load unless the token says so (``any_project = true``, for
    an operator's token): a forgotten ``project`` must not silently open every tenant.
    """

    project: str | None = None
    roles: tuple[str, ...] = ()
    any_project: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    """One node's configuration. Frozen: a running node never changes its settings."""

    # -- server ----------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8888
    data: str = "./data"
    partitions: int = 16
    workers: int = 0  # serve: HTTP front processes (0: one per core; 1: one process, no core)
    # serve --workers N: the fronts run this much nicer than the core (0..19; README "Every core")
    front_nice: int = 10
    request_timeout: float = 10.0  # seconds a request waits for the log or the projection
    graceful_timeout: float = 5.0  # seconds in-flight requests get on shutdown
    log_format: str = "text"  # "text" or "json" (one object per line, with request ids)
    access_log: bool = False  # one INFO line per request (logger marconi.access)
    store_memory_mb: int = 64  # RocksDB memtable and block cache, each (the store's RSS bound)
    # API versions served: "1" (v1.0), "1.1", "2"; one left out answers 404 and leaves GET /
    enable_api_versions: tuple[str, ...] = API_VERSIONS

    # -- auth and admin --------------------------------------------------------------
    auth: str = "none"  # "none": X-Roles honoured like upstream noauth; "token": static tokens
    tokens: Mapping[str, TokenGrant] = field(default_factory=dict)
    admin_mode: bool = False
    secret_key: str | None = None  # [signed_url] secret_key; /share answers 400 without it

    # -- auth = "keystone" (keystonemiddleware's [keystone_authtoken] names) -------------
    keystone_auth_url: str | None = None  # e.g. http://keystone:5000/v3
    keystone_username: str | None = None  # the service account validating user tokens
    keystone_password: str | None = None
    keystone_project_name: str | None = None  # the service account's project ("service")
    keystone_user_domain_name: str = "Default"
    keystone_project_domain_name: str = "Default"
    keystone_www_authenticate_uri: str | None = None  # sent in 401s; default keystone_auth_url
    keystone_interface: str = "internal"  # which catalog endpoint of identity validates
    keystone_region_name: str | None = None
    keystone_token_cache_time: int = 300  # seconds a validated (or refused) token is cached
    keystone_timeout: float = 10.0  # seconds per call to Keystone

    # -- transport limits (zaqar-api.md §2) ---------------------------------------------
    max_queues_per_page: int = 20
    max_messages_per_page: int = 20
    max_messages_per_claim_or_pop: int = 20
    max_subscriptions_per_page: int = 20
    max_queue_metadata: int = 65536
    max_messages_post_size: int = 262144
    max_message_ttl: int = 1209600
    max_message_delay: int = 900
    max_claim_ttl: int = 43200
    max_claim_grace: int = 43200
    default_message_ttl: int = 3600
    default_message_delay: int = 0
    default_claim_ttl: int = 300
    default_claim_grace: int = 60
    default_subscription_ttl: int = 3600
    subscriber_types: tuple[str, ...] = ("http", "https", "mailto", "trust+http", "trust+https")
    client_id_uuid_safe: str = "strict"
    min_length_client_id: int = 10
    max_length_client_id: int = 36
    message_delete_with_claim_id: bool = False
    enable_checksum: bool = False

    # -- abuse limits and scrape auth (issue 9; 0 = off) ---------------------------------
    metrics_token: str | None = None  # when set, /metrics wants "Authorization: Bearer <it>"
    max_queues_per_project: int = 0  # queues one project may hold (all partitions together)
    max_messages_per_queue: int = 0  # messages stored in one queue (decided in apply)
    # requests per second per project (token bucket refill); under serve --workers N each
    # front process enforces rate_limit / N on the connections it serves (README "Settings")
    rate_limit: float = 0.0
    rate_burst: int = 0  # bucket size; 0 = max(1, 2 * rate_limit)
    body_timeout: float = 30.0  # seconds a client may take to send a request body (408)

    # -- snapshots (DESIGN.md §8): durations are seconds, written like ``90s``, ``10m``, ``7d``
    snapshot_interval: float = 600.0  # log time between a partition's automatic snapshots
    snapshot_keep: int = 3  # newest snapshots kept per partition (the oldest bounds retention)

    # -- notifications (DESIGN §9; README "Notifications") ------------------------------
    notifications: bool = True  # posts record deliveries to their queue's subscribers
    require_confirmation: bool = False  # [notification] require_confirmation
    notification_private_targets: bool = False  # allow loopback/private/link-local URLs
    notification_timeout: float = 10.0  # seconds per webhook request or SMTP session
    notification_concurrency: int = 64  # attempts in flight over all partitions
    notification_per_subscription: int = 4  # attempts in flight per subscription
    max_subscriptions_per_queue: int = 1000  # live subscriptions a queue (or topic) may have
    notification_public_url: str | None = None  # base of confirm links (else relative)
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False

    # -- the log at rest and retention (DESIGN.md §8) --------------------------------------
    log_retention: str = "7d"  # a duration (parse_duration) or "forever"
    log_segment_bytes: int = 64 * 1024 * 1024
    log_preallocate_bytes: int = 1024 * 1024  # zeros kept ahead of the records (0: none)
    log_archive_dir: str | None = None  # removed segments are moved here, gzipped

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise SettingsError(f"auth must be one of {AUTH_MODES}, not {self.auth!r}")
        if self.auth == "keystone":
            missing = [name for name in ("keystone_auth_url", "keystone_username",
                                         "keystone_password", "keystone_project_name")
                       if not getattr(self, name)]
            if missing:
                raise SettingsError(f"auth = \"keystone\" needs {', '.join(missing)}")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log_format must be one of {LOG_FORMATS}, "
                                f"not {self.log_format!r}")
        if self.client_id_uuid_safe not in CLIENT_ID_MODES:
            raise SettingsError(
                f"client_id_uuid_safe must be one of {CLIENT_ID_MODES}, "
                f"not {self.client_id_uuid_safe!r}")
        unknown = [v for v in self.enable_api_versions if v not in API_VERSIONS]
        if unknown:
            raise SettingsError(f"enable_api_versions: unknown versions {unknown}; "
                                f"valid are {list(API_VERSIONS)}")
        if self.partitions <= 0:
            raise SettingsError("partitions must be positive")
        if self.store_memory_mb < 1:
            raise SettingsError("store_memory_mb must be at least 1")
        if self.max_subscriptions_per_queue < 0:
            raise SettingsError("max_subscriptions_per_queue must be 0 (no cap) or more")
        if self.workers < 0:
            raise SettingsError("workers must be 0 (one per core) or more")
        if not 0 <= self.front_nice <= 19:
            raise SettingsError("front_nice must be from 0 (as the core) to 19")
        for token, grant in self.tokens.items():
            if not grant.project and not grant.any_project:
                raise SettingsError(
                    f"tokens.{token}: no project, so its holder could pick any X-Project-ID; "
                    "give it a project, or any_project = true if it is meant to act for "
                    "every project")
        for name in ("rate_limit", "rate_burst", "body_timeout"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")

        if self.snapshot_interval <= 0:
            raise SettingsError("snapshot_interval must be positive")
        if self.snapshot_keep < 1:
            raise SettingsError("snapshot_keep must be at least 1")
        if self.log_retention.strip().lower() != FOREVER:
            parse_duration(self.log_retention, "log_retention")
        if not 4096 <= self.log_segment_bytes <= 1 << 30:
            raise SettingsError("log_segment_bytes must be between 4096 and 1 GiB")
        if not 0 <= self.log_preallocate_bytes <= 64 << 20:
            raise SettingsError("log_preallocate_bytes must be between 0 (none) and 64 MiB")
        for f in dataclasses.fields(self):
            if f.name.startswith(("max_", "default_")) and f.type == "int":
                if getattr(self, f.name) < 0:
                    raise SettingsError(f"{f.name} must not be negative")

    @property
    def log_retention_ms(self) -> int | None:
        """``log_retention`` in milliseconds; None for ``forever`` (keep the whole log)."""
        if self.log_retention.strip().lower() == FOREVER:
            return None
        return int(parse_duration(self.log_retention, "log_retention") * 1000)

    def limits(self) -> Limits:
        """The limits queue metadata is validated against (stamped on UpdateQueue)."""
        return Limits(
            max_messages_post_size=self.max_messages_post_size,
            max_message_ttl=self.max_message_ttl,
            max_message_delay=self.max_message_delay,
            default_message_ttl=self.default_message_ttl,
            default_message_delay=self.default_message_delay,
        )


_HINTS = typing.get_type_hints(Settings)

# Settings written as durations (in seconds, through ``parse_duration``).
DURATIONS = frozenset({"snapshot_interval"})


def _parse_bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(f"{name}: {raw!r} is not a boolean")


def _tokens(name: str, value: Any) -> dict[str, TokenGrant]:
    """``{token: {"project": str?, "roles": [str]}}`` from TOML tables or a JSON env value."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError as exc:
            raise SettingsError(f"{name}: not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SettingsError(f"{name}: expected a table of token -> {{project, roles}}")
    out: dict[str, TokenGrant] = {}
    for token, grant in value.items():
        if not isinstance(grant, dict) or set(grant) - {"project", "roles", "any_project"}:
            raise SettingsError(f"{name}.{token}: expected {{project?, roles?, any_project?}}")
        project = grant.get("project")
        roles = grant.get("roles", [])
        if project is not None and not isinstance(project, str):
            raise SettingsError(f"{name}.{token}.project must be a string")
        if isinstance(roles, str):
            roles = [r for r in roles.split(",") if r.strip()]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise SettingsError(f"{name}.{token}.roles must be a list of strings")
        any_project = grant.get("any_project", False)
        if isinstance(any_project, str):
            any_project = _parse_bool(f"{name}.{token}.any_project", any_project)
        if not isinstance(any_project, bool):
            raise SettingsError(f"{name}.{token}.any_project must be a boolean")
        out[str(token)] = TokenGrant(project=project, roles=tuple(r.strip() for r in roles),
                                     any_project=any_project)
    return out


def _coerce(name: str, value: Any, label: str | None = None) -> Any:
    """A file or env value converted to the field's type, or SettingsError naming ``label``."""
    hint = _HINTS[name]
    label = label or name
    if name == "tokens":
        return _tokens(label, value)
    if name in DURATIONS:
        return parse_duration(value, label)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):  # ``str | None``
        if value is None or (isinstance(value, str) and value == ""):
            return None
        return str(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _parse_bool(label, value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    raise SettingsError(f"{label}: {value!r} is not a valid {hint}")


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a TOML file (flat keys, ``[tokens.<token>]`` tables)."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not TOML: {exc}") from exc
    unknown = sorted(set(raw) - set(_HINTS))
    if unknown:
        raise SettingsError(f"settings file {path}: unknown settings {unknown}")
    return {key: _coerce(key, value) for key, value in raw.items()}


def _service_link(value: str) -> bool:
    """A Kubernetes service-link value (``MARCONI_PORT=tcp://10.0.0.1:8888``), not a setting."""
    return value.strip().lower().startswith(("tcp://", "udp://", "sctp://"))


def read_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as ``MARCONI_<NAME>`` variables.

    Unknown names are logged and ignored, not fatal: Kubernetes injects ``MARCONI_PORT=
    tcp://...``, ``MARCONI_SERVICE_HOST``, ``MARCONI_PORT_8888_TCP...`` into every pod of a
    namespace with a Service named ``marconi``, and the server must still start there. A
    ``tcp://`` value is such a link, never a port.
    """
    out: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in _HINTS or _service_link(value):
            ignored.append(key)
            continue
        out[name] = _coerce(name, value, key)
    if ignored:
        logger.warning("ignoring environment variables that are not Marconi settings: %s",
                       ", ".join(sorted(ignored)))
    return out


def load_settings(
    config: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults < TOML file < environment < ``overrides`` (command-line flags; None = unset)."""
    values: dict[str, Any] = {}
    if config is not None:
        values.update(read_file(Path(config)))
    values.update(read_env(os.environ if env is None else env))
    for key, value in overrides.items():
        if key not in _HINTS:
            raise SettingsError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = _coerce(key, value)
    return Settings(**values)
