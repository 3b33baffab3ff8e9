"""Celery tasks of the scoring pipeline: thin wrappers that load by id and call the services."""

from __future__ import annotations

import logging

from celery import shared_task

from agency.jobs import JobLost

from .models import ScoringRun
from .services import scoring_run_execute, scoring_runs_due, scoring_runs_recover

logger = logging.getLogger(__name__)


def memberships_refresh_after(run: ScoringRun) -> None:
    """Refresh every segment of the run's client from the scores the run has just written.

    Called by the task and by ``manage.py score_client`` after a successful run.
    """
    # Imported here: segments.segmentation reads scores, not the other way round.
    from .segmentation import segment_memberships_refresh

    segment_memberships_refresh(client=run.client, run=run)


@shared_task(acks_late=True)
def scoring_run_task(run_id: int) -> str | None:
    """Execute a pending scoring run, then refresh the client's segments.

    Safe to deliver twice: the service claims the run first, and a run that is no longer
    pending (taken by another worker, finished) is left alone. A failure is recorded on the
    run by the service and re-raised, so the task is marked failed too.
    """
    try:
        # The task works on the one run it was given; the run carries its client.
        run = ScoringRun.objects.unscoped().select_related("client").get(pk=run_id)
    except ScoringRun.DoesNotExist:
        logger.warning("scoring run %s no longer exists; nothing to run", run_id)
        return None
    if run.status != ScoringRun.Status.PENDING:
        logger.info("scoring run %s is %s already; not run again", run_id, run.status)
        return run.status
    try:
        run = scoring_run_execute(run=run)
    except JobLost as exc:
        # Recovered and claimed by another worker meanwhile: that attempt finishes it.
        logger.warning("%s; this worker stops", exc)
        return None
    if run.status == ScoringRun.Status.SUCCEEDED:
        try:
            memberships_refresh_after(run)
        except Exception as exc:
            # The scores are written; what failed is the segments' refresh. Say so on the run
            # (the admin shows run errors) and let the task fail visibly.
            logger.exception(
                "segments of client %s not refreshed after run %s", run.client_id, run.pk
            )
            ScoringRun.objects.for_client(run.client_id).filter(pk=run.pk).update(
                error=f"Сегменты не обновлены: {type(exc).__name__}: {exc}"
            )
            raise
    return run.status


@shared_task(acks_late=True)
def scoring_daily_task() -> list[int]:
    """Daily beat fan-out: a run requested for every active client without a run today, each
    executed by its own ``scoring_run_task`` (sent by ``scoring_run_request``)."""
    return scoring_runs_due()


@shared_task(acks_late=True)
def scoring_runs_recover_task() -> list[int]:
    """Periodic: re-send scoring runs whose message was lost or whose worker died."""
    run_ids = scoring_runs_recover()
    for run_id in run_ids:
        scoring_run_task.delay(run_id)
    return run_ids
