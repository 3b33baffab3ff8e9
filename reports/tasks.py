"""Celery tasks of the reports app: thin, by id."""

from __future__ import annotations

import logging
from datetime import date

from celery import shared_task

from clients.models import Client
from integrations.yandex_direct import DirectUnitsExhausted

from .direct import direct_spend_clients, direct_spend_import, import_days

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
