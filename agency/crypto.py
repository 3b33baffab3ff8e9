"""Destination credentials at rest: Fernet with every key of ``settings.CREDENTIALS_KEYS``
(MultiFernet: the first key encrypts, any key decrypts), so keys can be rotated without
downtime (``manage.py rotate_credentials_key``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext as _


class CredentialsUnreadable(Exception):
    """Stored credentials that no configured key opens (a key was removed too early)."""


def _fernet() -> MultiFernet:
    keys = [key for key in settings.CREDENTIALS_KEYS if key]
    if not keys:
        raise ImproperlyConfigured("CREDENTIALS_KEYS is empty: set at least one Fernet key")
    return MultiFernet([Fernet(key) for key in keys])


def secret_encrypt(data: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(data, sort_keys=True).encode()).decode()


def secret_decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise CredentialsUnreadable(
            _("учётные данные не расшифровываются ни одним ключом CREDENTIALS_KEYS")
        ) from exc


def secret_rotate(token: str) -> str:
    """Re-encrypt with the newest key (MultiFernet.rotate keeps the original timestamp)."""
    if not token:
        return token
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialsUnreadable(_("учётные данные не расшифровываются")) from exc


# --------------------------------------------------------------------------------------------
# Credentials typed by a person: one check for every provider account

# An address never comes from tenant data (SSRF): a provider's base URL is deployment
# configuration (<PROVIDER>_BASE_URL).
FIXED_CREDENTIALS = ("base_url", "url", "host", "endpoint")


def credentials_checked(
    credentials: Any, *, required: Sequence[Sequence[str]], provider_label: Any
) -> dict[str, str]:
    """The credentials as strings, empty values dropped, or a ServiceError naming what is
    wrong: not an object, an address among them, or none of the ``required`` alternatives
    (each a set of keys that together suffice) complete."""
    from .errors import ServiceError

    if not isinstance(credentials, dict):
        raise ServiceError(
            "invalid_credentials", _("Учётные данные — объект."), field="credentials"
        )
    fixed = sorted(set(credentials) & set(FIXED_CREDENTIALS))
    if fixed:
        raise ServiceError(
            "invalid_credentials",
            _(
                "Адрес API провайдера задаётся настройкой развёртывания "
                "(<ПРОВАЙДЕР>_BASE_URL), а не в учётных данных: уберите %(fields)s."
            )
            % {"fields": ", ".join(fixed)},
            field="credentials",
        )
    given = {k: str(v) for k, v in credentials.items() if v not in (None, "")}
    if not any(all(key in given for key in keys) for keys in required):
        wanted = _(" или ").join(" + ".join(keys) for keys in required)
        raise ServiceError(
            "invalid_credentials",
            _("Для %(provider)s нужны учётные данные: %(keys)s.")
            % {"provider": provider_label, "keys": wanted},
            field="credentials",
        )
    return given


# --------------------------------------------------------------------------------------------
# Key rotation: every app that stores secrets registers how to re-encrypt them (in its
# AppConfig.ready()), so `manage.py rotate_credentials_key` misses none, whatever the layer.

_ROTATIONS: dict[str, tuple[Any, Callable[[], int]]] = {}


def secrets_rotation_register(code: str, label: Any, rotate: Callable[[], int]) -> None:
    """``rotate`` re-encrypts one kind of stored secret with the newest key and returns how
    many rows it rewrote; ``label`` names them in the command's report."""
    _ROTATIONS[code] = (label, rotate)


def secrets_rotate_all() -> list[tuple[str, int]]:
    """Re-encrypt every registered kind of secret; (label, rows) per kind."""
    return [(str(label), rotate()) for label, rotate in _ROTATIONS.values()]
