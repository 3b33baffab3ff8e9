"""Syncs before the schedule: a deferred run retries on its own (backing off, bounded) until the
platform has the change; withdrawals bring a sync of the audiences that may hold the person
within the hour, many withdrawals in one; a new audience syncs at once. Against the stubs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import Audience, SyncRun
from audiences.services import (
    DEFERRED_RETRIES,
    NEW_SOURCE,
    RETRY_SOURCE,
    WITHDRAWAL_SOURCE,
    audience_create,
    audience_syncs_wanted_request,
    deferred_retry_plan,
)
from audiences.sync import audience_sync_now, sync_run_execute
from audiences.tasks import audience_syncs_wanted_task
from clients.ingest import ingest_records
from clients.models import Customer
from consent.models import ConsentRecord
from consent.requests import customer_erase
from consent.services import consent_record_append
from segments.segmentation import segment_create

from .conftest import FAST, build_world, grant, make_audience, sha256
from .conftest import yandex_destination as yandex_cabinet

pytestmark = pytest.mark.django_db

WITHDRAWN = ConsentRecord.Action.WITHDRAWN


def marked(audience) -> tuple:
    audience.refresh_from_db()
    return audience.sync_wanted_at, audience.sync_wanted_source


def wanted_runs(now) -> list[SyncRun]:
    """What beat's task does at ``now``; the runs it created (executed here, in turn)."""
    return list(SyncRun.objects.unscoped().filter(pk__in=audience_syncs_wanted_request(now=now)))


def synced(client, stub, size=140, **extra):
    """A Yandex audience after its first sync (the segment uploaded, processed or not)."""
    world = build_world(client, size)
    audience = make_audience(world, yandex_cabinet(client), **extra)
    first = audience_sync_now(audience, source="test", http_options=FAST)
    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    audience.refresh_from_db()
    return world, audience


# --------------------------------------------------------------------------------------------
# Deferred runs retry on their own


def test_a_deferred_run_retries_backing_off_until_the_platform_has_the_change(
    client_a, yandex_stub
):
    yandex_stub.processing_delay = 3600  # "is_processed" until process_all()
    world, audience = synced(client_a, yandex_stub)
    segment_id = audience.remote["segment_id"]
    gone = world.customers["c000100"]
    grant(client_a, [gone], action=WITHDRAWN)

    deferred = audience_sync_now(audience, source="test", http_options=FAST)
    assert deferred.status == SyncRun.Status.DEFERRED
    at, source = marked(audience)
    assert source == RETRY_SOURCE
    assert timedelta(minutes=4) < at - deferred.finished_at <= timedelta(minutes=5)
    assert f"Повторная попытка 1 из {DEFERRED_RETRIES}" in deferred.message
    assert "Повторная попытка 1" in audience.state_message  # on the audience's page too

    # Not before it is due; then one run, which the platform defers again: the wait doubles.
    assert wanted_runs(at - timedelta(seconds=1)) == []
    (second,) = wanted_runs(at)
    assert second.source == RETRY_SOURCE
    assert marked(audience) == (None, "")  # the new run is the sync wanted
    second = sync_run_execute(second, http_options=FAST)
    assert second.status == SyncRun.Status.DEFERRED
    at, _ = marked(audience)
    assert timedelta(minutes=9) < at - second.finished_at <= timedelta(minutes=10)
    assert f"Повторная попытка 2 из {DEFERRED_RETRIES}" in second.message
    assert sha256(gone.email) in yandex_stub.segment_values(segment_id, "email")

    # The platform has processed the segment: the next retry sends the change, and stops.
    yandex_stub.process_all()
    (third,) = wanted_runs(at)
    third = sync_run_execute(third, http_options=FAST)
    assert third.status == SyncRun.Status.SUCCEEDED, third.error
    assert (third.added, third.removed) == (0, 2)
    assert sha256(gone.email) not in yandex_stub.segment_values(segment_id, "email")
    assert marked(audience) == (None, "")
    assert wanted_runs(at + timedelta(days=1)) == []


