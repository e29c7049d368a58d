"""Pre-signed URLs (zaqar-api.md §5.8, §7): the HMAC upstream computes, bit for bit.

The signed text joins its parts with the two characters backslash and ``n`` (upstream uses a
raw string), not a newline; interoperating with tokens minted by Zaqar depends on it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
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

    The signature is checked before the paths are used as regular expressions, so an
    unsigned header can never make the server run a pattern of the caller's choosing.
    """
    if secret is None or not expires_header:
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
    if not hmac.compare_digest(str(expected), signature_header):
        return False
    for pattern in paths:
        try:
            if re.search(pattern, path):
                return True
        except re.error:
            continue
    return False
