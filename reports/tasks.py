"""Celery tasks of the reports app: thin wrappers that load by id and call the services."""

from __future__ import annotations

import logging

from celery import shared_task

from agency.jobs import ACTIVE_STATES
from clients.models import Client
from segments.models import ScoringRun

from .kpis import kpis_compute

logger = logging.getLogger(__name__)

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
