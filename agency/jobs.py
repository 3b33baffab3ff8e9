"""The one shape of a background job (CSV import, scoring run, audience sync).

A job is a row. Its entry point asks a service for one (the service creates it, writes the
audit entry and enqueues the task after commit: :func:`enqueue_after_commit`); a worker claims
it by flipping pending → running (:meth:`BackgroundJob.claim`, atomic: of two deliveries of the
same message only one gets it), writes its progress as it goes
(:meth:`BackgroundJob.progress_write`) and ends it in one of its terminal states
(:meth:`BackgroundJob.finish`).

While a job runs, :meth:`BackgroundJob.beating` stamps ``heartbeat_at`` from a helper thread on
its own database connection every ``JOB_HEARTBEAT_SECONDS`` (10 s), also through stages that
write no progress (a model fit, a long COPY) and inside the job's own long transaction. Recovery
(``agency.recovery``, a beat task every minute) tells a live long job from a dead one by that
stamp: a running job whose heartbeat is older than its ``heartbeat_timeout``
(``JOB_STALE_SECONDS``, 2 minutes) lost its worker and is sent to another one. A worker killed
mid-job is so replaced within about 3 minutes (stale + one beat), not at the task time limit.

Never twice at once: each claim stamps the next ``attempt`` number, and every write of the
worker (progress, heartbeat, finish) is conditional on the row still being running under its
own attempt. A worker that was taken for dead but still lives (a long network partition) finds
its job recovered at its next write: :class:`JobLost` stops it before it overwrites the new
attempt's work, and its heartbeat thread stops beating for the row.

The admin shows every job the same way (``agency.admin_jobs.JobAdminMixin``); the portal pages
use ``is_active`` and ``progress_percent``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import DatabaseError, connections, models, transaction
from django.utils import timezone
from django.utils.functional import classproperty
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
ACTIVE_STATES = (PENDING, RUNNING)


def heartbeat_every() -> timedelta:
    """How often a running job stamps ``heartbeat_at`` (``JOB_HEARTBEAT_SECONDS``, 10 s)."""
    return timedelta(seconds=settings.JOB_HEARTBEAT_SECONDS)


def heartbeat_timeout() -> timedelta:
    """A running job silent for this long has lost its worker (``JOB_STALE_SECONDS``, 2 minutes:
    twelve missed beats; a stamp waits at most for a row lock of a short transaction of the job,
    never for the work itself, which goes on in the job's own thread)."""
    return timedelta(seconds=settings.JOB_STALE_SECONDS)


class JobLost(Exception):  # noqa: N818 - a state, as in DoesNotExist
    """The job is no longer this worker's: recovery took it for dead and another attempt claimed
    it (or it ended meanwhile). The worker stops without writing anything more to the job."""

    def __init__(self, job: BackgroundJob) -> None:
        super().__init__(
            f"{type(job).__name__} {job.pk}: attempt {job.attempt} is no longer the running one"
        )
        self.job = job


def job_status_field(status: type[models.TextChoices]) -> models.CharField:
    """The ``status`` field of a job model: its own choices (pending and running, then its
    terminal states), pending by default."""
    return models.CharField(_("статус"), max_length=20, choices=status.choices, default=PENDING)


def enqueue_after_commit(task: Any, *args: Any) -> None:
    """Send ``task`` once the current transaction commits (at once outside one): a worker never
    looks for a row that is not there yet, and a rolled-back request sends nothing."""
    transaction.on_commit(lambda: task.delay(*args))


def job_audit_source(source: str) -> str:
    """The audit log's source for a job's ``source`` (beat, demo, tests and benchmarks are the
    system; a command is the command line)."""
    return {
        "admin": "admin",
        "api": "api",
        "portal": "portal",
        "webhook": "webhook",
        "cli": "cli",
        "command": "cli",
    }.get(source, "system")


class BackgroundJob(models.Model):
    """Abstract base of every job model. The subclass declares ``status =
    job_status_field(Status)`` with its own ``Status`` (pending and running plus its terminal
    states) and may tune ``heartbeat_timeout``, ``lost_after`` (a pending job older than this
    lost its message: recovery sends it again) and ``recovery_reset`` (fields a dead run is put
    back to with its status)."""

    created_at = models.DateTimeField(_("создан"), auto_now_add=True)
    started_at = models.DateTimeField(_("начат"), null=True, blank=True)
    finished_at = models.DateTimeField(_("завершён"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        _("признак жизни"),
        null=True,
        blank=True,
        help_text=_("Последняя отметка работающего исполнителя (каждые несколько секунд)."),
    )
    attempt = models.PositiveIntegerField(
        _("попытка"),
        default=0,
        help_text=_(
            "Сколько раз исполнитель брал задание в работу (после сбоя исполнителя "
            "задание берёт другой, со следующим номером)."
        ),
    )

    status: str
    # The stale threshold of this model; by default JOB_STALE_SECONDS (read when used).
    heartbeat_timeout: ClassVar[timedelta] = classproperty(lambda cls: heartbeat_timeout())
    lost_after: ClassVar[timedelta] = timedelta(minutes=10)
    recovery_reset: ClassVar[dict[str, Any]] = {}

    class Meta:
        abstract = True

    # -- state -----------------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        """Queued or running: pages refresh themselves while one is."""
        return self.status in ACTIVE_STATES

    @property
    def progress_percent(self) -> int:
        """0-100 for a progress bar."""
        return int(getattr(self, "progress", 0) or 0)

    def is_stalled(self, now: datetime | None = None) -> bool:
        """Active but abandoned: running with no heartbeat for ``heartbeat_timeout`` (its worker
        is gone), or pending for longer than ``lost_after`` (its message is lost). Recovery
        picks up exactly these (``agency.recovery.stalled_jobs_reset``)."""
        now = now or timezone.now()
        if self.status == RUNNING:
            if self.heartbeat_at is not None:
                return self.heartbeat_at < now - self.heartbeat_timeout
            return self.started_at is not None and self.started_at < now - dead_without_heartbeat()
        if self.status == PENDING:
            return self.created_at is not None and self.created_at < now - self.lost_after
        return False

    # -- writes by the worker --------------------------------------------------------------

    def _rows(self) -> models.QuerySet:
        """This job's row, scoped to its client."""
        manager = type(self)._default_manager
        if hasattr(manager, "for_client"):
            return manager.for_client(self.client_id).filter(pk=self.pk)
        return manager.filter(pk=self.pk)

    def owned_rows(self) -> models.QuerySet:
        """This job's row while it is running under the attempt this instance claimed: the
        condition of every write of the worker (a recovered job's old worker, or an instance
        that never won a claim, matches nothing)."""
        attempt = getattr(self, "_claimed_attempt", None)
        if attempt is None:
            return self._rows().none()
        return self._rows().filter(status=RUNNING, attempt=attempt)

    def claim(self, **fields: Any) -> bool:
        """Pending → running under the next attempt number, atomically (with ``fields``): True
        when this worker got the job. The instance is reloaded either way."""
        now = timezone.now()
        claimed = (
            self._rows()
            .filter(status=PENDING)
            .update(
                status=RUNNING,
                started_at=now,
                heartbeat_at=now,
                attempt=models.F("attempt") + 1,
                **fields,
            )
        )
        self.refresh_from_db()
        self._claimed_attempt = self.attempt if claimed else None
        return bool(claimed)

    def progress_write(self, **fields: Any) -> None:
        """Write progress fields (``progress=40, stage="…"``) now, with a heartbeat. Raises
        :class:`JobLost` when the job is no longer this worker's."""
        fields["heartbeat_at"] = timezone.now()
        if not self.owned_rows().update(**fields):
            raise JobLost(self)
        for name, value in fields.items():
            setattr(self, name, value)

    def finish(self, status: str, **fields: Any) -> None:
        """End the job in ``status`` (one of its terminal states) with ``fields``; stamps
        ``finished_at`` unless given. Raises :class:`JobLost`, writing nothing, when the job is
        no longer this worker's."""
        fields.setdefault("finished_at", timezone.now())
        values = {name: getattr(self, name) for name in ("status", *fields)}
        self.status = status
        for name, value in fields.items():
            setattr(self, name, value)
        changes = {"status": status}
        for name in fields:
            field = self._meta.get_field(name)
            changes[field.attname] = field.pre_save(self, add=False)
        if not self.owned_rows().update(**changes):
            for name, value in values.items():
                setattr(self, name, value)
            raise JobLost(self)

    def pulse_fields(self) -> dict[str, Any]:
        """Fields the heartbeat thread writes with each stamp: progress the job keeps in memory
        while its own transaction could not show it yet (see ``ImportJob``)."""
        return {}

    @contextmanager
    def beating(self, every: timedelta | None = None) -> Iterator[None]:
        """Stamp ``heartbeat_at`` (and :meth:`pulse_fields`) every ``every`` (by default
        ``JOB_HEARTBEAT_SECONDS``) while the block runs, from a helper thread with its own
        connection (opened only once a beat is due, closed when the block ends). The thread
        stops beating once the row is no longer running under this attempt."""
        pulse = _Pulse(self.owned_rows, self.pulse_fields, every or heartbeat_every())
        pulse.start()
        try:
            yield
        finally:
            pulse.stop()


def dead_without_heartbeat() -> timedelta:
    """A running job that never stamped a heartbeat (a row from before heartbeats) is dead only
    past the hard task time limit, as before."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) + timedelta(minutes=1)


class _Pulse:
    """The heartbeat thread of one running job."""

    def __init__(
        self,
        rows: Callable[[], models.QuerySet],
        fields: Callable[[], dict[str, Any]],
        every: timedelta,
    ) -> None:
        self._rows = rows
        self._fields = fields
        self._every = every.total_seconds()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _beat(self) -> bool:
        """One stamp; False once the row is no longer this attempt's (ended, or recovered)."""
        try:
            return bool(self._rows().update(heartbeat_at=timezone.now(), **self._fields()))
        except DatabaseError:
            # A missed beat is not an error of the job (SQLite's write lock, a restart of the
            # database): the next one may pass; recovery waits for many.
            logger.warning("job heartbeat not written", exc_info=True)
            return True

    def _run(self) -> None:
        beaten = False
        try:
            while not self._stopped.wait(self._every):
                beaten = True
                if not self._beat():
                    break
        finally:
            if beaten:
                connections.close_all()  # this thread's connections only
