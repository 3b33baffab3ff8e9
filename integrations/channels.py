"""Which provider clients exist for the owned channels, what a client company enters for each
(credential keys), and one constructor for all of them, so the campaigns layer can store a
provider code and credentials and get a :class:`~integrations.messaging.ChannelClient`.

The sender fields are the same keywords for every client: ``from_email``/``from_name`` (email),
``sender`` (the SMS sender name); the rest (``timeout``, ``max_attempts``, ``max_backoff``,
``sleep``) go to the HTTP layer. A client that has no use for a field ignores it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .messaging import ChannelClient
from .rustore import RuStorePushClient
from .sendsay import SendsayClient
from .smsc import SmscClient
from .smsru import SmsRuClient
from .smtp_email import SmtpEmailClient
from .unisender import UniSenderClient
from .webpush import WebPushClient


@dataclass(frozen=True)
class ChannelProvider:
    code: str
    label: str
    channel: str  # "email", "sms", "push"
    required_keys: tuple[str, ...]  # credentials a client company must enter
    optional_keys: tuple[str, ...]
    build: Callable[..., ChannelClient]


def _email(cls):
    def build(credentials, *, from_email="", from_name="", sender="", **options):
        return cls(credentials, from_email=from_email, from_name=from_name, **options)

    return build


def _sms(cls):
    def build(credentials, *, from_email="", from_name="", sender="", **options):
        return cls(credentials, sender=sender, **options)

    return build


def _push(cls):
    def build(credentials, *, from_email="", from_name="", sender="", **options):
        return cls(credentials, **options)

    return build


PROVIDERS: dict[str, ChannelProvider] = {
    p.code: p
    for p in (
        ChannelProvider("smtp", "SMTP", "email", (), (), _email(SmtpEmailClient)),
        ChannelProvider(
            "unisender", "UniSender", "email", ("api_key", "list_id"), (), _email(UniSenderClient)
        ),
        ChannelProvider(
            "sendsay", "Sendsay", "email", ("account", "api_key"), (), _email(SendsayClient)
        ),
        ChannelProvider("smsru", "SMS.ru", "sms", ("api_id",), (), _sms(SmsRuClient)),
        # SMSC takes login + password, or apikey instead of both.
        ChannelProvider(
            "smsc", "SMSC", "sms", (), ("login", "password", "apikey"), _sms(SmscClient)
        ),
        ChannelProvider(
            "rustore",
            "RuStore push",
            "push",
            ("project_id", "service_token"),
            (),
            _push(RuStorePushClient),
        ),
        ChannelProvider(
            "webpush",
            "Web push (VAPID)",
            "push",
            ("vapid_private_key", "vapid_subject"),
            ("vapid_public_key",),
            _push(WebPushClient),
        ),
    )
}


def channel_client(
    provider: str,
    credentials: dict[str, Any] | None = None,
    *,
    from_email: str = "",
    from_name: str = "",
    sender: str = "",
    **options: Any,
) -> ChannelClient:
    """The client of ``provider`` (a key of :data:`PROVIDERS`) for these credentials; a
    missing credential raises ``ValueError`` naming it."""
    try:
        spec = PROVIDERS[provider]
    except KeyError:
        raise ValueError(f"неизвестный провайдер {provider!r}") from None
    return spec.build(
        dict(credentials or {}),
        from_email=from_email,
        from_name=from_name,
        sender=sender,
        **options,
    )
