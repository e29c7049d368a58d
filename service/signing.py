"""Pre-signed URLs (zaqar-api.md §5.8, §7): the HMAC upstream computes, bit for bit.

The signed text joins its parts with the two characters backslash and ``n`` (upstream uses a
raw string), not a newline; interoperating with tokens minted by Zaqar depends on it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from service.errors import HTTPError
from service.validation import SHARE_DATE_FORMAT, parse_expires

SEPARATOR = "\\n"  # backslash + n, literally


def signature(secret: str, paths: list[str], methods: list[str], project: str | None,
              expires: str) -> str:
    """hex HMAC-SHA256 over ``paths \\n methods \\n project \\n expires`` (lists pre-sorted)."""
    text = SEPARATOR.join((",".join(paths), ",".join(methods), str(project), expires))
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def create(secret: str, paths: list[str], methods: list[str], project: str | None,
           expires: datetime) -> dict[str, object]:
    """The share document: sorted paths and methods, ``expires`` without fractions."""
    paths = sorted(paths)
    methods = sorted(methods)
    expires_text = expires.strftime(SHARE_DATE_FORMAT)
    return {"paths": paths, "methods": methods, "project": project, "expires": expires_text,
            "signature": signature(secret, paths, methods, project, expires_text)}


def verify(secret: str | None, *, method: str, path: str, project: str | None,
           signature_header: str, expires_header: str | None, methods_header: str,
           paths_header: str, now: datetime) -> bool:
    """Whether a request's ``URL-*`` headers authorise ``method`` on ``path`` now (§7).

    Anything short of a valid, unexpired signature over these very headers is False: an
    empty or blank signature, missing ``URL-Expires``/``URL-Methods``/``URL-Paths``, an
    unparseable date. Paths are compared as text (``covers``), never as regular expressions.
    """
    if not secret or not signature_header.strip() or not expires_header:
        return False
    if not methods_header or not paths_header:
        return False
    methods = methods_header.split(",")
    paths = paths_header.split(",")
    if method not in methods:
        return False
    try:
        expires = parse_expires(expires_header, now)
    except HTTPError:  # unparseable or past
        return False
    expected = create(secret, paths, methods, project, expires)["signature"]
    given = signature_header.encode("latin-1", "replace")
    if not hmac.compare_digest(str(expected).encode(), given):
        return False
    return any(covers(signed, path) for signed in paths)


def covers(signed: str, path: str) -> bool:
    """A signed path authorises itself and the resources beneath it (``…/messages`` covers
    ``…/messages/{id}``), compared as plain text on a ``/`` boundary.

    Upstream uses each signed path as a regular expression (``re.search``), so a share for
    queue ``a.b`` also opened ``aXb`` and ``/x/v2/queues/q/messages``; Marconi deliberately
    does not (README, "Security").
    """
    if not signed:
        return False
    return path == signed or path.startswith(signed.rstrip("/") + "/")
