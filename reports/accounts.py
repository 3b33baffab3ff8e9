"""Ad and analytics accounts of a client: the one write (``ad_account_save``), credentials
encrypted with ``agency.crypto`` and never returned, every change audited without them."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from agency.audit import audit_log
from agency.crypto import credentials_checked, secret_decrypt, secret_encrypt, secret_rotate
from agency.errors import ServiceError

from .models import AdAccount

# What each provider's credentials hold (the JSON an agency admin enters).
REQUIRED_CREDENTIALS = {
    AdAccount.Provider.DIRECT: ("token",),
    AdAccount.Provider.METRICA: ("token",),
    AdAccount.Provider.ROISTAT: ("api_key",),
    AdAccount.Provider.CALLTOUCH: ("client_api_id",),
}


def _refuse(code: str, message: str, field: str) -> None:
    raise ServiceError(code, message, field=field)


def _check_credentials(provider: str, credentials: Any) -> dict[str, str]:
    return credentials_checked(
        credentials,
        required=(REQUIRED_CREDENTIALS[provider],),
        provider_label=AdAccount.Provider(provider).label,
    )


def _check_remote_id(provider: str, remote_id: str, conversion_target: str) -> None:
    if provider in (AdAccount.Provider.METRICA, AdAccount.Provider.CALLTOUCH):
        if not remote_id.isdigit():
            _refuse(
                "invalid_remote_id",
                _("Номер счётчика Метрики или сайта Calltouch — число."),
                "remote_id",
            )
    if provider == AdAccount.Provider.ROISTAT and not remote_id:
        _refuse("invalid_remote_id", _("Укажите номер проекта Roistat."), "remote_id")
    if provider == AdAccount.Provider.METRICA and not conversion_target:
        _refuse(
            "invalid_conversion_target",
            _("Укажите цель (Target), в которую Метрика примет покупки."),
            "conversion_target",
        )


@transaction.atomic
def ad_account_save(
    *,
    client: Any,
    provider: str,
    account: AdAccount | None = None,
    name: str = "",
    login: str = "",
    remote_id: str = "",
    credentials: dict[str, Any] | None = None,
    is_active: bool = True,
    conversion_target: str = "",
    client_id_type: str = AdAccount.ClientIdType.CLIENT_ID,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> AdAccount:
    """Create (``account=None``) or update an account. ``credentials`` is checked per provider
    and stored encrypted; ``None`` on an update of the same provider keeps the stored ones.
    Audited without the credentials."""
    if provider not in AdAccount.Provider.values:
        _refuse("invalid_provider", _("Неизвестная система: %(p)s.") % {"p": provider}, "provider")
    if client_id_type not in AdAccount.ClientIdType.values:
        _refuse("invalid_client_id_type", _("Неизвестный тип идентификатора."), "client_id_type")
    remote_id = (remote_id or "").strip()
    conversion_target = (conversion_target or "").strip()
    _check_remote_id(provider, remote_id, conversion_target)
    if account is not None and account.client_id != getattr(client, "pk", client):
        _refuse("not_found", _("Аккаунт не найден у этого клиента."), "account")
    keep = credentials is None and account is not None and account.provider == provider
    if keep:
        encrypted = account.credentials_encrypted
    else:
        encrypted = secret_encrypt(_check_credentials(provider, credentials or {}))
    duplicate = AdAccount.objects.for_client(client).filter(
        provider=provider, remote_id=remote_id, login=(login or "").strip()
    )
    if account is not None:
        duplicate = duplicate.exclude(pk=account.pk)
    if duplicate.exists():
        _refuse(
            "duplicate_account",
            _("Такой аккаунт у клиента уже есть."),
            "remote_id",
        )
    fields = {
        "provider": provider,
        "name": (name or "").strip(),
        "login": (login or "").strip(),
        "remote_id": remote_id,
        "credentials_encrypted": encrypted,
        "is_active": is_active,
        "conversion_target": conversion_target,
        "client_id_type": client_id_type,
    }
    if account is None:
        account = AdAccount.objects.create(client=client, **fields)
        action = "ad_account_created"
    else:
        for key, value in fields.items():
            setattr(account, key, value)
        account.save(update_fields=list(fields))
        action = "ad_account_updated"
    audit_log(
        action=action,
        source=source,
        actor=actor,
        client=account.client_id,
        obj=account,
        details={
            "provider": provider,
            "remote_id": remote_id,
            "login": fields["login"],
            "is_active": is_active,
            "credentials_replaced": not keep,
        },
        ip=ip,
    )
    return account


def ad_account_credentials(account: AdAccount) -> dict[str, Any]:
    """The decrypted credentials, for the import services only (``CredentialsUnreadable``
    when no configured key opens them)."""
    return secret_decrypt(account.credentials_encrypted)


def ad_accounts_credentials_rotate() -> int:
    """Re-encrypt every ad account's credentials with the newest key; returns how many."""
    count = 0
    for account in AdAccount.objects.unscoped().iterator():
        AdAccount.objects.for_client(account.client_id).filter(pk=account.pk).update(
            credentials_encrypted=secret_rotate(account.credentials_encrypted)
        )
        count += 1
    return count
