"""``auth = "keystone"``: X-Auth-Token validated by Keystone v3, as keystonemiddleware does.

keystonemiddleware is a WSGI (webob) filter, so Marconi does not run it; it takes the same
steps with keystoneauth1, the library keystonemiddleware itself stands on:

* a service account (``keystone_username`` / ``keystone_password`` in
  ``keystone_project_name``) holds a token of its own — keystoneauth1's ``Password`` plugin
  gets it and renews it before it expires;
* each user token is validated with ``GET /v3/auth/tokens`` (``X-Subject-Token``) on the
  identity endpoint the catalog names for ``keystone_interface``; expired and revoked tokens
  answer 404 there and are refused here (401);
* the token's project becomes the request's project (a client-sent ``X-Project-ID`` that
  differs is refused, 403) and its roles decide the admin routes;
* answers are cached for ``keystone_token_cache_time`` seconds (never past the token's own
  expiry), so a revoked token keeps working for at most that long — keystonemiddleware's
  ``token_cache_time`` trade-off, same default (300 s);
* a 401 carries ``WWW-Authenticate: Keystone uri="..."`` (``www_authenticate_uri``), which
  is how clients learn where to authenticate.

keystoneauth1 is synchronous (requests), so validations run in a small thread pool and the
event loop never blocks; concurrent requests with one uncached token share one validation.
The cache is a bounded LRU, so memory does not grow with the number of tokens seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keystoneauth1 import access, exceptions, session
from keystoneauth1.identity import v3
from starlette.datastructures import Headers
from starlette.responses import Response

from service.errors import error_response

logger = logging.getLogger(__name__)

CACHE_ENTRIES = 10_000  # tokens remembered at most (least recently used dropped first)
VALIDATION_THREADS = 4


@dataclass(frozen=True, slots=True)
class KeystoneOptions:
    """Where Keystone is and who Marconi is to it (keystonemiddleware's option names)."""

    auth_url: str
    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    www_authenticate_uri: str | None = None  # default: auth_url
    interface: str = "internal"
    region_name: str | None = None
    token_cache_time: float = 300.0
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Identity:
    """What a valid token says: its project, its roles (lower case) and when it expires."""

    project: str | None
    roles: tuple[str, ...]
    user: str | None
    expires: float | None  # epoch seconds


class KeystoneUnavailable(Exception):
    """Keystone could not be asked (down, misconfigured service account): 503, not 401."""


class TokenValidator:
    """Validates user tokens with the service account's session; caches the answers."""

    def __init__(self, options: KeystoneOptions) -> None:
        self.options = options
        auth = v3.Password(
            auth_url=options.auth_url, username=options.username, password=options.password,
            project_name=options.project_name, user_domain_name=options.user_domain_name,
            project_domain_name=options.project_domain_name)
        self._session = session.Session(auth=auth, timeout=options.timeout)
        self._pool = ThreadPoolExecutor(VALIDATION_THREADS, thread_name_prefix="keystone")
        self._cache: OrderedDict[str, tuple[Identity | None, float]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Identity | None]] = {}
        self.validations = 0  # calls to Keystone (for tests and metrics)

    @property
    def www_authenticate(self) -> str:
        return f'Keystone uri="{self.options.www_authenticate_uri or self.options.auth_url}"'

    async def identity(self, token: str) -> Identity | None:
        """The token's identity, or None when Keystone says it is not valid (any more)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > now:
                self._cache.move_to_end(key)
                return cached[0]
            del self._cache[key]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._validate, token)
        self._pending[key] = future
        try:
            found = await asyncio.shield(future)
        finally:
            self._pending.pop(key, None)
        self._remember(key, found)
        return found

    def _remember(self, key: str, found: Identity | None) -> None:
        ttl = self.options.token_cache_time
        if found is not None and found.expires is not None:
            ttl = min(ttl, found.expires - time.time())
        if ttl <= 0:
            return
        self._cache[key] = (found, time.monotonic() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    def _validate(self, token: str) -> Identity | None:
        """One ``GET /v3/auth/tokens`` (runs in the pool thread)."""
        self.validations += 1
        endpoint = {"service_type": "identity", "interface": self.options.interface,
                    "region_name": self.options.region_name, "version": (3, 0)}
        try:
            resp = self._session.get(
                "/auth/tokens", headers={"X-Subject-Token": token, "Accept": "application/json"},
                endpoint_filter=endpoint, authenticated=True)
        except exceptions.NotFound:  # unknown, expired or revoked
            return None
        except exceptions.ClientException as exc:
            logger.error("keystone token validation failed: %s", exc)
            raise KeystoneUnavailable(str(exc)) from exc
        info = access.create(body=resp.json(), auth_token=token)
        expires = info.expires
        return Identity(
            project=info.project_id,
            roles=tuple(r.lower() for r in info.role_names or ()),
            user=info.user_id,
            expires=expires.astimezone(UTC).timestamp() if isinstance(expires, datetime)
            else None)

    async def authenticate(self, headers: Headers) -> Identity | Response:
        """The identity of a request, or the response refusing it (401, 403 or 503)."""
        token = headers.get("x-auth-token", "")
        if not token:
            return self.unauthorized()
        try:
            found = await self.identity(token)
        except KeystoneUnavailable:
            return error_response(
                503, "Service Unavailable",
                "The identity service cannot be reached. Please try again later.",
                {"Retry-After": "5"})
        if found is None or not found.project:
            return self.unauthorized()
        sent = headers.get("x-project-id")
        if sent is not None and sent != found.project:
            return error_response(403, "Not authorized",
                                  "X-Project-ID does not match the project of the token.")
        return found

    def unauthorized(self) -> Response:
        return error_response(401, "Unauthorized",
                              "The request you have made requires authentication.",
                              {"WWW-Authenticate": self.www_authenticate})

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.session.close()


def validator_from(settings: Any) -> TokenValidator | None:
    """The validator ``settings`` ask for (``auth = "keystone"``), else None."""
    if getattr(settings, "auth", None) != "keystone":
        return None
    return TokenValidator(KeystoneOptions(
        auth_url=settings.keystone_auth_url, username=settings.keystone_username,
        password=settings.keystone_password, project_name=settings.keystone_project_name,
        user_domain_name=settings.keystone_user_domain_name,
        project_domain_name=settings.keystone_project_domain_name,
        www_authenticate_uri=settings.keystone_www_authenticate_uri,
        interface=settings.keystone_interface, region_name=settings.keystone_region_name,
        token_cache_time=settings.keystone_token_cache_time,
        timeout=settings.keystone_timeout))
