"""Audience syncs against the loopback stubs: who leaves the platform, how it is hashed, what
the platforms hold after each run, and how runs behave when the platforms misbehave."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audiences.models import Audience, AudienceSnapshotChunk, SyncRun
from audiences.services import audience_sync_request
from audiences.sync import DestinationBusy, audience_sync_now, sync_run_execute
from consent.models import ConsentRecord, DataRecipient, TransferRefusal
from consent.requests import customer_erase

from .conftest import (
    FAST,
    build_world,
    grant,
    make_audience,
    md5,
    point_platforms_at,
    sha256,
    vk_destination,
    yandex_destination,
)

pytestmark = pytest.mark.django_db


def sync(audience, **options):
    return audience_sync_now(audience, source="test", http_options={**FAST, **options})


def remote(audience):
    audience.refresh_from_db()
    return audience.remote


# -------------------------------------------------------------------------------------------
# Yandex Audiences


def test_yandex_first_sync_uploads_exactly_the_consented_unsuppressed_members(
    client_a, yandex_stub
):
    world = build_world(client_a, 150)
    erased = world.customers["c000149"]
    customer_erase(customer=erased)
    audience = make_audience(world, yandex_destination(client_a))

    run = sync(audience)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.members, run.held_back_erased, run.held_back_consent, run.suppressed) == (
        150,
        1,
        10,
        5,
    )
    assert run.exported == 134
    segment_id = remote(audience)["segment_id"]
    assert yandex_stub.segment_values(segment_id, "email") == world.emails(
        sha256, exclude={"c000149"}
    )
    assert yandex_stub.segment_values(segment_id, "phone") == world.phones(
        sha256, exclude={"c000149"}
    )
    segment = yandex_stub.segment(segment_id)
    assert segment["hashed"] in (True, 1)
    assert segment["status"] in ("is_processed", "processed")
    assert run.uploaded == 268  # one line per identifier
    assert run.request_ids, "the platform's request ids are kept"
    assert yandex_stub.upload_count == 1


def test_yandex_changes_wait_for_processing_then_withdrawal_removes_the_person(
    client_a, yandex_stub
):
    world = build_world(client_a, 140)
    yandex_stub.processing_delay = 3600  # stays "is_processed" until process_all()
    audience = make_audience(world, yandex_destination(client_a))
    assert sync(audience).status == SyncRun.Status.SUCCEEDED
    segment_id = remote(audience)["segment_id"]
    gone = world.customers["c000100"]
    grant(client_a, [gone], action=ConsentRecord.Action.WITHDRAWN)

    deferred = sync(audience)
    assert deferred.status == SyncRun.Status.DEFERRED
    assert "обрабатывается" in deferred.message
    assert sha256(gone.email) in yandex_stub.segment_values(segment_id, "email")
    assert yandex_stub.modification_count(segment_id) == 0

    yandex_stub.process_all()
    done = sync(audience)
    assert done.status == SyncRun.Status.SUCCEEDED, done.error
    assert (done.added, done.removed) == (0, 2)
    assert sha256(gone.email) not in yandex_stub.segment_values(segment_id, "email")
    assert sha256(gone.phone[1:]) not in yandex_stub.segment_values(segment_id, "phone")
    assert yandex_stub.segment_values(segment_id, "email") == world.emails(
        sha256, exclude={"c000100"}
    )
    audience.refresh_from_db()
    assert audience.confirmed_snapshot_id == done.snapshot_id
    # Snapshots nobody holds any more are gone.
    assert set(AudienceSnapshotChunk.objects.values_list("snapshot_id", flat=True).distinct()) == {
        done.snapshot_id
    }

    again = sync(audience)
    assert (again.added, again.removed, again.uploaded) == (0, 0, 0)
    assert any("изменений нет" in step for step in again.steps)


def test_yandex_below_minimum_is_not_sent(client_a, yandex_stub):
    world = build_world(client_a, 60)
    audience = make_audience(world, yandex_destination(client_a))
    run = sync(audience)
    assert run.status == SyncRun.Status.SKIPPED
    assert "не меньше 100" in run.message
    assert yandex_stub.upload_count == 0
    audience.refresh_from_db()
    assert audience.state == Audience.State.TOO_SMALL


def test_yandex_lookalike_created_from_processed_seed(client_a, yandex_stub):
    world = build_world(client_a, 130)
    audience = make_audience(
        world, yandex_destination(client_a), purpose="lookalike", lookalike_value=4
    )
    first = sync(audience)
    assert "после обработки" in first.message or "когда Яндекс обработает" in first.message
    yandex_stub.process_all()
    sync(audience)
    lookalike_id = remote(audience)["lookalike_id"]
    lookalike = yandex_stub.segment(lookalike_id)
    assert lookalike["lookalike_link"] == remote(audience)["segment_id"]
    assert lookalike["lookalike_value"] == 4
    sync(audience)
    assert len([s for s in yandex_stub.segments_named(lookalike["name"])]) == 1


def test_yandex_refusal_ends_the_run_with_the_platform_message(client_a, yandex_stub):
    world = build_world(client_a, 120)
    audience = make_audience(world, yandex_destination(client_a, token="wrong"))
    run = sync(audience)
    assert run.status == SyncRun.Status.FAILED
    assert run.platform_error
    assert run.error == run.platform_error
    # A 401 is not retried.
    assert yandex_stub.calls("segments") == 1
    audience.refresh_from_db()
    assert audience.state == Audience.State.FAILED


# -------------------------------------------------------------------------------------------
# VK Ads / myTarget


@pytest.fixture
def vk_world(client_a):
    return build_world(client_a, 2100)


@pytest.mark.parametrize(
    ("purpose", "relation"), [("retargeting", "positive"), ("exclusion", "negative")]
)
def test_vk_lists_hold_the_consented_members_md5_and_segment_relations(
    client_a, vk_stub, vk_world, purpose, relation
):
    audience = make_audience(vk_world, vk_destination(client_a), purpose=purpose)
    run = sync(audience)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    lists = remote(audience)["lists"]
    assert vk_stub.list_values(lists["emails"]["id"]) == vk_world.emails(md5)
    assert vk_stub.list_values(lists["phones"]["id"]) == vk_world.phones(md5)
    (segment,) = vk_stub.segments()
    assert {r["params"]["type"] for r in segment["relations"]} == {relation}
    assert {r["params"]["source_id"] for r in segment["relations"]} == {
        lists["emails"]["id"],
        lists["phones"]["id"],
    }


def test_vk_withdrawal_sent_as_a_padded_removal_list(client_a, vk_stub, vk_world):
    audience = make_audience(vk_world, vk_destination(client_a))
    sync(audience)
    gone = vk_world.customers["c000500"]
    grant(client_a, [gone], action=ConsentRecord.Action.WITHDRAWN)
    run = sync(audience)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.removed == 2
    lists = remote(audience)["lists"]
    assert md5(gone.email) not in vk_stub.list_values(lists["emails"]["id"])
    assert vk_stub.list_values(lists["emails"]["id"]) == vk_world.emails(md5, exclude={"c000500"})
    assert vk_stub.list_values(lists["phones"]["id"]) == vk_world.phones(md5, exclude={"c000500"})
    assert any("до минимума 25" in step for step in run.steps)
    assert len(vk_stub.segments()) == 1


def test_vk_token_is_reused_and_refreshed_never_minted_per_sync(client_a, vk_stub, vk_world):
    audience = make_audience(vk_world, vk_destination(client_a))
    sync(audience)
    sync(audience)
    assert vk_stub.tokens_issued == 1
    vk_stub.expire_tokens()
    destination = audience.destination
    destination.refresh_from_db()
    destination.token_expires_at = timezone.now() + timezone.timedelta(days=1)  # we think valid
    destination.save(update_fields=["token_expires_at"])
    assert sync(audience).status == SyncRun.Status.SUCCEEDED
    assert vk_stub.live_tokens("test-client") <= 1


def test_vk_plain_identifiers(client_a, vk_stub, vk_world):
    audience = make_audience(
        vk_world, vk_destination(client_a, hashing="plain"), identifiers="phone"
    )
    sync(audience)
    lists = remote(audience)["lists"]
    assert set(lists) == {"phones"}
    assert vk_stub.list_values(lists["phones"]["id"]) == vk_world.phones(lambda v: v)


def test_vk_below_2000_lines_is_not_sent(client_a, vk_stub):
    world = build_world(client_a, 300)
    audience = make_audience(world, vk_destination(client_a, platform="mytarget"))
    run = sync(audience)
    assert run.status == SyncRun.Status.SKIPPED
    assert "от 2000" in run.message
    assert vk_stub.upload_count == 0


# -------------------------------------------------------------------------------------------
# Faults, leases, the cross-border guard


def test_runs_converge_under_faults_without_duplicate_uploads(client_a, vk_world, settings):
    from tests.stubs.vk_ads import VkAdsStub
    from tests.stubs.yandex_audiences import YandexAudiencesStub

    with (
        YandexAudiencesStub(
            tokens={"test-yandex-token"},
            quota_per_minute=None,
            fault_rate=0.2,
            fault_seed=7,
            timeout_sleep=1.2,
        ) as yandex,
        VkAdsStub(
            credentials={"test-client": "test-secret"},
            fault_rate=0.2,
            fault_seed=11,
            timeout_sleep=1.2,
        ) as vk,
    ):
        point_platforms_at(settings, yandex=yandex, vk=vk)
        ya_audience = make_audience(vk_world, yandex_destination(client_a), name="Я")
        vk_audience = make_audience(vk_world, vk_destination(client_a), name="VK")
        gone = vk_world.customers["c001000"]
        for step in range(3):
            if step == 2:
                grant(client_a, [gone], action=ConsentRecord.Action.WITHDRAWN)
            for audience in (ya_audience, vk_audience):
                run = sync(audience, timeout=1)
                assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.DEFERRED), run.error
            yandex.process_all()
            vk.process_all()
        # the last Yandex change may have been deferred while processing: one more round
        assert sync(ya_audience, timeout=1).status == SyncRun.Status.SUCCEEDED
        yandex_id = remote(ya_audience)["segment_id"]
        assert yandex.upload_count == 1
        assert yandex.segment_values(yandex_id, "email") == vk_world.emails(
            sha256, exclude={"c001000"}
        )
        lists = remote(vk_audience)["lists"]
        assert len(vk.base_lists()) == 2
        assert vk.list_values(lists["emails"]["id"]) == vk_world.emails(md5, exclude={"c001000"})
        assert len(vk.segments()) == 1


def test_one_sync_at_a_time_per_destination(client_a, yandex_stub):
    world = build_world(client_a, 110)
    destination = yandex_destination(client_a)
    first = make_audience(world, destination, name="A")
    second = make_audience(world, destination, name="B")
    holder, _ = audience_sync_request(audience=first, source="test")
    type(destination).objects.for_client(client_a).filter(pk=destination.pk).update(
        busy_run_id=holder.pk, busy_until=timezone.now() + timezone.timedelta(minutes=30)
    )
    run, created = audience_sync_request(audience=second, source="test")
    assert created
    with pytest.raises(DestinationBusy):
        sync_run_execute(run, http_options=FAST)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.PENDING
    assert yandex_stub.requests == []
    # A second "sync now" while one is queued returns the same run.
    assert audience_sync_request(audience=second, source="test") == (run, False)


def test_cross_border_destination_refused_before_anything_is_sent(client_a, yandex_stub):
    world = build_world(client_a, 110)
    destination = yandex_destination(client_a)
    # A destination's recipient is its platform's operator, in Russia; the guard still stands
    # for a recipient recorded abroad (staff can edit recipients in the consent admin).
    DataRecipient.objects.for_client(client_a).filter(pk=destination.recipient_id).update(
        country="DE"
    )
    audience = make_audience(world, destination)
    run = sync(audience)
    assert run.status == SyncRun.Status.FAILED
    assert "152-ФЗ" in run.error
    assert yandex_stub.requests == []
    assert (
        TransferRefusal.objects.for_client(client_a)
        .filter(operation=f"audience_sync:{audience.pk}")
        .exists()
    )
    assert run.snapshot_id is None
