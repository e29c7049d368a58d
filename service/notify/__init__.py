"""Notification senders (DESIGN.md §9): webhooks over httpx, mail over SMTP (aiosmtplib),
the SSRF guard, and the ``Notifier`` the projection runner's delivery duty is given.

The state of every delivery lives in the projection (``projections.delivery``); this package
only makes attempts and says what the receiver answered. It is wired by ``ops/serve.py``.
"""
