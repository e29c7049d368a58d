"""Error mapping: one exception for every client-visible failure and one place that renders it.

Bodies are Zaqar's ``{"title", "description"}`` (zaqar-api.md §1.4). Outcomes recorded by
apply (``{"error": kind, "description": ...}``) map to statuses here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service.responses import JSONResponse, empty

logger = logging.getLogger(__name__)

INVALID_API = "Invalid API request"
INVALID_BODY = "Invalid request body"
INVALID_PARAM = "Invalid parameter"
NOT_FOUND = "Not found"
CONFLICT = "Resource conflict"
UNABLE_TO_DELETE = "Unable to delete"
UNAVAILABLE = "Service temporarily unavailable"
INTERNAL = "Internal server error"
RETRY_AFTER_S = 1


class HTTPError(Exception):
    """A response-worthy failure: status, title, optional description and headers."""

    def __init__(self, status: int, title: str | None = None, description: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description or title or str(status))
        self.status = status
        self.title = title
        self.description = description
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return error_response(self.status, self.title, self.description, self.headers)


class Unavailable(HTTPError):
    """The log or the projection did not answer in time: 503 with Retry-After."""

    def __init__(self, description: str = "The request could not be completed.") -> None:
        super().__init__(503, UNAVAILABLE, f"{description} Please try again in a few seconds.",
                         {"Retry-After": str(RETRY_AFTER_S)})


def error_response(status: int, title: str | None, description: str | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    """Zaqar's error body; ``title=None`` gives an empty body (406)."""
    if title is None:
        return empty(status, headers)
    body: dict[str, str] = {"title": title}
    if description is not None:
        body["description"] = description
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def route_not_found() -> Response:
    return error_response(404, "404 Not Found")


def bad_body(description: str) -> HTTPError:
    """400 Invalid request body: syntax, types, missing fields (§1.4)."""
    return HTTPError(400, INVALID_BODY, description)


def bad_request(description: str) -> HTTPError:
    """400 Invalid API request: semantic validation (limits, ranges, unknown keys)."""
    return HTTPError(400, INVALID_API, description)


def not_found(description: str) -> HTTPError:
    return HTTPError(404, NOT_FOUND, description)


# outcome error kind -> (status, title)
OUTCOME_ERRORS: dict[str, tuple[int, str]] = {
    "not_found": (404, NOT_FOUND),
    "conflict": (409, CONFLICT),
    "invalid": (400, INVALID_API),
    "claimed": (403, UNABLE_TO_DELETE),
    "bad_claim": (400, UNABLE_TO_DELETE),
    "not_claimed": (400, UNABLE_TO_DELETE),
}


def check_outcome(outcome: Mapping[str, Any], *, invalid_title: str = INVALID_API,
                  conflict_headers: Mapping[str, str] | None = None) -> Mapping[str, Any]:
    """Return a successful outcome; raise the mapped HTTPError for a recorded refusal."""
    kind = outcome.get("error")
    if kind is None:
        return outcome
    status, title = OUTCOME_ERRORS.get(kind, (400, INVALID_API))
    if kind == "invalid":
        title = invalid_title
    headers = conflict_headers if kind == "conflict" else None
    raise HTTPError(status, title, str(outcome.get("description", "")), headers)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return exc.response()


async def handle_starlette_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return framework_error(exc)


def framework_error(exc: HTTPException) -> Response:
    """Framework errors (should not happen past routing) in falcon's ``"<code> <phrase>"``."""
    from http import HTTPStatus

    phrase = HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, f"{exc.status_code} {phrase}", None,
                          exc.headers or None)


def rendered(exc: Exception) -> Response | None:
    """The response ``EXCEPTION_HANDLERS`` give ``exc``, without a request (None: none does)."""
    if isinstance(exc, HTTPError):
        return exc.response()
    if isinstance(exc, HTTPException):
        return framework_error(exc)
    return None


EXCEPTION_HANDLERS = {
    HTTPError: handle_http_error,
    HTTPException: handle_starlette_http_exception,
}
