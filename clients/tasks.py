"""Celery tasks of the clients app: thin wrappers that load by id and call a service."""

from __future__ import annotations

import logging

from celery import shared_task

from agency.jobs import JobLost
from integrations.http import PlatformUnavailable

from .models import Client, ImportJob
from .services import crm_bitrix24_fetch, import_job_run, import_jobs_recover

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def import_job_run_task(job_id: int) -> str | None:
    """Run an uploaded CSV import. Safe to deliver twice: the service claims the job first; a job
    recovered from this worker meanwhile is left to the attempt that claimed it."""
    try:
        # The task works on the one job it was given; the job carries its client.
        job = ImportJob.objects.unscoped().select_related("client").get(pk=job_id)
    except ImportJob.DoesNotExist:
        logger.warning("import job %s no longer exists; nothing to run", job_id)
        return None
    try:
        return import_job_run(job=job).status
    except JobLost as exc:
        logger.warning("%s; this worker stops", exc)
        return None


@shared_task(acks_late=True)
def import_jobs_recover_task() -> list[int]:
    """Periodic: re-send import jobs whose message was lost or whose worker died."""
    job_ids = import_jobs_recover()
    for job_id in job_ids:
        import_job_run_task.delay(job_id)
    return job_ids


@shared_task(
    acks_late=True,
    autoretry_for=(PlatformUnavailable,),
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=6,
)
def crm_bitrix24_fetch_task(client_id: int, entity: str, entity_id: str, event: str = "") -> dict:
    """Read a Bitrix24 contact or deal that a webhook named by ID and write it. Safe to deliver
    twice (upserts by external id); retried with backoff while Bitrix24 is unavailable."""
    client = Client.objects.filter(pk=client_id, is_active=True).first()
    if client is None:
        logger.warning(
            "client %s is gone or inactive; Bitrix24 %s %s not read", client_id, entity, entity_id
        )
        return {}
    return crm_bitrix24_fetch(client=client, entity=entity, entity_id=entity_id, event=event)
