"""`rotate_credentials_key` re-encrypts every kind of stored secret the apps register: after it
the old key can be removed and every credential still opens."""

from __future__ import annotations

import io

from cryptography.fernet import Fernet
from django.core.management import call_command

from agency.crypto import secret_decrypt
from campaigns.authoring import channel_settings_save
from campaigns.models import ChannelSettings
from reports.accounts import ad_account_save
from reports.models import AdAccount


def test_rotation_covers_channels_and_ad_accounts(settings, client_b):
    channel_settings_save(
        client=client_b,
        channel="email",
        provider="unisender",
        sender="shop@example.ru",
        credentials={"api_key": "uni-key", "list_id": "1"},
        source="cli",
    )
    ad_account_save(
        client=client_b, provider="roistat", remote_id="42", credentials={"api_key": "roi-key"}
    )
    new_key = Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [new_key, *settings.CREDENTIALS_KEYS]

    out = io.StringIO()
    call_command("rotate_credentials_key", stdout=out)

    report = out.getvalue()
    assert "каналов рассылок: 1" in report
    assert "рекламных аккаунтов: 1" in report
    settings.CREDENTIALS_KEYS = [new_key]  # the old key removed
    channel = ChannelSettings.objects.for_client(client_b).get()
    account = AdAccount.objects.for_client(client_b).get()
    assert secret_decrypt(channel.credentials_encrypted)["api_key"] == "uni-key"
    assert secret_decrypt(account.credentials_encrypted)["api_key"] == "roi-key"
