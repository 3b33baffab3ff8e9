"""Celery tasks of the clients app: thin wrappers that load by id and call a service."""

from __future__ import annotations

import logging

from celery import shared_task

from agency.jobs import JobLost

from .models import ImportJob
from .services import import_job_run, import_jobs_recover

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
