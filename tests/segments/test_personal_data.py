"""Erasure of a person in segments: scores and past stays go at once, the current stay at the
next refresh of its segment (deleted, not closed); aggregates and other people stay."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from consent.requests import customer_erase
from segments.models import CustomerScore, Segment, SegmentMembership, SegmentSizeSnapshot
from segments.segmentation import segment_create, segment_refresh
from tests.segments.test_rules import build_base

pytestmark = pytest.mark.django_db


def stays(client, customer) -> list[tuple[str, bool]]:
    return sorted(
        (m.segment.name, m.left_at is None)
        for m in SegmentMembership.objects.for_client(client)
        .filter(customer=customer)
        .select_related("segment")
    )


def test_erasure_deletes_scores_and_stays_and_keeps_the_aggregates(client_b):
    base = build_base(client_b, now=timezone.now())
    c1, c4 = base["c1"], base["c4"]
    t0 = timezone.now()
    champions = segment_create(
        client=client_b, name="Чемпионы", kind="rfm", definition={"names": ["Champions"]}
    )
    moscow = segment_create(
        client=client_b,
        name="Москва",
        kind="rule",
        definition={"all": [{"attribute": "city", "op": "eq", "value": "Москва"}]},
    )
    golden = segment_create(
        client=client_b,
        name="Золото",
        kind="rule",
        definition={"all": [{"attribute": "attributes.loyalty", "op": "eq", "value": "gold"}]},
    )
    # c1 leaves «Чемпионы» (a past stay), stays in «Москва» and «Золото» (current).
    CustomerScore.objects.for_client(client_b).filter(customer=c1).update(rfm_segment="Loyal")
    segment_refresh(segment=champions, now=t0 + dt.timedelta(hours=1))
    assert stays(client_b, c1) == [("Золото", True), ("Москва", True), ("Чемпионы", False)]
    sizes = dict(Segment.objects.for_client(client_b).values_list("name", "size"))
    c4_before = stays(client_b, c4)

    erased = customer_erase(customer=c1)

    assert not CustomerScore.objects.for_client(client_b).filter(customer=c1).exists()
    # The open stays wait for the next refresh (audience syncs count them as held back erased).
    assert stays(client_b, c1) == [("Золото", True), ("Москва", True)]
    assert dict(Segment.objects.for_client(client_b).values_list("name", "size")) == sizes
    assert CustomerScore.objects.for_client(client_b).filter(customer=c4).exists()

    t1 = t0 + dt.timedelta(days=1)
    result = segment_refresh(segment=moscow, now=t1)

    assert (result.size, result.entered, result.left) == (sizes["Москва"] - 1, 0, 1)
    assert stays(client_b, c1) == [("Золото", True)]  # deleted, not closed
    last = SegmentSizeSnapshot.objects.for_client(client_b).filter(segment=moscow).last()
    assert (last.at, last.size, last.left) == (t1, sizes["Москва"] - 1, 1)
    segment_refresh(segment=golden, now=t1)
    assert stays(client_b, erased) == []
    assert stays(client_b, c4) == c4_before
    # Nothing brings him back: an erased customer belongs to no segment at a later refresh.
    assert segment_refresh(segment=golden, now=t1 + dt.timedelta(days=1)).entered == 0
