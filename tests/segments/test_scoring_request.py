"""One way to start a scoring run (``segments.services.scoring_run_request``), whichever entry
point asks: the API, the admin's "recompute now", ``score_client`` and the daily fan-out all get
the same answer while a run of the client is pending or running, and the database refuses a
second active run even to code that skips the service."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from agency.models import AuditLogEntry
from clients.services import api_key_create
from segments import services, tasks
from segments.models import ScoringRun
from segments.services import ScoringRunActive, scoring_run_request, scoring_runs_due

pytestmark = pytest.mark.django_db

RECOMPUTE = "admin:segments_scoringrun_recompute"


@pytest.fixture
def sent(monkeypatch):
    """Run ids handed to scoring_run_task.delay."""
    calls = []
    monkeypatch.setattr(tasks.scoring_run_task, "delay", lambda run_id: calls.append(run_id))
    return calls


def _started_entries(client):
    return AuditLogEntry.objects.filter(action="scoring_run_started", client=client)


def test_a_pending_run_is_refused_the_same_way_by_api_admin_command_and_beat(
    client, account_manager, client_a, make_api, sent, django_capture_on_commit_callbacks
):
    _key, raw = api_key_create(client=client_a, name="scoring")
    api = make_api(raw)
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/scoring/run/")
    assert first.status_code == 202
    run = ScoringRun.objects.for_client(client_a).get()
    assert sent == [run.pk]

    # API: 409 with the run's id and where to watch it.
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post("/api/v1/scoring/run/")
    assert again.status_code == 409
    assert again.json() == {
        "code": "scoring_run_active",
        "message": "Скоринг клиента уже идёт; дождитесь его окончания.",
        "id": run.pk,
        "status_url": f"/api/v1/scoring/runs/{run.pk}/",
    }

    # Admin: the same run's page, with a message.
    client.force_login(account_manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(RECOMPUTE), {"client": client_a.pk}, follow=True)
    assert response.redirect_chain[-1][0] == reverse(
        "admin:segments_scoringrun_change", args=[run.pk]
    )
    assert "уже идёт" in response.content.decode()

    # Command: a non-zero exit naming the run.
    with pytest.raises(CommandError, match=f"запуск {run.pk}"):
        call_command("score_client", client_a.slug, stdout=StringIO(), stderr=StringIO())

    # Beat: a run started yesterday and still running (it beats) makes the fan-out skip the
    # client today.
    yesterday = timezone.now() - timedelta(days=1)
    ScoringRun.objects.for_client(client_a).filter(pk=run.pk).update(
        status="running", created_at=yesterday, started_at=yesterday, heartbeat_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.scoring_daily_task() == []

    # Nothing else was created, sent or audited.
    assert list(ScoringRun.objects.for_client(client_a).values_list("pk", flat=True)) == [run.pk]
    assert sent == [run.pk]
    assert _started_entries(client_a).count() == 1


def test_each_entry_point_requests_through_the_service(
    client, account_manager, client_a, client_b, api_b, sent, django_capture_on_commit_callbacks
):
    """The API, the admin and the beat each leave the service's audit entry with their source,
    and the task is sent once per run, after the commit."""
    with django_capture_on_commit_callbacks(execute=True):
        assert api_b.post("/api/v1/scoring/run/").status_code == 202
    client.force_login(account_manager)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse(RECOMPUTE), {"client": client_a.pk})
    runs = {r.client_id: r for r in ScoringRun.objects.unscoped()}
    assert (runs[client_b.pk].source, runs[client_a.pk].source) == ("api", "admin")
    assert sorted(sent) == sorted(r.pk for r in runs.values())
    entries = {e.client_id: e for e in AuditLogEntry.objects.filter(action="scoring_run_started")}
    assert entries[client_b.pk].source == "api"
    assert entries[client_b.pk].actor_label.startswith("api-key:")
    assert (entries[client_a.pk].source, entries[client_a.pk].actor) == ("admin", account_manager)
    assert entries[client_a.pk].object_id == str(runs[client_a.pk].pk)

    # Both finish; the daily fan-out skips them today and requests for both tomorrow.
    ScoringRun.objects.unscoped().update(status="succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.scoring_daily_task() == []
    with django_capture_on_commit_callbacks(execute=True):
        due = scoring_runs_due(now=timezone.now() + timedelta(days=1))
    assert len(due) == 2
    assert sent[-2:] == due
    beat_entries = AuditLogEntry.objects.filter(action="scoring_run_started", source="system")
    assert beat_entries.count() == 2
    assert {e.details["source"] for e in beat_entries} == {"beat"}


def test_the_task_is_sent_only_after_the_commit(client_a, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = scoring_run_request(client=client_a, source="admin")
        assert sent == []  # not inside the transaction
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == [run.pk]


def test_a_rolled_back_request_sends_nothing(client_a, sent, django_capture_on_commit_callbacks):
    def ask_then_fail():
        with transaction.atomic():
            scoring_run_request(client=client_a, source="admin")
            raise RuntimeError("the caller failed after asking")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        ask_then_fail()
    assert sent == []
    assert not ScoringRun.objects.for_client(client_a).exists()
    assert not _started_entries(client_a).exists()


def test_the_constraint_refuses_a_second_active_run_inserted_directly(client_a, client_b):
    ScoringRun.objects.create(client=client_a)
    with pytest.raises(IntegrityError), transaction.atomic():
        ScoringRun.objects.create(client=client_a, status="running")
    # A finished run, or another client's, is no conflict.
    ScoringRun.objects.create(client=client_a, status="succeeded")
    ScoringRun.objects.create(client=client_b)
    assert ScoringRun.objects.for_client(client_a).count() == 2


def test_a_race_past_the_check_is_answered_like_the_check(client_a, monkeypatch, sent):
    """Two requests that both saw no active run: the second one's insert hits the constraint
    and gets ScoringRunActive naming the first run, not a server error."""
    first = scoring_run_request(client=client_a, source="api")
    looked_up = services._active_run
    answers = iter([None])  # the check saw nothing; the look-up after the refusal sees the run
    monkeypatch.setattr(
        services, "_active_run", lambda client: next(answers, None) or looked_up(client)
    )
    with pytest.raises(ScoringRunActive) as refused:
        scoring_run_request(client=client_a, source="api")
    assert refused.value.run.pk == first.pk
    assert ScoringRun.objects.for_client(client_a).count() == 1
    assert _started_entries(client_a).count() == 1


def test_a_run_whose_worker_is_gone_does_not_block_a_new_one(client_a, sent):
    old = scoring_run_request(client=client_a, source="beat")
    silent = timezone.now() - ScoringRun.heartbeat_timeout - timedelta(minutes=1)
    ScoringRun.objects.for_client(client_a).filter(pk=old.pk).update(
        status="running", started_at=silent, heartbeat_at=silent
    )
    new = scoring_run_request(client=client_a, source="admin")
    old.refresh_from_db()
    assert (old.status, new.status) == ("failed", "pending")
    assert "потерян" in old.error

    # A running run that still beats blocks, however long ago it started.
    ScoringRun.objects.for_client(client_a).filter(pk=new.pk).update(
        status="running",
        started_at=timezone.now() - timedelta(hours=5),
        heartbeat_at=timezone.now(),
    )
    with pytest.raises(ScoringRunActive):
        scoring_run_request(client=client_a, source="admin")
    assert ScoringRun.objects.for_client(client_a).count() == 2
