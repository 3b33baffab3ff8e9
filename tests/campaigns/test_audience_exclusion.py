"""Joint arbitration with the ad cabinets: an audience leaves out the people currently in a
chain that excludes its members from it (a win-back chain), and takes them back when the
enrolment ends."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from audiences.hashing import EMAIL
from audiences.models import AudienceSnapshot
from audiences.snapshots import snapshot_build, snapshot_values
from campaigns.models import Enrollment
from campaigns.services import chains_tick
from tests.audiences.conftest import build_world, make_audience, sha256, yandex_destination

from .conftest import chain, consent, register

pytestmark = pytest.mark.django_db


def test_people_in_a_win_back_chain_leave_the_chosen_audience(client_a, recording):
    world = build_world(client_a, 20)
    audience = make_audience(world, yandex_destination(client_a))
    other = make_audience(world, yandex_destination(client_a, name="Яндекс 2"), name="Другая")
    win_back = chain(client_a, holdout_percent=0)
    win_back.excluded_audiences.add(audience)
    in_chain = [world.customers["c000015"], world.customers["c000016"]]
    consent(client_a, in_chain)
    now = timezone.now()
    register(client_a, in_chain, now - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=now, dispatch=False)

    def exported(target):
        snapshot = AudienceSnapshot.objects.create(client_id=client_a.pk, audience=target)
        counts = snapshot_build(target, snapshot, hashing="sha256")
        return counts, set(snapshot_values(snapshot.pk, EMAIL))

    counts, emails = exported(audience)
    assert counts.suppressed == 5 + 2  # the suppression segment and the two in the chain
    assert sha256(in_chain[0].email) not in emails
    assert emails == world.emails(sha256, exclude={"c000015", "c000016"})
    _counts, other_emails = exported(other)  # an audience the chain did not choose keeps them
    assert sha256(in_chain[0].email) in other_emails
    # When the enrolment ends, they are exported again.
    Enrollment.objects.for_client(client_a).update(state="completed")
    _counts, emails = exported(audience)
    assert sha256(in_chain[0].email) in emails
