"""A real Celery worker on the throwaway Redis runs an uploaded CSV import to the end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from clients.models import Customer, ImportJob
from clients.tasks import import_job_run_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker(settings, tmp_path, start_worker):
    """A worker process on the test database and the Redis broker of `make test`."""
    settings.MEDIA_ROOT = str(tmp_path)
    return start_worker(MEDIA_ROOT=str(tmp_path))


@pytest.fixture
def seeded_client(db):
    """A client on a seeded tier. Tiers come from a data migration, which an earlier
    transactional test's flush removes (serialized_rollback clashes with the content types
    that flush re-creates), so they are seeded again when missing."""
    from importlib import import_module

    from django.apps import apps

    from clients.models import Tier
    from clients.services import client_create

    if not Tier.objects.exists():
        import_module("clients.migrations.0002_seed_tiers").seed_tiers(apps, None)
    return client_create(name="Скоринг Воркер", tier_code="foundation")


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_worker_runs_an_import_job(worker, seeded_client):
    client_a = seeded_client
    csv_body = (
        "external_id;email;phone;first_name\n"
        "w1;ANNA@example.ru;8 916 111-22-33;Анна\n"
        "w2;bad-email;;Борис\n"
    )
    job = ImportJob(client=client_a, kind="customers", delimiter=";", partial=True)
    job.file.save("upload.csv", ContentFile(csv_body.encode("cp1251")), save=False)
    job.encoding = "cp1251"
    job.save()

    import_job_run_task.delay(job.pk)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status not in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING):
            break
        assert worker.poll() is None, "the worker died"
        time.sleep(0.3)
    assert job.status == ImportJob.Status.SUCCEEDED, job.error_message
    assert (job.rows_total, job.rows_ok, job.rows_rejected, job.progress_percent) == (2, 1, 1, 100)
    assert job.error_report, "rejected rows must be downloadable"
    assert b"email" in job.error_report.open("rb").read()
    customer = Customer.objects.for_client(client_a).get(external_id="w1")
    assert (customer.email, customer.phone, customer.first_name) == (
        "anna@example.ru",
        "+79161112233",
        "Анна",
    )

    # A second delivery of the same task changes nothing (the job was claimed).
    import_job_run_task.delay(job.pk)
    time.sleep(2)
    assert Customer.objects.for_client(client_a).count() == 1


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_worker_runs_a_scoring_run(worker, seeded_client):
    client_a = seeded_client
    from clients.ingest import ingest_records
    from segments.models import CustomerScore, ScoringRun
    from segments.services import scoring_run_request

    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": f"c{i}"} for i in range(30)],
    )
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            {
                "external_id": f"o{i}-{k}",
                "customer_external_id": f"c{i}",
                "placed_at": f"2026-0{1 + k}-{10 + i % 15}T12:00:00+03:00",
                "amount": str(900 + 50 * i + 37 * k),
            }
            for i in range(30)
            for k in range(i % 4 + 1)
        ],
    )
    # The request sends scoring_run_task itself, after its commit.
    run = scoring_run_request(client=client_a, source="admin")

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in (ScoringRun.Status.PENDING, ScoringRun.Status.RUNNING):
            break
        assert worker.poll() is None, "the worker died"
        time.sleep(0.3)
    assert run.status == ScoringRun.Status.SUCCEEDED, run.error
    assert (run.progress, run.customers) == (100, 30)
    assert {"extract", "fit", "write"} <= set(run.stage_seconds)
    assert CustomerScore.objects.for_client(client_a).count() == 30
