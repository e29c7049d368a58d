"""Wiring of notification delivery: the senders built from the settings (DESIGN.md §9).

The runner (``projections``) knows only the ``Sender`` protocol; ``service.notify`` has the
HTTP and SMTP code; this module is where settings become those objects, so nothing below
``ops`` reads configuration.
"""

from __future__ import annotations

from ops.settings import Settings
from service.notify.mailto import MailSender, SmtpServer
from service.notify.notifier import Notifier
from service.notify.webhook import WebhookSender


class NotifierWiring:
    """The notifier and the webhook sender it owns (its HTTP session closed by ``aclose``)."""

    def __init__(self, settings: Settings) -> None:
        self.webhooks = webhooks = WebhookSender(
            timeout=settings.notification_timeout,
            private_targets=settings.notification_private_targets,
            per_target=max(settings.notification_concurrency, 1))
        mail = MailSender(SmtpServer(
            host=settings.smtp_host, port=settings.smtp_port, user=settings.smtp_user,
            password=settings.smtp_password, starttls=settings.smtp_starttls,
            timeout=settings.notification_timeout))
        self.notifier = Notifier(webhooks=webhooks, mail=mail,
                                 require_confirmation=settings.require_confirmation,
                                 secret_key=settings.secret_key,
                                 public_url=settings.notification_public_url)

    def runner_options(self, settings: Settings) -> dict[str, object]:
        """The ``Runner`` keyword arguments that turn the delivery duty on."""
        return {"sender": self.notifier,
                "delivery_concurrency": settings.notification_concurrency,
                "delivery_per_subscription": settings.notification_per_subscription}

    async def aclose(self) -> None:
        await self.webhooks.aclose()
