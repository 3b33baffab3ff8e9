"""Daily imports from a client's ad and analytics accounts: Roistat spend per channel per day
(into ``SpendDay`` through :func:`reports.spend.spend_day_replace`, so a second import of a day
replaces it) and Calltouch calls (as ``clients.Event`` rows of type ``call`` through the one
ingestion, idempotent by the call id). One account's failure is recorded on the account
(``last_error``, ``last_result``) and never stops the others.

Calls whose number matches no customer are counted and reported (``last_result``:
``unmatched`` and their call ids), not turned into customers: a caller is not yet a customer of
the client's base (no external id from the client's CRM, no consent on record), and a customer
made from a phone number alone would be a duplicate as soon as the CRM sends that person. The
call is not lost: the daily import re-reads the day before too, and an "import now" of a
period takes it once the CRM has sent the person.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.crypto import CredentialsUnreadable
from agency.errors import ServiceError
from clients.ingest import ingest_records
from clients.models import Customer
from clients.normalize import NormalizationError, normalize_phone
from integrations.calltouch import Call, CalltouchClient
from integrations.http import PlatformError
from integrations.roistat import RoistatClient

from .accounts import ad_account_credentials
from .metrica import metrica_conversions_upload
from .models import AdAccount, SpendDay
from .spend import spend_day_replace

logger = logging.getLogger(__name__)

CALL_EVENT_TYPE = "call"
CALL_ID_PREFIX = "calltouch:"
UNMATCHED_IDS_KEPT = 200
IMPORT_DAYS_BACK = 2  # yesterday, and the day before again (platforms revise their figures)
MAX_IMPORT_DAYS = 31
SPEND_PROVIDERS = (AdAccount.Provider.ROISTAT, AdAccount.Provider.CALLTOUCH)


def import_days(client: Any, *, now: dt.datetime | None = None) -> list[dt.date]:
    """The days a daily import reads: yesterday and the day before, in the client's zone."""
    today = timezone.localtime(now or timezone.now(), client.tzinfo).date()
    return [today - dt.timedelta(days=n) for n in range(IMPORT_DAYS_BACK, 0, -1)]


def roistat_import(*, account: AdAccount, days: Iterable[dt.date], **http: Any) -> dict:
    """Replace the Roistat spend of each day (one request per day: the API aggregates over
    its period). Returns ``{"days": [...], "rows": n, "cost": "..."}``."""
    client = account.client
    roistat = RoistatClient(ad_account_credentials(account), project=account.remote_id, **http)
    written, total = 0, 0
    done = []
    try:
        for day in days:
            rows = roistat.analytics_day(day, tz=client.tzinfo)
            written += spend_day_replace(
                client=client,
                source=SpendDay.Source.ROISTAT,
                day=day,
                rows=[
                    {
                        "campaign": row.channel,
                        "campaign_name": row.title,
                        "channel": row.channel[:100],
                        "cost": row.cost,
                        "visits": row.visits,
                        "leads": row.leads,
                        "sales": row.sales,
                        "revenue": row.revenue,
                    }
                    for row in rows
                ],
            )
            total += sum(row.cost for row in rows)
            done.append(day.isoformat())
    finally:
        roistat.close()
    return {"days": done, "rows": written, "cost": str(total)}


def _customers_by_phone(client: Any, phones: set[str]) -> dict[str, str]:
    """E.164 phone -> external id of the customer with it (the earliest, when several)."""
    found: dict[str, str] = {}
    rows = (
        Customer.objects.for_client(client)
        .filter(phone__in=phones, erased_at__isnull=True)
        .order_by("-id")
        .values_list("phone", "external_id")
    )
    for phone, external_id in rows:
        found[phone] = external_id  # ordered by -id: the earliest wins
    return found


def _call_event(call: Call, external_id: str) -> dict[str, Any]:
    return {
        "external_id": f"{CALL_ID_PREFIX}{call.call_id}",
        "customer_external_id": external_id,
        "type": CALL_EVENT_TYPE,
        "occurred_at": call.at.isoformat(),
        "properties": {
            "duration": call.duration,
            "status": call.status,
            "source": call.source,
            "medium": call.medium,
            "calltouch_call_id": call.call_id,
        },
        "utm_source": call.utm_source,
        "utm_medium": call.utm_medium,
        "utm_campaign": call.utm_campaign,
    }


