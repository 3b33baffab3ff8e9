"""Celery tasks of the clients app: thin wrappers that load by id and call a service."""

from __future__ import annotations

import logging

from celery import shared_task

from .models import ImportJob
from .services import import_job_run

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def import_job_run_task(job_id: int) -> str | None:
    """Run an uploaded CSV import. Safe to deliver twice: the service claims the job first."""
    try:
        # The task works on the one job it was given; the job carries its client.
        job = ImportJob.objects.unscoped().select_related("client").get(pk=job_id)
    except ImportJob.DoesNotExist:
        logger.warning("import job %s no longer exists; nothing to run", job_id)
        return None
    return import_job_run(job=job).status
