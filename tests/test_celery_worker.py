"""A real Celery worker on the throwaway Redis runs an uploaded CSV import to the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.db import connection

from clients.models import Customer, ImportJob
from clients.tasks import import_job_run_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker(settings, tmp_path):
    """A worker process on the test database and the Redis broker of `make test`."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs the Redis broker that scripts/with_test_services.sh starts")
    settings.MEDIA_ROOT = str(tmp_path)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MEDIA_ROOT": str(tmp_path),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "agency",
            "worker",
            "--pool",
            "solo",
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
    )
    yield process
    process.terminate()
    process.wait(timeout=20)


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_worker_runs_an_import_job(worker, client_a):
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
