"""The request's headers as a dict, built once per request and shared by every layer that
reads them (the checks, auth, the handlers' ``Content-Length``)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers

from service.types import Scope


class RequestHeaders(Headers):
    """Starlette's ``Headers`` with dict lookups, built once per request: the checks mostly ask
    for headers a request does not carry, and ``Headers.get`` finds that out by scanning
    every header and raising and catching a ``KeyError``. First value wins, as there.

    ``first`` is that dict (lowercase names): the per-request checks look their literal,
    lowercase names up in it straight, a method call fewer per header they read."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        first: dict[str, str] = {}
        for key, value in reversed(scope["headers"]):  # the first one wins: written last
            first[key.decode("latin-1")] = value.decode("latin-1")
        self.first = self._first = first

    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._first


def request_headers(scope: Scope) -> RequestHeaders:
    """The request's ``RequestHeaders``, built once per request (again only if a layer
    replaced the headers, as token auth does with X-Project-ID)."""
    st = scope.setdefault("state", {})
    cached = st.get("headers")
    if cached is not None and cached[0] is scope["headers"]:
        return cached[1]  # type: ignore[no-any-return]
    headers = RequestHeaders(scope)  # (which makes scope["headers"] a list of its own)
    st["headers"] = (scope["headers"], headers)
    return headers
