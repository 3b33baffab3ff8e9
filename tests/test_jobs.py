"""The one background-job base (``agency.jobs``) under the CSV imports, scoring runs and audience
syncs: recovery tells a live long job from a dead one by its heartbeat, the heartbeat thread
writes while the job's own work is busy, and the three admins show progress the same way."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audiences.models import SyncRun
from audiences.services import audience_create, destination_create, sync_runs_recover
from clients.models import ImportJob
from clients.services import client_create, import_jobs_recover
from segments.models import ScoringRun, Segment
from segments.services import scoring_runs_recover


def _client(name: str):
    return client_create(name=name, tier_code="foundation")


def _audience(client):
    destination = destination_create(
        client=client,
        name="Яндекс",
        platform="yandex_audiences",
        credentials={"token": "y0_AgAAAA-jobs-test-token-000000"},
    )
    segment = Segment.objects.create(client=client, name="Все", kind="rule", definition={})
    return audience_create(client=client, name="Все", segment=segment, destination=destination)


def _import_job(client, **fields):
    return ImportJob.objects.create(client=client, kind="customers", **fields)


def _scoring_run(client, **fields):
    return ScoringRun.objects.create(client=client, **fields)


def _sync_run(client, **fields):
    return SyncRun.objects.create(client=client, audience=_audience(client), **fields)


KINDS = {
    "import": (_import_job, import_jobs_recover),
    "scoring": (_scoring_run, scoring_runs_recover),
    "sync": (_sync_run, sync_runs_recover),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_recovery_resends_a_silent_running_job_and_leaves_a_beating_one_alone(kind):
    make, recover = KINDS[kind]
    now = timezone.now()
    # Started hours ago (past the task time limit), but beat a minute ago: alive.
    long_job = make(
        _client(f"Долгий {kind}"),
        status="running",
        started_at=now - timedelta(hours=3),
        heartbeat_at=now - timedelta(minutes=1),
    )
    # Started 12 minutes ago and silent for 11: its worker is gone.
    silent = make(
        _client(f"Молчит {kind}"),
        status="running",
        started_at=now - timedelta(minutes=12),
        heartbeat_at=now - timedelta(minutes=11),
    )
    model = type(silent)
    model.objects.unscoped().filter(pk__in=[long_job.pk, silent.pk]).update(
        created_at=now - timedelta(minutes=13)
    )

    assert recover(now=now) == [silent.pk]  # sent again at once, however young the job

    long_job.refresh_from_db()
    silent.refresh_from_db()
    assert (long_job.status, long_job.heartbeat_at is not None) == ("running", True)
    assert (silent.status, silent.started_at, silent.heartbeat_at) == ("pending", None, None)
    assert not long_job.is_stalled(now)


@pytest.mark.django_db
def test_recovery_task_sends_the_silent_run_to_a_worker(monkeypatch):
    from segments import tasks

    sent = []
    monkeypatch.setattr(tasks.scoring_run_task, "delay", lambda run_id: sent.append(run_id))
    silent_since = timezone.now() - timedelta(minutes=11)
    run = _scoring_run(
        _client("Потерян"), status="running", started_at=silent_since, heartbeat_at=silent_since
    )
    assert tasks.scoring_runs_recover_task() == [run.pk]
    assert sent == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.progress, run.stage) == ("pending", 0, "")


@pytest.fixture
def committed_client(transactional_db):
    """A client in a transactional test (tiers come from a data migration that an earlier
    transactional test's flush may have removed)."""
    from importlib import import_module

    from django.apps import apps

    from clients.models import Tier

    if not Tier.objects.exists():
        import_module("clients.migrations.0002_seed_tiers").seed_tiers(apps, None)
    return _client("Пульс")


def test_the_heartbeat_thread_beats_and_writes_progress_kept_in_memory(committed_client):
    """The thread writes on its own connection: an import's row count becomes visible while the
    import's own transaction (which never touches the job row) is still open."""
    long_ago = timezone.now() - timedelta(hours=1)
    job = _import_job(committed_client)
    assert job.claim()
    ImportJob.objects.for_client(committed_client).filter(pk=job.pk).update(heartbeat_at=long_ago)
    with job.beating(every=timedelta(milliseconds=50)):
        job.rows_processed = 1234  # as on_progress does, in memory only
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stored = ImportJob.objects.for_client(committed_client).get(pk=job.pk)
            if stored.rows_processed == 1234:
                break
            time.sleep(0.05)
    assert stored.rows_processed == 1234
    assert stored.heartbeat_at > long_ago + timedelta(minutes=59)
    assert not stored.is_stalled()
    # Stopped with the block: no beat after it.
    last = ImportJob.objects.for_client(committed_client).get(pk=job.pk).heartbeat_at
    time.sleep(0.2)
    assert ImportJob.objects.for_client(committed_client).get(pk=job.pk).heartbeat_at == last


@pytest.mark.django_db
def test_claim_is_won_once_and_stamps_the_heartbeat(client_a):
    job = _import_job(client_a)
    other_delivery = ImportJob.objects.for_client(client_a).get(pk=job.pk)
    assert job.claim() is True
    assert other_delivery.claim() is False
    assert (job.status, other_delivery.status) == ("running", "running")
    assert job.heartbeat_at == job.started_at


# --------------------------------------------------------------------------------------------
# The admin progress mixin, the same on the three job admins

ADMIN_PAGES = {
    "import": "admin:clients_importjob_change",
    "scoring": "admin:segments_scoringrun_change",
    "sync": "admin:audiences_syncrun_change",
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_job_pages_refresh_while_alive_and_say_when_the_worker_is_gone(client, agency_admin, kind):
    make, _recover = KINDS[kind]
    now = timezone.now()
    job = make(
        _client(f"Страница {kind}"),
        status="running",
        started_at=now - timedelta(minutes=20),
        heartbeat_at=now,
    )
    if kind == "import":
        ImportJob.objects.unscoped().filter(pk=job.pk).update(rows_total=200, rows_processed=50)
    else:
        type(job).objects.unscoped().filter(pk=job.pk).update(progress=25)
    client.force_login(agency_admin)
    url = reverse(ADMIN_PAGES[kind], args=[job.pk])

    alive = client.get(url).content.decode()
    assert '<meta http-equiv="refresh" content="3">' in alive
    assert '<progress value="25" max="100"' in alive
    assert "job-status-running" in alive or "scoring-status-running" in alive
    assert "исполнитель не отвечает" not in alive
    listing = client.get(reverse(ADMIN_PAGES[kind].replace("_change", "_changelist")))
    assert '<meta http-equiv="refresh" content="6">' in listing.content.decode()

    type(job).objects.unscoped().filter(pk=job.pk).update(heartbeat_at=now - timedelta(hours=1))
    stalled = client.get(url).content.decode()
    assert 'http-equiv="refresh"' not in stalled
    assert "исполнитель не отвечает" in stalled


# --------------------------------------------------------------------------------------------
# Within five minutes, and never twice at once


def test_production_figures_recover_a_dead_worker_within_five_minutes(settings):
    """Worst case from the kill: the stale threshold after the last beat, plus one period of the
    recover task (beat), plus the heartbeat period the last beat may have come early by."""
    from config.schedules import PERIODIC_TASKS

    recover_every = max(
        spec["every_seconds"] for spec in PERIODIC_TASKS if spec["task"].endswith("recover_task")
    )
    assert (settings.JOB_HEARTBEAT_SECONDS, settings.JOB_STALE_SECONDS) == (10, 120)
    assert recover_every == 60
    assert ScoringRun.heartbeat_timeout == timedelta(minutes=2)
    assert settings.JOB_STALE_SECONDS >= 10 * settings.JOB_HEARTBEAT_SECONDS  # ten missed beats
    assert settings.JOB_STALE_SECONDS + recover_every < 5 * 60


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_a_job_silent_for_three_minutes_is_recovered(kind):
    make, recover = KINDS[kind]
    now = timezone.now()
    silent = make(
        _client(f"Три минуты {kind}"),
        status="running",
        started_at=now - timedelta(minutes=4),
        heartbeat_at=now - timedelta(minutes=3),
    )
    beating = make(
        _client(f"Бьётся {kind}"),
        status="running",
        started_at=now - timedelta(minutes=4),
        heartbeat_at=now - timedelta(seconds=90),
    )
    assert recover(now=now) == [silent.pk]
    beating.refresh_from_db()
    assert beating.status == "running"


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_the_old_worker_of_a_recovered_job_writes_nothing_over_the_new_attempt(kind):
    from agency.jobs import JobLost
    from agency.recovery import job_recover

    make, _recover = KINDS[kind]
    job = make(_client(f"Две попытки {kind}"))
    model = type(job)
    old = model.objects.unscoped().get(pk=job.pk)
    assert old.claim()
    assert old.attempt == 1
    old.progress_write(stage="до сбоя") if kind != "import" else old.progress_write(rows_total=9)
    # Silent past the stale threshold: recovery puts it back, another worker claims it.
    model.objects.unscoped().filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=3)
    )
    assert job_recover(model) == [job.pk]
    new = model.objects.unscoped().get(pk=job.pk)
    assert new.claim()
    assert new.attempt == 2
    late = model.objects.unscoped().get(pk=job.pk)
    assert not late.claim()  # a late second delivery gets nothing either

    fields = {"rows_total": 7} if kind == "import" else {"stage": "старый исполнитель"}
    for worker in (old, late):
        with pytest.raises(JobLost):
            worker.progress_write(**fields)
    with pytest.raises(JobLost):
        old.finish("failed", **{"error_message" if kind == "import" else "error": "старый"})
    stored = model.objects.unscoped().get(pk=job.pk)
    assert (stored.status, stored.attempt, stored.finished_at) == ("running", 2, None)

    new.progress_write(**({"rows_total": 11} if kind == "import" else {"stage": "новый"}))
    new.finish("succeeded")
    stored = model.objects.unscoped().get(pk=job.pk)
    assert (stored.status, stored.attempt) == ("succeeded", 2)
    assert stored.rows_total == 11 if kind == "import" else stored.stage == "новый"


