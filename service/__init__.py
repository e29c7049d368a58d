"""The HTTP face of Marconi: a Starlette app speaking the Zaqar v2 wire protocol.

Handlers validate a request, stamp a command and hand it to a ``Gateway`` (append to the log,
await the outcome); reads go through the same gateway's read barrier (DESIGN.md §3).
"""

from service.app import create_app

__all__ = ["create_app"]
