"""Two customer records with one email: a withdrawal on one of them wins over the other's grant
for that email (the value the platform sees is the person's), in the snapshot and on the
platform; the run counts a member left with nothing to send as held back for consent."""

from __future__ import annotations

import pytest

from audiences.models import Audience, AudienceSnapshotChunk, SyncRun
from audiences.snapshots import snapshot_values
from audiences.sync import audience_sync_now
from clients.ingest import ingest_records
from clients.models import Customer
from consent.models import ConsentRecord
from segments.segmentation import segment_refresh

from .conftest import FAST, build_world, grant, make_audience, sha256
from .conftest import yandex_destination as yandex_cabinet

pytestmark = pytest.mark.django_db

SHARED = "family@example.ru"


def sync(audience):
    return audience_sync_now(audience, source="test", http_options=FAST)


def add_pair(world, *, withdrawn_in_segment: bool):
    """Two records of one email: «granted» in the segment with a phone of its own, «withdrew»
    (in the segment or not) who granted once and then withdrew."""
    ingest_records(
        client=world.client,
        kind="customers",
        records=[
            {"external_id": "granted", "email": SHARED, "phone": "+79990000001", "city": "Москва"},
            {
                "external_id": "withdrew",
                "email": SHARED.upper(),  # any spelling: stored normalised
                "phone": "+79990000002",
                "city": "Москва" if withdrawn_in_segment else "Казань",
            },
        ],
    )
    granted = Customer.objects.for_client(world.client).get(external_id="granted")
    withdrew = Customer.objects.for_client(world.client).get(external_id="withdrew")
    grant(world.client, [granted, withdrew])
    grant(world.client, [withdrew], action=ConsentRecord.Action.WITHDRAWN)
    segment_refresh(segment=world.segment)
    return granted, withdrew


def snapshot_of(run, kind):
    return set(snapshot_values(run.snapshot_id, kind))


@pytest.mark.parametrize("withdrawn_in_segment", [False, True])
def test_a_withdrawal_on_one_record_keeps_the_shared_email_off_the_platform(
    client_a, yandex_stub, withdrawn_in_segment
):
    world = build_world(client_a, 150)
    granted, withdrew = add_pair(world, withdrawn_in_segment=withdrawn_in_segment)
    audience = make_audience(world, yandex_cabinet(client_a))

    run = sync(audience)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert sha256(SHARED) not in snapshot_of(run, 1)
    held = yandex_stub.segment_values(audience_remote(audience)["segment_id"], "email")
    assert sha256(SHARED) not in held
    assert held == world.emails(sha256)  # everyone else's email is there
    # «granted» still goes by the phone only they have; «withdrew» by nothing.
    phones = yandex_stub.segment_values(audience_remote(audience)["segment_id"], "phone")
    assert sha256(granted.phone[1:]) in phones
    assert sha256(withdrew.phone[1:]) not in phones
    assert run.members == 152 if withdrawn_in_segment else 151
    assert run.held_back_consent == 10 + (1 if withdrawn_in_segment else 0)
    assert run.exported == 136  # the 135 of the world and «granted»


def test_a_member_left_with_no_value_to_send_is_held_back_for_consent(client_a, yandex_stub):
    world = build_world(client_a, 150)
    add_pair(world, withdrawn_in_segment=False)
    audience = make_audience(
        world, yandex_cabinet(client_a), identifiers=Audience.Identifiers.EMAIL
    )

    run = sync(audience)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.members, run.held_back_consent, run.suppressed) == (151, 11, 5)
    assert run.exported == 135
    emails = yandex_stub.segment_values(audience_remote(audience)["segment_id"], "email")
    assert emails == world.emails(sha256)
    assert sha256(SHARED) not in emails
    assert not AudienceSnapshotChunk.objects.filter(values__contains=sha256(SHARED)).exists()


def test_a_grant_after_the_withdrawal_lets_the_shared_email_go_again(client_a, yandex_stub):
    world = build_world(client_a, 150)
    granted, withdrew = add_pair(world, withdrawn_in_segment=False)
    audience = make_audience(world, yandex_cabinet(client_a))
    assert sha256(SHARED) not in snapshot_of(sync(audience), 1)

    grant(client_a, [withdrew])  # the latest action wins, as for every consent question
    yandex_stub.process_all()
    run = sync(audience)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert sha256(SHARED) in snapshot_of(run, 1)
    assert sha256(SHARED) in yandex_stub.segment_values(
        audience_remote(audience)["segment_id"], "email"
    )


def audience_remote(audience):
    audience.refresh_from_db()
    return audience.remote
