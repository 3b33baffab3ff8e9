"""The VK Ads / myTarget access token of a destination, kept encrypted on its row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from agency.crypto import secret_decrypt, secret_encrypt
from integrations import vk_ads
from integrations.http import PlatformHttp

TOKEN_MARGIN = timedelta(minutes=5)


class VkTokenCache:
    """The destination's one access token: reused while valid, refreshed when it expires, a new
    one minted only when there is none (or the refresh token is dead). Minting happens under a
    row lock so two workers never mint two tokens at once."""

    def __init__(self, destination: Any, http_factory: Callable[[], PlatformHttp]) -> None:
        self.destination = destination
        self.http_factory = http_factory

    def _credentials(self) -> dict:
        return secret_decrypt(self.destination.credentials_encrypted)

    def token(self) -> str:
        destination = self.destination
        now = timezone.now()
        if (
            destination.token_encrypted
            and destination.token_expires_at
            and (destination.token_expires_at - TOKEN_MARGIN > now)
        ):
            return secret_decrypt(destination.token_encrypted)["access_token"]
        with transaction.atomic():
            locked = (
                type(destination)
                .objects.for_client(destination.client_id)
                .select_for_update()
                .get(pk=destination.pk)
            )
            if (
                locked.token_encrypted
                and locked.token_expires_at
                and (locked.token_expires_at - TOKEN_MARGIN > now)
            ):
                destination.token_encrypted = locked.token_encrypted
                destination.token_expires_at = locked.token_expires_at
                return secret_decrypt(locked.token_encrypted)["access_token"]
            stored = secret_decrypt(locked.token_encrypted) if locked.token_encrypted else {}
            reply = self._obtain(stored.get("refresh_token", ""))
            destination.token_encrypted = secret_encrypt(
                {
                    "access_token": reply["access_token"],
                    "refresh_token": reply.get("refresh_token") or stored.get("refresh_token", ""),
                }
            )
            destination.token_expires_at = now + timedelta(
                seconds=int(reply.get("expires_in", 3600))
            )
            type(destination).objects.for_client(destination.client_id).filter(
                pk=destination.pk
            ).update(
                token_encrypted=destination.token_encrypted,
                token_expires_at=destination.token_expires_at,
            )
        return reply["access_token"]

    def invalidate(self) -> None:
        """The platform said the token is no longer valid: refresh on the next call."""
        self.destination.token_expires_at = None
        type(self.destination).objects.for_client(self.destination.client_id).filter(
            pk=self.destination.pk
        ).update(token_expires_at=None)

    def _obtain(self, refresh_token: str) -> dict:
        with self.http_factory() as http:
            return vk_ads.obtain_token(http, self._credentials(), refresh_token)