def calls_ingest(*, client: Any, calls: list[Call]) -> dict[str, Any]:
    """Write calls as events of their customers, matched by the phone as the clients'
    normalisation spells it; the rest are counted by reason."""
    normalized: dict[str, str] = {}
    invalid = []
    for call in calls:
        try:
            normalized[call.call_id] = normalize_phone(call.caller_phone)
        except NormalizationError:
            invalid.append(call.call_id)
    owners = _customers_by_phone(client, set(normalized.values()))
    records, unmatched = [], []
    for call in calls:
        phone = normalized.get(call.call_id)
        if phone is None:
            continue
        if phone in owners:
            records.append(_call_event(call, owners[phone]))
        else:
            unmatched.append(call.call_id)
    result = None
    if records:
        result = ingest_records(client=client, kind="events", records=records, partial=True)
    return {
        "calls": len(calls),
        "matched": len(records) - (result.rejected if result else 0),
        "created": result.created if result else 0,
        "updated": result.updated if result else 0,
        "rejected": result.rejected if result else 0,
        "unmatched": len(unmatched),
        "invalid_phone": len(invalid),
        "unmatched_call_ids": (unmatched + invalid)[:UNMATCHED_IDS_KEPT],
    }


def calltouch_import(*, account: AdAccount, days: Iterable[dt.date], **http: Any) -> dict:
    """Read the calls of ``days`` (one request for the range) and write them as events."""
    days = sorted(days)
    client = account.client
    calltouch = CalltouchClient(ad_account_credentials(account), site_id=account.remote_id, **http)
    try:
        calls, unreadable = calltouch.calls(days[0], days[-1], tz=client.tzinfo)
    finally:
        calltouch.close()
    result = calls_ingest(client=client, calls=calls)
    result["unreadable"] = unreadable
    result["days"] = [day.isoformat() for day in days]
    return result


IMPORTERS = {
    AdAccount.Provider.ROISTAT: roistat_import,
    AdAccount.Provider.CALLTOUCH: calltouch_import,
}


def ad_account_import(
    *,
    account: AdAccount,
    days: Iterable[dt.date] | None = None,
    now: dt.datetime | None = None,
    **http: Any,
) -> dict[str, Any]:
    """Import ``days`` (by default yesterday and the day before) of one account and record the
    outcome on it; a platform's refusal or an unreadable secret is recorded, not raised.
    Metrica accounts upload conversions instead (``reports.metrica``); Direct accounts are
    imported by their own service."""
    now = now or timezone.now()
    days = sorted(set(days)) if days is not None else import_days(account.client, now=now)
    if not days or (days[-1] - days[0]).days >= MAX_IMPORT_DAYS:
        raise ServiceError(
            "invalid_period",
            _("Период импорта — от 1 до %(n)s дней.") % {"n": MAX_IMPORT_DAYS},
            field="days",
        )
    if account.provider not in IMPORTERS and account.provider != AdAccount.Provider.METRICA:
        raise ServiceError(
            "not_importable",
            _("Для этой системы импорт здесь не выполняется."),
            field="provider",
        )
    error, result = "", {}
    try:
        if account.provider == AdAccount.Provider.METRICA:
            result = metrica_conversions_upload(account=account, now=now, **http)
        else:
            result = IMPORTERS[account.provider](account=account, days=days, **http)
    except (PlatformError, CredentialsUnreadable, ValueError) as exc:
        error = str(getattr(exc, "message", "") or exc)
        logger.warning("import of ad account %s failed: %s", account.pk, error)
    fields = {"last_attempt_at": now, "last_error": error[:2000], "last_result": result}
    if not error:
        fields["last_imported_at"] = now
    with transaction.atomic():
        AdAccount.objects.for_client(account.client_id).filter(pk=account.pk).update(**fields)
    for key, value in fields.items():
        setattr(account, key, value)
    return {"account": account.pk, "error": error, **result}


def ad_accounts_due() -> list[int]:
    """Ids of the active accounts the daily beat imports (one task each)."""
    return list(
        AdAccount.objects.unscoped()
        .filter(
            is_active=True,
            provider__in=[*SPEND_PROVIDERS, AdAccount.Provider.METRICA],
            client__is_active=True,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
