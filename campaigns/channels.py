"""Which provider client sends a client's messages on a channel: its ChannelSettings (provider,
sender, decrypted credentials, data recipient), or for email without settings the platform's own
SMTP server (``EMAIL_URL``, ``DEFAULT_FROM_EMAIL``). Base URLs are the providers' deployment
settings (``integrations``), never the client's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from agency.crypto import secret_decrypt
from agency.errors import ServiceError
from clients.models import Client
from consent.models import DataRecipient
from integrations.channels import PROVIDERS, channel_client
from integrations.messaging import ChannelClient

from .models import Channel, ChannelSettings, Provider


@dataclass
class ChannelSender:
    client: ChannelClient
    provider: str
    recipient: DataRecipient
    sender: str
    sender_name: str
    client_zone: str

    @property
    def idempotent(self) -> bool:
        return bool(getattr(self.client, "idempotent", False))


def _build(provider: str) -> Callable[[dict, str, str], ChannelClient]:
    def build(credentials: dict, sender: str, sender_name: str) -> ChannelClient:
        return channel_client(
            provider, credentials, from_email=sender, from_name=sender_name, sender=sender
        )

    return build


# One builder per provider code (tests swap one for a recording client).
BUILDERS: dict[str, Callable[[dict, str, str], ChannelClient]] = {
    code: _build(code) for code in PROVIDERS
}


def platform_smtp_recipient(client_id: int) -> DataRecipient:
    """The platform's own mail server as the data recipient of a client's email (in Russia by
    default: ``EMAIL_SERVER_COUNTRY``)."""
    recipient, _created = DataRecipient.objects.for_client(client_id).get_or_create(
        client_id=client_id,
        kind=DataRecipient.Kind.EMAIL,
        name="Почтовый сервер платформы",
        defaults={"country": getattr(settings, "EMAIL_SERVER_COUNTRY", "RU")},
    )
    return recipient


def channel_sender_for(client_id: int, channel: str) -> ChannelSender:
    """The sender of ``client_id``'s messages on ``channel``; a ServiceError when none is set up."""
    client = Client.objects.only("time_zone").get(pk=client_id)
    row = (
        ChannelSettings.objects.for_client(client_id)
        .filter(channel=channel, is_active=True)
        .select_related("recipient")
        .first()
    )
    if row is None:
        if channel != Channel.EMAIL:
            raise ServiceError(
                "channel_not_configured",
                _("Канал «%(channel)s» не настроен: укажите провайдера в настройках каналов.")
                % {"channel": Channel(channel).label},
                status=409,
            )
        sender = settings.DEFAULT_FROM_EMAIL
        return ChannelSender(
            client=BUILDERS[Provider.SMTP]({}, sender, ""),
            provider=Provider.SMTP,
            recipient=platform_smtp_recipient(client_id),
            sender=sender,
            sender_name="",
            client_zone=client.time_zone,
        )
    credentials: dict[str, Any] = (
        secret_decrypt(row.credentials_encrypted) if row.credentials_encrypted else {}
    )
    sender = row.sender or (settings.DEFAULT_FROM_EMAIL if channel == Channel.EMAIL else "")
    return ChannelSender(
        client=BUILDERS[row.provider](credentials, sender, row.sender_name),
        provider=row.provider,
        recipient=row.recipient,
        sender=sender,
        sender_name=row.sender_name,
        client_zone=client.time_zone,
    )