def test_the_heartbeat_thread_of_a_recovered_job_stops_beating(committed_client):
    job = _import_job(committed_client)
    assert job.claim()
    rows = ImportJob.objects.for_client(committed_client).filter(pk=job.pk)
    with job.beating(every=timedelta(milliseconds=50)):
        # Taken over: recovered and claimed by another worker (attempt 2), which then goes quiet.
        rows.update(status="pending", heartbeat_at=None)
        assert ImportJob.objects.for_client(committed_client).get(pk=job.pk).claim()
        quiet = timezone.now() - timedelta(hours=1)
        rows.update(heartbeat_at=quiet, rows_processed=5)
        job.rows_processed = 1234  # the old worker's progress, which its pulse would write
        time.sleep(0.5)
        stored = rows.get()
        assert (stored.heartbeat_at, stored.rows_processed, stored.attempt) == (quiet, 5, 2)


@pytest.mark.django_db
def test_setup_periodic_tasks_moves_recovery_off_its_former_default_only():
    from django.core.management import call_command
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    call_command("setup_periodic_tasks")
    old = IntervalSchedule.objects.create(every=600, period=IntervalSchedule.SECONDS)
    edited = IntervalSchedule.objects.create(every=900, period=IntervalSchedule.SECONDS)
    tasks = PeriodicTask.objects.filter(task__endswith="recover_task")
    tasks.filter(task="segments.tasks.scoring_runs_recover_task").update(interval=old)
    tasks.filter(task="audiences.tasks.audience_syncs_recover_task").update(interval=edited)

    call_command("setup_periodic_tasks")

    every = {task.task.split(".")[0]: task.interval.every for task in tasks.all()}
    # an edit is kept; campaigns' outbox recovery keeps its default
    assert every == {"clients": 60, "segments": 60, "audiences": 900, "campaigns": 60}