def test_deferred_retries_back_off_to_an_hour_and_stop_after_the_last(client_a, yandex_stub):
    _world, audience = synced(client_a, yandex_stub)
    now = timezone.now()
    waits = []
    for _ in range(DEFERRED_RETRIES + 1):
        run = SyncRun.objects.create(client=client_a, audience=audience, status="running")
        retry, at = deferred_retry_plan(run, now=now)
        waits.append(None if at is None else int((at - now).total_seconds() // 60))
        SyncRun.objects.for_client(client_a).filter(pk=run.pk).update(
            status=SyncRun.Status.DEFERRED, finished_at=now
        )
    assert waits[:6] == [5, 10, 20, 40, 60, 60]
    assert waits[DEFERRED_RETRIES - 1] == 60
    assert waits[DEFERRED_RETRIES] is None  # bounded: the schedule takes over
    assert retry == DEFERRED_RETRIES + 1

    # A run that is not deferred starts the count again.
    SyncRun.objects.create(
        client=client_a, audience=audience, status=SyncRun.Status.SUCCEEDED, finished_at=now
    )
    run = SyncRun.objects.create(client=client_a, audience=audience, status="running")
    assert deferred_retry_plan(run, now=now) == (1, now + timedelta(minutes=5))


# --------------------------------------------------------------------------------------------
# Withdrawals and erasure: a sync within the hour


def test_withdrawals_bring_one_sync_within_the_hour_that_removes_them(client_a, yandex_stub):
    world, audience = synced(client_a, yandex_stub, size=150)
    segment_id = audience.remote["segment_id"]
    other_segment = segment_create(
        client=client_a,
        name="Никто",
        kind="rule",
        definition={"all": [{"attribute": "city", "op": "eq", "value": "Тверь"}]},
    )
    elsewhere = audience_create(
        client=client_a,
        name="Другая",
        segment=other_segment,
        destination=audience.destination,
    )
    Audience.objects.unscoped().update(sync_wanted_at=None, sync_wanted_source="")
    first_run = SyncRun.objects.for_client(client_a).get(audience=audience)
    yandex_stub.process_all()

    before = timezone.now()
    grant(client_a, [world.customers["c000100"]], action=WITHDRAWN)
    at, source = marked(audience)
    assert source == WITHDRAWAL_SOURCE
    assert before + timedelta(minutes=10) <= at <= before + timedelta(hours=1)
    assert at >= first_run.created_at + timedelta(minutes=45)  # spaced from the last sync
    assert marked(elsewhere) == (None, "")  # the person is not in that audience

    # More withdrawals (one at a time and a batch): the same sync, not one each.
    grant(client_a, [world.customers["c000101"]], action=WITHDRAWN)
    grant(client_a, [world.customers["c000102"], world.customers["c000103"]], action=WITHDRAWN)
    assert marked(audience) == (at, WITHDRAWAL_SOURCE)

    assert wanted_runs(at - timedelta(seconds=1)) == []
    (run,) = wanted_runs(at)
    assert (run.audience_id, run.source) == (audience.pk, WITHDRAWAL_SOURCE)
    run = sync_run_execute(run, http_options=FAST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.removed == 8  # four people, email and phone each
    emails = yandex_stub.segment_values(segment_id, "email")
    gone = {f"c00010{i}" for i in range(4)}
    assert emails == world.emails(sha256, exclude=gone)
    assert wanted_runs(at + timedelta(hours=2)) == []  # done: one sync for the four


def test_a_withdrawal_on_a_record_sharing_an_email_brings_the_sync_too(client_a, yandex_stub):
    world, audience = synced(client_a, yandex_stub, size=150)
    Audience.objects.unscoped().update(sync_wanted_at=None, sync_wanted_source="")
    member = world.customers["c000050"]
    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": "twin", "email": member.email, "city": "Казань"}],
    )
    twin = Customer.objects.for_client(client_a).get(external_id="twin")
    grant(client_a, [twin])
    assert marked(audience) == (None, "")  # a grant asks for nothing
    grant(client_a, [twin], action=WITHDRAWN)
    assert marked(audience)[1] == WITHDRAWAL_SOURCE


def test_withdrawal_of_another_purpose_asks_for_no_sync(client_a, yandex_stub):
    world, audience = synced(client_a, yandex_stub, size=150)
    Audience.objects.unscoped().update(sync_wanted_at=None, sync_wanted_source="")
    consent_record_append(
        client=client_a,
        customer=world.customers["c000100"],
        purpose_code="email_marketing",
        action=WITHDRAWN,
        source="api",
    )
    assert marked(audience) == (None, "")


def test_an_erasure_starts_the_sync_at_once(client_a, yandex_stub):
    world, audience = synced(client_a, yandex_stub, size=150)
    person = world.customers["c000100"]
    customer_erase(customer=person)
    run = SyncRun.objects.for_client(client_a).filter(audience=audience).first()
    assert (run.status, run.source) == (SyncRun.Status.PENDING, "erasure")
    assert marked(audience) == (None, "")  # that run is the sync its withdrawal asked for


# --------------------------------------------------------------------------------------------
# A new audience syncs at once


def test_a_new_audience_syncs_at_once(
    client_a, yandex_stub, django_capture_on_commit_callbacks, monkeypatch
):
    world = build_world(client_a, 150)
    destination = yandex_cabinet(client_a)
    sent = []
    monkeypatch.setattr(audience_syncs_wanted_task, "delay", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        audience = make_audience(world, destination)
    at, source = marked(audience)
    assert source == NEW_SOURCE
    assert timezone.now() - at < timedelta(minutes=1)
    # The wanted-syncs task is sent after commit (beat's every minute is the fallback).
    assert sent == [()]

    (run,) = wanted_runs(timezone.now())
    assert (run.audience_id, run.source) == (audience.pk, NEW_SOURCE)
    run = sync_run_execute(run, http_options=FAST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    audience.refresh_from_db()
    assert yandex_stub.segment_values(audience.remote["segment_id"], "email") == world.emails(
        sha256
    )


def test_an_inactive_new_audience_waits(client_a, yandex_stub):
    world = build_world(client_a, 20)
    audience = make_audience(world, yandex_cabinet(client_a), is_active=False)
    assert marked(audience) == (None, "")
    assert wanted_runs(timezone.now() + timedelta(hours=1)) == []


def test_the_wanted_syncs_task_is_the_service(client_a, yandex_stub):
    world = build_world(client_a, 20)
    audience = make_audience(world, yandex_cabinet(client_a))
    (run_id,) = audience_syncs_wanted_task()
    assert SyncRun.objects.for_client(client_a).get(pk=run_id).audience_id == audience.pk
    assert audience_syncs_wanted_task() == []  # the mark is spent; the run is under way
