"""The one place where identifiers become what an ad platform receives.

Identifiers come from the stored Customer fields, which only ever hold values produced by
``clients.normalize`` (every way in, API, CSV and webhooks, goes through it): emails trimmed and
lowercased, phones in E.164. Here they get the platforms' format (phone digits with the country
code and no "+", "79995551111"; email as stored) and are hashed per the destination's setting:
SHA-256 lowercase hex for Yandex Audiences, MD5 lowercase hex or plain for VK Ads / myTarget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

EMAIL = 1
PHONE = 2
KIND_NAMES = {EMAIL: "email", PHONE: "phone"}


def platform_value(kind: int, stored: str) -> str:
    """The platform format of a stored (already normalised) identifier; '' when absent."""
    stored = (stored or "").strip()
    if not stored:
        return ""
    if kind == PHONE:
        return stored.lstrip("+")
    return stored.lower()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _md5(value: str) -> str:
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()


def _plain(value: str) -> str:
    return value


HASHERS: dict[str, Callable[[str], str]] = {"sha256": _sha256, "md5": _md5, "plain": _plain}


def hasher_for(hashing: str) -> Callable[[str], str]:
    """The function turning a platform value into what is uploaded, per destination setting."""
    return HASHERS[hashing]
