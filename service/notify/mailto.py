"""Mail deliveries (``mailto:``) over SMTP with aiosmtplib (upstream pipes to sendmail).

As upstream (zaqar/notification/tasks/mailto.py): ``To`` is the address of the URI, the
subject is the URI's ``?subject=`` or ``options.subject``, ``From`` is ``options.from``, and
the body is the message JSON with ``queue_name`` added. Confirmations use upstream's default
templates. The SMTP server is the operator's (``smtp_host``/``smtp_port``, optional login and
STARTTLS), so the SSRF guard does not apply to it.

Outcomes: accepted delivered; a 5xx answer refused (permanent); 4xx, timeouts and
connection errors failed (retried).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

DEFAULT_FROM = "Marconi Notifications <no-reply@marconi.invalid>"
CONFIRM_SUBJECT = "Zaqar Notification - Subscription Confirmation"
CONFIRM_BODY = ("You have chosen to subscribe to the queue: {0}. This queue belongs to "
                "project: {1}. To confirm this subscription, click or visit this link "
                "below: {2}")
UNSUBSCRIBE_SUBJECT = "Zaqar Notification - Unsubscribe Confirmation"
UNSUBSCRIBE_BODY = ("You have unsubscribed successfully to the queue: {0}. This queue "
                    "belongs to project: {1}. To resubscribe this subscription, click or "
                    "visit this link below: {2}")
ERROR_MAX = 200

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str = "localhost"
    port: int = 25
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0


def recipient(subscriber: str) -> tuple[str, dict[str, str]]:
    """The address of a ``mailto:`` URI and its (lower-cased) query parameters."""
    parts = urlsplit(subscriber)
    params = {k.lower(): v[0] for k, v in parse_qs(parts.query).items() if v}
    return unquote(parts.path), params


def notification(subscriber: str, options: dict[str, Any], message: dict[str, Any]) -> EmailMessage:
    to, params = recipient(subscriber)
    mail = EmailMessage()
    mail["To"] = to
    sender = options.get("from")
    mail["From"] = sender if isinstance(sender, str) and sender else DEFAULT_FROM
    subject = options.get("subject", "")
    mail["Subject"] = params.get("subject", subject if isinstance(subject, str) else "")
    mail.set_content(json.dumps(message))
    return mail


def confirmation(subscriber: str, queue: str, project: str, link: str, *,
                 unsubscribe: bool) -> EmailMessage:
    to, _ = recipient(subscriber)
    mail = EmailMessage()
    mail["To"] = to
    mail["From"] = DEFAULT_FROM
    mail["Subject"] = UNSUBSCRIBE_SUBJECT if unsubscribe else CONFIRM_SUBJECT
    template = UNSUBSCRIBE_BODY if unsubscribe else CONFIRM_BODY
    mail.set_content(template.format(queue, project, link))
    return mail


class MailSender:
    """Sends one message per SMTP session (aiosmtplib.send)."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def send(self, mail: EmailMessage) -> Result:
        s = self._server
        try:
            await aiosmtplib.send(mail, hostname=s.host, port=s.port, username=s.user,
                                  password=s.password, start_tls=s.starttls,
                                  timeout=s.timeout)
        except aiosmtplib.SMTPResponseException as exc:
            kind = "refused" if 500 <= exc.code < 600 else "failed"
            return {"r": kind, "status": exc.code, "error": str(exc.message)[:ERROR_MAX]}
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return {"r": "failed", "status": None,
                    "error": f"{type(exc).__name__}: {exc}"[:ERROR_MAX]}
        return {"r": "delivered", "status": 250, "error": ""}
