"""Celery tasks of the reports app: thin, by id, safe to deliver twice."""

from __future__ import annotations

import logging
from datetime import date

from celery import shared_task

from agency.jobs import ACTIVE_STATES
from clients.models import Client
from integrations.yandex_direct import DirectUnitsExhausted
from segments.models import ScoringRun

from .direct import direct_spend_clients, direct_spend_import, import_days
from .imports import ad_account_import, ad_accounts_due
from .kpis import kpis_compute
from .metrica import metrica_accounts_polling, metrica_uploads_poll
from .models import AdAccount

logger = logging.getLogger(__name__)

UNITS_RETRY_SECONDS = 3600  # Direct's points come back hourly


@shared_task(acks_late=True)
def direct_spend_import_daily_task() -> list[int]:
    """Daily beat fan-out: yesterday's and the day before's Direct spend, one task per client
    (a failing client does not stop the others)."""
    days = [day.isoformat() for day in import_days()]
    client_ids = direct_spend_clients()
    for client_id in client_ids:
        direct_spend_import_task.delay(client_id, days)
    return client_ids


@shared_task(bind=True, acks_late=True, max_retries=3)
def direct_spend_import_task(self, client_id: int, days: list[str]) -> dict[str, int] | None:
    """Import one client's Direct spend of ``days`` (ISO dates). Out of points (error 152): the
    same import an hour later, never a loop."""
    client = Client.objects.filter(pk=client_id, is_active=True).first()
    if client is None:
        return None
    try:
        return direct_spend_import(client=client, days=[date.fromisoformat(d) for d in days])
    except DirectUnitsExhausted as exc:
        logger.warning("Direct points spent for client %s; retrying in an hour", client_id)
        raise self.retry(countdown=UNITS_RETRY_SECONDS, exc=exc) from exc


@shared_task(acks_late=True)
def ad_accounts_import_daily_task() -> list[int]:
    """Daily beat fan-out: one import task per active Roistat, Calltouch and Metrica account
    (a failing account does not stop the others: each records its own outcome)."""
    account_ids = ad_accounts_due()
    for account_id in account_ids:
        ad_account_import_task.delay(account_id)
    return account_ids


@shared_task(acks_late=True)
def ad_account_import_task(account_id: int, days: list[str] | None = None) -> dict | None:
    """Import one account: ``days`` (ISO dates) or yesterday and the day before. Re-running
    replaces the same days (spend), re-ingests the same call ids (calls) and never sends an
    order twice (Metrica)."""
    account = (
        AdAccount.objects.unscoped()
        .select_related("client")
        .filter(pk=account_id, is_active=True, client__is_active=True)
        .first()
    )
    if account is None:
        return None
    wanted = [date.fromisoformat(day) for day in days] if days else None
    return ad_account_import(account=account, days=wanted)


@shared_task(acks_late=True)
def metrica_uploads_poll_task() -> dict[int, int]:
    """Periodic: Metrica's status of the uploads still processing, per account."""
    done = {}
    for account in AdAccount.objects.unscoped().filter(pk__in=metrica_accounts_polling()):
        done[account.pk] = metrica_uploads_poll(account=account)
    return done


#: While the client's scoring run is still under way, the KPIs wait for its predicted CLV:
#: asked again every SCORING_WAIT_SECONDS, at most SCORING_WAIT_ATTEMPTS times, then computed
#: with the previous run's scores.
SCORING_WAIT_SECONDS = 15 * 60
SCORING_WAIT_ATTEMPTS = 8


@shared_task(acks_late=True)
def kpis_daily_task() -> list[int]:
    """Nightly beat fan-out (after the scoring run): one ``kpis_client_task`` per active
    client."""
    client_ids = list(Client.objects.active().order_by("pk").values_list("pk", flat=True))
    for client_id in client_ids:
        kpis_client_task.delay(client_id)
    return client_ids


@shared_task(acks_late=True)
def kpis_client_task(client_id: int, attempt: int = 0) -> int | None:
    """Recompute every month of one client's KPIs (idempotent: the months are replaced; one
    statement over all the client's orders either way). Waits for a scoring run of the client
    still under way."""
    client = Client.objects.filter(pk=client_id, is_active=True).select_related("tier").first()
    if client is None:
        logger.info("client %s is gone or inactive; no KPIs", client_id)
        return None
    scoring = ScoringRun.objects.for_client(client).filter(status__in=ACTIVE_STATES).exists()
    if scoring and attempt < SCORING_WAIT_ATTEMPTS:
        kpis_client_task.apply_async((client_id, attempt + 1), countdown=SCORING_WAIT_SECONDS)
        return None
    return kpis_compute(client=client)
