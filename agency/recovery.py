"""Background jobs that a lost broker message or a dead worker left behind, found again.

A job row (CSV import, scoring run, audience sync) is claimed by flipping pending → running and
stamps a heartbeat while it runs (``agency.jobs``). If the worker dies, its transaction rolls
back, the row stays "running" and its heartbeat stops; if the broker loses the message, the row
stays "pending". Both are found here, in one place, for every kind of job: a long job that still
beats is left alone however long ago it started.

The recover task of each job kind runs every minute (``config/schedules.py``): with the two-minute
stale threshold a job whose worker died runs again within about three minutes. A job put back to
pending here is claimed again under the next attempt number (``agency.jobs``), so its old worker,
should it still live, can write nothing more to it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .jobs import PENDING, RUNNING, dead_without_heartbeat
from .jobs import heartbeat_timeout as default_heartbeat_timeout


def stalled_jobs_reset(
    jobs: QuerySet,
    *,
    now: datetime | None = None,
    lost_after: timedelta = timedelta(minutes=10),
    heartbeat_timeout: timedelta | None = None,
    reset: dict | None = None,
) -> list[int]:
    """Put running jobs whose heartbeat is older than ``heartbeat_timeout`` (by default
    ``JOB_STALE_SECONDS``) back to pending (with ``reset`` field values) and return the ids to
    send to a worker again, oldest first: those just put back, and pending jobs older than
    ``lost_after`` (their message is lost). A running row without any heartbeat (from before
    heartbeats) is dead past the hard task time limit from its start, as it was. ``jobs`` is a
    queryset of an ``agency.jobs.BackgroundJob`` model."""
    now = now or timezone.now()
    heartbeat_timeout = heartbeat_timeout or default_heartbeat_timeout()
    dead = Q(heartbeat_at__lt=now - heartbeat_timeout) | Q(
        heartbeat_at__isnull=True, started_at__lt=now - dead_without_heartbeat()
    )
    dead_ids = list(jobs.filter(dead, status=RUNNING).values_list("pk", flat=True))
    if dead_ids:
        # Filtered again: a job that beat in between is alive after all.
        jobs.filter(dead, pk__in=dead_ids, status=RUNNING).update(
            status=PENDING, started_at=None, heartbeat_at=None, **(reset or {})
        )
    return list(
        jobs.filter(status=PENDING)
        .filter(Q(created_at__lt=now - lost_after) | Q(pk__in=dead_ids))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )


def job_recover(model: type, *, now: datetime | None = None) -> list[int]:
    """:func:`stalled_jobs_reset` over every row of a job model, with its own timeouts."""
    return stalled_jobs_reset(
        model._default_manager.unscoped(),
        now=now,
        lost_after=model.lost_after,
        heartbeat_timeout=model.heartbeat_timeout,
        reset=model.recovery_reset,
    )
