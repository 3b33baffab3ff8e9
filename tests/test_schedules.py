"""Periodic tasks are declared once, registered in beat, and the import recovery is right."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from clients.models import ImportJob
from clients.services import import_jobs_recover
from config.celery import app
from config.schedules import PERIODIC_TASKS

pytestmark = pytest.mark.django_db


def test_setup_periodic_tasks_registers_real_tasks_idempotently():
    call_command("setup_periodic_tasks")
    call_command("setup_periodic_tasks")
    assert PeriodicTask.objects.count() == len(PERIODIC_TASKS)
    app.loader.import_default_modules()
    for task in PeriodicTask.objects.all():
        assert task.task in app.tasks, task.task
        assert (task.interval and task.interval.every > 0) or task.crontab, task.name


def test_recover_resends_lost_and_dead_jobs_only(client_a, settings):
    now = timezone.now()
    long_ago = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)

    def job(status, created, started=None):
        j = ImportJob.objects.create(client=client_a, kind="customers", status=status)
        ImportJob.objects.unscoped().filter(pk=j.pk).update(created_at=created, started_at=started)
        return j.pk

    lost = job(ImportJob.Status.PENDING, now - timedelta(minutes=30))
    fresh = job(ImportJob.Status.PENDING, now - timedelta(minutes=1))
    dead = job(ImportJob.Status.RUNNING, long_ago, started=long_ago)
    alive = job(ImportJob.Status.RUNNING, now - timedelta(minutes=5), started=now)
    done = job(ImportJob.Status.SUCCEEDED, long_ago, started=long_ago)

    assert import_jobs_recover(now=now) == [dead, lost]
    statuses = dict(ImportJob.objects.unscoped().values_list("pk", "status"))
    assert statuses[dead] == ImportJob.Status.PENDING
    assert statuses[alive] == ImportJob.Status.RUNNING
    assert statuses[fresh] == ImportJob.Status.PENDING
    assert statuses[done] == ImportJob.Status.SUCCEEDED
