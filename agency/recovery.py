"""Background jobs that a lost broker message or a dead worker left behind, found again.

A job row (CSV import, scoring run) is claimed by flipping pending → running; if the worker dies,
its transaction rolls back but the row stays "running"; if the broker loses the message, the row
stays "pending". Both are found here, in one place, for every kind of job.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone


def stalled_jobs_reset(
    jobs: QuerySet,
    *,
    now: datetime | None = None,
    lost_after: timedelta = timedelta(minutes=10),
    reset: dict | None = None,
) -> list[int]:
    """Put running jobs older than the task time limit back to pending (with ``reset`` field
    values) and return the ids of pending jobs older than ``lost_after``, oldest first: those to
    send to a worker again. ``jobs`` has status/started_at/created_at with pending/running."""
    now = now or timezone.now()
    dead_before = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) - timedelta(minutes=1)
    jobs.filter(status="running", started_at__lt=dead_before).update(
        status="pending", started_at=None, **(reset or {})
    )
    return list(
        jobs.filter(status="pending", created_at__lt=now - lost_after)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
