"""The one place where identifiers become what an ad platform receives.

Identifiers come from the stored Customer fields, which only ever hold values produced by
``clients.normalize`` (every way in, API, CSV and webhooks, goes through it): emails trimmed and
lowercased, phones in E.164. Here they get the platforms' format (phone digits with the country
code and no "+", "79995551111"; email as stored) and are hashed per the destination's setting:
SHA-256 lowercase hex for Yandex Audiences, MD5 lowercase hex or plain for VK Ads / myTarget.

Snapshots are built inside the database (``audiences.snapshots``), so the rule is written here as
SQL (:func:`platform_value_sql`, :func:`hashed_sql`); :func:`hasher_for` is the same hashing in
Python for the few values made outside a query (padding lines), and a test holds the two equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

EMAIL = 1
PHONE = 2
KIND_NAMES = {EMAIL: "email", PHONE: "phone"}


def platform_value_sql(kind: int, column: str) -> str:
    """SQL of the platform format of a stored (already normalised) identifier; '' when absent."""
    value = f"TRIM(COALESCE({column}, ''))"
    if kind == PHONE:
        return f"LTRIM({value}, '+')"
    return f"LOWER({value})"


def hashed_sql(hashing: str, expression: str, vendor: str) -> str:
    """SQL turning a platform value into what is uploaded, per destination setting.

    PostgreSQL: the built-in sha256()/md5() over the UTF-8 bytes (no pgcrypto needed).
    SQLite: the SHA256()/MD5() functions Django registers on every connection."""
    if hashing not in HASHINGS:
        raise ValueError(f"unknown hashing {hashing!r}")
    if hashing == "plain":
        return expression
    if vendor == "postgresql":
        if hashing == "sha256":
            return f"encode(sha256(convert_to({expression}, 'UTF8')), 'hex')"
        return f"md5({expression})"
    return f"{'SHA256' if hashing == 'sha256' else 'MD5'}({expression})"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _md5(value: str) -> str:
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()


def _plain(value: str) -> str:
    return value


HASHERS: dict[str, Callable[[str], str]] = {"sha256": _sha256, "md5": _md5, "plain": _plain}
HASHINGS = tuple(HASHERS)


def hasher_for(hashing: str) -> Callable[[str], str]:
    """The function turning a platform value into what is uploaded, per destination setting."""
    return HASHERS[hashing]
