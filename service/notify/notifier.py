"""The ``Notifier``: what the runner's delivery duty calls for each due delivery.

It decides what an attempt is (a notification, a ``SubscriptionConfirmation`` or an
``UnsubscribeConfirmation`` with a pre-signed confirm URL, as upstream's notifier builds
them), whether it is still wanted (the subscription exists; with ``require_confirmation`` it
is confirmed), and hands it to the webhook or mail sender. Secrets (the signing key) never
enter the log: the confirm URL is signed here, at send time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from projections.delivery import CONFIRMATION, NOTIFY, UNSUBSCRIBED, Pending
from service import signing, topics
from service.notify import mailto, webhook
from service.notify.mailto import MailSender
from service.notify.webhook import WebhookSender

CONFIRM_URL_DAYS = 1  # upstream's create_signed_url default expiry

Result = dict[str, Any]


def _cancelled(why: str) -> Result:
    return {"r": "cancelled", "status": None, "error": why}


class Notifier:
    """A ``projections.deliverer.Sender`` over a webhook and a mail sender."""

    def __init__(self, *, webhooks: WebhookSender, mail: MailSender,
                 require_confirmation: bool, secret_key: str | None,
                 public_url: str | None) -> None:
        self._webhooks = webhooks
        self._mail = mail
        self._require_confirmation = require_confirmation
        self._secret = secret_key
        self._public_url = (public_url or "").rstrip("/")

    async def deliver(self, pending: Pending) -> Result:
        sub = pending.subscription
        if sub is None:
            return _cancelled("the subscription no longer exists")
        subscriber = str(sub["subscriber"])
        scheme = subscriber.split(":", 1)[0].lower()
        if scheme not in ("http", "https", "mailto"):
            return {"r": "refused", "status": None,
                    "error": f"{scheme} subscribers are not delivered by this server"}
        if pending.kind == NOTIFY:
            if self._require_confirmation and not sub["confirmed"]:
                return _cancelled("the subscription is not confirmed")
            if pending.message is None:
                return _cancelled("the message is gone")
            message = {**pending.message, "queue_name": topics.public_name(pending.queue),
                       "Message_Type": "Notification"}
            if scheme == "mailto":
                return await self._mail.send(
                    mailto.notification(subscriber, sub["options"], message))
            return await self._post(pending, subscriber, sub["options"], message)
        unsubscribe = pending.kind == UNSUBSCRIBED
        if pending.kind == CONFIRMATION and sub["confirmed"]:
            return _cancelled("the subscription is already confirmed")
        signed = self._signed_confirm(pending)
        path = f"{topics.base_href(pending.queue)}/subscriptions/{pending.subscription_id}/confirm"
        if signed is None:
            return {"r": "refused", "status": None,
                    "error": "cannot sign a confirmation URL: secret_key is not set"}
        if scheme == "mailto":
            link = f"{self._public_url}{path}?" + urlencode(
                {k: signed[k] for k in ("URL-Signature", "URL-Methods", "URL-Paths",
                                        "URL-Expires", "X-Project-ID")})
            return await self._mail.send(mailto.confirmation(
                subscriber, topics.public_name(pending.queue), pending.project, link,
                unsubscribe=unsubscribe))
        return await self._post(pending, subscriber, {}, signed)

    async def _post(self, pending: Pending, url: str, options: dict[str, Any],
                    message: dict[str, Any]) -> Result:
        key = f"{pending.item}:{pending.subscription_id}"
        return await self._webhooks.post(url, webhook.payload(message, options),
                                         webhook.headers(options, key))

    def _signed_confirm(self, pending: Pending) -> dict[str, Any] | None:
        """Upstream's confirmation message (notifier.send_confirm_notification)."""
        if not self._secret:
            return None
        path = f"{topics.base_href(pending.queue)}/subscriptions/{pending.subscription_id}/confirm"
        expires = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=CONFIRM_URL_DAYS)
        signed = signing.create(self._secret, [path], ["PUT"], pending.project, expires)
        name = topics.public_name(pending.queue)
        if pending.kind == UNSUBSCRIBED:
            kind = "UnsubscribeConfirmation"
            text = (f"You have unsubscribed successfully to the queue: {name}, you can "
                    "resubscribe it by using confirmed=True.")
        else:
            kind = "SubscriptionConfirmation"
            text = f"You have chosen to subscribe to the queue: {name}"
        out: dict[str, Any] = {
            "Message_Type": kind, "Message": text, "queue_name": name,
            "URL-Signature": signed["signature"], "URL-Methods": signed["methods"][0],  # type: ignore[index]
            "URL-Paths": signed["paths"][0],  # type: ignore[index]
            "X-Project-ID": signed["project"], "URL-Expires": signed["expires"],
            "SubscribeBody": {"confirmed": True}, "UnsubscribeBody": {"confirmed": False},
            "WSGISubscribeURL": path,
        }
        if self._public_url:
            out["WSGISubscribeURL"] = self._public_url + path
        return out
