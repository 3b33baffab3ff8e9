"""Reads of the clients app."""

from __future__ import annotations

import hashlib
import hmac

from django.utils import timezone

from .models import ApiKey

API_KEY_PREFIX = "cvm"


def api_key_hash(secret: str) -> str:
    """Keys are 256-bit random, so a fast hash is enough (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_split(raw_key: str) -> tuple[str, str] | None:
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        return None
    return parts[1], parts[2]


def api_key_find_active(*, raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key`` (``cvm_<prefix>_<secret>``), touching last_used_at."""
    split = api_key_split(raw_key)
    if split is None:
        return None
    prefix, secret = split
    api_key = (
        ApiKey.objects.select_related("client", "client__tier")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.hashed_secret, api_key_hash(secret)):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
