"""Yandex Direct for the reports: the daily spend import (Reports service) and the client of a
Direct ad account.

Spend comes per client: every active Direct account of the client is read and each day is
replaced whole (``reports.spend.spend_day_replace``), so a second import of a day replaces it
and two accounts of one client never erase each other's campaigns. When one account of a
client fails, that client's days are left as they were (a partial day would look like a drop
in spend); other clients go on, each in its own task.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.crypto import CredentialsUnreadable, secret_decrypt
from agency.errors import ServiceError
from integrations.yandex_direct import YandexDirectClient, base_url, report_rows

from .models import AdAccount
from .spend import spend_day_replace

logger = logging.getLogger(__name__)


class DirectAccountError(ServiceError):
    default_code = "direct_account_invalid"


def direct_accounts(*, client: Any) -> QuerySet:
    return (
        AdAccount.objects.for_client(client)
        .filter(provider=AdAccount.Provider.DIRECT, is_active=True)
        .order_by("pk")
    )


def direct_client(account: AdAccount, **http_options: Any) -> YandexDirectClient:
    """A Direct API client for ``account``: its token (decrypted here, never shown) and its
    Client-Login; the host from ``YANDEX_DIRECT_BASE_URL``, never from tenant data."""
    try:
        credentials = (
            secret_decrypt(account.credentials_encrypted) if (account.credentials_encrypted) else {}
        )
    except CredentialsUnreadable as exc:
        raise DirectAccountError(
            message=_("учётные данные аккаунта Директа не читаются: введите токен заново")
        ) from exc
    token = str(credentials.get("token") or "")
    if not token:
        raise DirectAccountError(message=_("у аккаунта Директа не задан токен"))
    return YandexDirectClient(base_url=base_url(), token=token, login=account.login, **http_options)


def import_days(today: date | None = None) -> list[date]:
    """The days the daily import reads: yesterday and the day before (Direct's statistics of a
    day settle over the next day)."""
    today = today or timezone.localdate()
    return [today - timedelta(days=2), today - timedelta(days=1)]


def direct_spend_import(*, client: Any, days: list[date], **http_options: Any) -> dict[str, int]:
    """Import the Direct spend of ``days`` for every active Direct account of ``client``;
    returns rows written per day (ISO date). Raises (and writes nothing) when an account
    fails."""
    accounts = list(direct_accounts(client=client))
    if not accounts or not days:
        return {}
    date_from, date_to = min(days), max(days)
    wanted = set(days)
    by_day: dict[date, list[dict]] = defaultdict(list)
    stamp = timezone.now().strftime("%Y%m%d%H%M")
    for account in accounts:
        with direct_client(account, **http_options) as direct:
            tsv = direct.report_tsv(
                date_from=date_from,
                date_to=date_to,
                name=f"agency-spend-{account.pk}-{date_from}-{date_to}-{stamp}",
            )
        for row in report_rows(tsv):
            if row["day"] in wanted:
                by_day[row["day"]].append(
                    {
                        "campaign": row["campaign_id"],
                        "campaign_name": row["campaign_name"][:300],
                        "cost": row["cost"],
                        "clicks": row["clicks"],
                        "impressions": row["impressions"],
                    }
                )
    written = {}
    for day in sorted(wanted):
        written[day.isoformat()] = spend_day_replace(
            client=client, source="direct", day=day, rows=by_day.get(day, [])
        )
    AdAccount.objects.for_client(client).filter(pk__in=[a.pk for a in accounts]).update(
        last_imported_at=timezone.now()
    )
    return written


def direct_spend_clients() -> list[int]:
    """Ids of the clients with an active Direct account (the daily fan-out)."""
    return sorted(
        set(
            AdAccount.objects.unscoped()
            .filter(provider=AdAccount.Provider.DIRECT, is_active=True)
            .values_list("client_id", flat=True)
        )
    )
