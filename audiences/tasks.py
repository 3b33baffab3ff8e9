"""Celery tasks of audience syncs: thin, by id, safe to deliver twice."""

from __future__ import annotations

import logging

from celery import shared_task

from agency.jobs import JobLost

from .models import Audience, SyncRun
from .services import (
    ACTIVE_RUN_STATUSES,
    audience_sync_request,
    audience_syncs_wanted_request,
    sync_runs_recover,
)
from .sync import DestinationBusy, sync_run_execute

logger = logging.getLogger(__name__)

BUSY_RETRY_SECONDS = 60
AFTER_RUN_RETRIES = 24 * 60  # a day of waiting, a minute apart
ERASURE_SOURCE = "erasure"  # SyncRun.source of the syncs an erasure starts


@shared_task(bind=True, acks_late=True, max_retries=60)
def audience_sync_task(self, run_id: int) -> str | None:
    """Execute a pending sync run. A run already taken or finished is left alone; while another
    sync holds the destination the task comes back later (one sync per destination)."""
    run = SyncRun.objects.unscoped().filter(pk=run_id).first()
    if run is None:
        logger.warning("sync run %s no longer exists", run_id)
        return None
    if run.status != SyncRun.Status.PENDING:
        return run.status
    try:
        return sync_run_execute(run).status
    except DestinationBusy as exc:
        raise self.retry(countdown=BUSY_RETRY_SECONDS, exc=exc) from exc
    except JobLost as exc:
        # Recovered and claimed by another worker meanwhile: that attempt finishes it.
        logger.warning("%s; this worker stops", exc)
        return None


@shared_task(acks_late=True)
def audience_scheduled_sync_task(audience_id: int) -> int | None:
    """Beat entry of one audience (its PeriodicTask): start a run unless one is under way."""
    audience = Audience.objects.unscoped().filter(pk=audience_id, is_active=True).first()
    if audience is None:
        return None
    run, _created = audience_sync_request(audience=audience, source="beat")
    return run.pk


@shared_task(acks_late=True)
def audience_syncs_wanted_task() -> list[int]:
    """Periodic (every minute): start the syncs wanted before the schedule that are due, the
    retries of deferred runs and the syncs after withdrawals (``audience_sync_want``)."""
    return audience_syncs_wanted_request()


@shared_task(acks_late=True)
def audience_syncs_recover_task() -> list[int]:
    """Periodic: re-send sync runs whose message was lost or whose worker died."""
    run_ids = sync_runs_recover()
    for run_id in run_ids:
        audience_sync_task.delay(run_id)
    return run_ids


@shared_task(bind=True, acks_late=True, max_retries=AFTER_RUN_RETRIES)
def audience_sync_after_task(self, audience_id: int, run_id: int) -> int | None:
    """Start a sync of the audience once run ``run_id`` has ended. An erasure queues it when it
    finds a run under way, whose snapshot may still hold the erased person
    (``audiences.personal_data``). A run already pending or running by then was created after
    the erasure, so it is the sync wanted and none is added."""
    if SyncRun.objects.unscoped().filter(pk=run_id, status__in=ACTIVE_RUN_STATUSES).exists():
        raise self.retry(countdown=BUSY_RETRY_SECONDS)
    audience = Audience.objects.unscoped().filter(pk=audience_id, is_active=True).first()
    if audience is None:
        return None
    run, _created = audience_sync_request(audience=audience, source=ERASURE_SOURCE)
    return run.pk
