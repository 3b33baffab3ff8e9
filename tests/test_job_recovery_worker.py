"""A real Celery worker SIGKILLed mid-job (a CSV import, a scoring run): the job keeps beating
while it is alive, is never taken over then, runs again on another worker once its heartbeat is
stale and the recover task runs, and completes exactly once. The recovery time (kill to the new
claim) is measured and printed (``-s`` shows it); see ``tests/job_recovery.py`` for the timings.

The worker is held mid-job by a lock this test holds on its own connection (the import waits
for its client's import lock, the scoring run for the orders table), so that it is busy in a
stage that writes no progress for longer than the stale threshold, as a long model fit would be.
"""

from __future__ import annotations

from importlib import import_module

import pytest
from django.apps import apps
from django.core.files.base import ContentFile

from agency.models import AuditLogEntry
from clients.ingest import KINDS, ingest_records
from clients.models import Customer, ImportJob, Tier
from clients.services import client_create, import_job_submit
from clients.tasks import import_jobs_recover_task
from segments.models import CustomerScore, ScoringRun
from segments.services import scoring_run_request
from segments.tasks import scoring_runs_recover_task

from .job_recovery import (
    WORKER_ENV,
    hold_past_stale,
    kill,
    other_connection,
    recover_until_claimed,
    report,
    use_test_timings,
    wait_until,
    waiting_locks,
)

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded_client(db, settings, tmp_path):
    """A client on a seeded tier (an earlier transactional test's flush may have removed the
    tiers of the data migration); uploads in a folder the workers share."""
    settings.MEDIA_ROOT = str(tmp_path)
    use_test_timings(settings)
    if not Tier.objects.exists():
        import_module("clients.migrations.0002_seed_tiers").seed_tiers(apps, None)
    return client_create(name="Восстановление", tier_code="foundation")


def _finished(job) -> bool:
    job.refresh_from_db()
    return job.status not in ("pending", "running")


def test_import_killed_mid_job_runs_again_within_the_stale_time_and_once(
    start_worker, seeded_client, tmp_path
):
    client = seeded_client
    rows = "".join(f"k{i};user{i}@example.ru;Анна\n" for i in range(50))
    worker = start_worker(MEDIA_ROOT=str(tmp_path), **WORKER_ENV)
    with other_connection() as locker:
        # The client's customers import lock (clients.ingest), as another import would hold it.
        locker.execute("SELECT pg_advisory_lock(%s, %s)", [client.pk, KINDS.index("customers")])
        job = import_job_submit(
            client=client,
            kind="customers",
            file=ContentFile(f"external_id;email;first_name\n{rows}".encode(), name="k.csv"),
            delimiter=";",
            source="admin",
        )
        wait_until(lambda: waiting_locks("advisory") == 1, 120, "the import to wait", worker)
        job.refresh_from_db()
        assert (job.status, job.attempt, job.rows_total) == ("running", 1, 50)

        hold_past_stale(job, import_jobs_recover_task)

        killed_at = kill(worker)
        locker.execute("SELECT pg_advisory_unlock(%s, %s)", [client.pk, KINDS.index("customers")])
    second = start_worker(MEDIA_ROOT=str(tmp_path), **WORKER_ENV)
    seconds = recover_until_claimed(job, import_jobs_recover_task, killed_at, second)
    report("CSV import", seconds)
    wait_until(lambda: _finished(job), 120, "the import to end", second)

    assert (job.status, job.attempt) == (ImportJob.Status.SUCCEEDED, 2), job.error_message
    assert (job.rows_total, job.rows_ok, job.rows_created) == (50, 50, 50)
    assert Customer.objects.for_client(client).count() == 50
    ends = AuditLogEntry.objects.filter(action="csv_import", object_id=str(job.pk))
    assert ends.count() == 1


def test_scoring_run_killed_mid_job_runs_again_within_the_stale_time_and_once(
    start_worker, seeded_client
):
    client = seeded_client
    ingest_records(
        client=client, kind="customers", records=[{"external_id": f"s{i}"} for i in range(30)]
    )
    ingest_records(
        client=client,
        kind="orders",
        records=[
            {
                "external_id": f"o{i}-{k}",
                "customer_external_id": f"s{i}",
                "placed_at": f"2026-0{1 + k}-{10 + i % 15}T12:00:00+03:00",
                "amount": str(900 + 50 * i + 37 * k),
            }
            for i in range(30)
            for k in range(i % 4 + 1)
        ],
    )
    worker = start_worker(**WORKER_ENV)
    with other_connection() as locker, locker.transaction():
        # The run reads the orders first: it waits here, claimed and beating.
        locker.execute("LOCK TABLE clients_order IN ACCESS EXCLUSIVE MODE")
        run = scoring_run_request(client=client, source="admin")
        wait_until(lambda: waiting_locks("relation") >= 1, 120, "the run to wait", worker)
        run.refresh_from_db()
        assert (run.status, run.attempt) == ("running", 1)

        hold_past_stale(run, scoring_runs_recover_task)

        killed_at = kill(worker)
    second = start_worker(**WORKER_ENV)
    seconds = recover_until_claimed(run, scoring_runs_recover_task, killed_at, second)
    report("scoring run", seconds)
    wait_until(lambda: _finished(run), 120, "the run to end", second)

    assert (run.status, run.attempt) == (ScoringRun.Status.SUCCEEDED, 2), run.error
    assert (run.progress, run.customers) == (100, 30)
    assert CustomerScore.objects.for_client(client).count() == 30
    assert ScoringRun.objects.for_client(client).count() == 1
