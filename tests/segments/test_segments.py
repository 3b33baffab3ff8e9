"""Segments: tier limits from data, each kind's members on a hand-built base, refresh diffs and
their idempotence, suppression driven by the consent ledger, transitions, the admin."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agency.models import AuditLogEntry
from clients.models import Customer, Order, Tier
from consent.services import consent_record_append
from segments import rfm
from segments.models import (
    CustomerScore,
    ScoringRun,
    Segment,
    SegmentMembership,
    SegmentSizeSnapshot,
)
from segments.segmentation import (
    WARNING_LOOKALIKE_SMALL,
    WARNING_NO_SCORES,
    SegmentError,
    TierLimitError,
    TransitionUnavailable,
    segment_create,
    segment_members_query,
    segment_memberships_refresh,
    segment_movement,
    segment_refresh,
    segment_update,
    transition_matrix,
)
from tests.consent.conftest import publish_texts
from tests.segments.test_rules import build_base

pytestmark = pytest.mark.django_db


def ids(queryset) -> set[str]:
    return set(queryset.values_list("external_id", flat=True))


def current(segment) -> set[str]:
    return set(
        SegmentMembership.objects.for_client(segment.client_id)
        .filter(segment=segment, left_at__isnull=True)
        .values_list("customer__external_id", flat=True)
    )


def make(client, kind, definition, name=None, **kwargs):
    name = name or f"{kind} {definition}"
    return segment_create(client=client, name=name, kind=kind, definition=definition, **kwargs)


@pytest.fixture
def base_b(client_b):
    """The hand-built base of test_rules on the Advanced CVM client, windows relative to now."""
    return build_base(client_b, now=timezone.now())


# --------------------------------------------------------------------------------------------
# Tier limits (Foundation: 5 segments, no predictive; Advanced CVM: 25, predictive)


def test_foundation_refuses_the_sixth_segment_naming_the_tier(client_a):
    for i in range(5):
        make(client_a, "rfm", {"names": [rfm.SEGMENTS[i]]})
    with pytest.raises(TierLimitError) as info:
        make(client_a, "lifecycle", {"stages": ["Onboarding"]})
    assert info.value.code == "tier_limit_segments"
    assert "Foundation" in info.value.message
    assert "не больше 5" in info.value.message
    assert "Advanced CVM" in info.value.message
    assert info.value.extra == {"tier": "foundation", "limit": 5, "required_tier": "advanced"}
    assert Segment.objects.for_client(client_a).count() == 5


def test_inactive_segments_are_outside_the_limit(client_a):
    segments = [make(client_a, "rfm", {"names": [rfm.SEGMENTS[i]]}) for i in range(5)]
    spare = make(client_a, "rfm", {"names": ["Lost"]}, is_active=False)
    with pytest.raises(TierLimitError):
        segment_update(segment=spare, is_active=True)
    spare.refresh_from_db()
    assert spare.is_active is False
    segment_update(segment=segments[0], is_active=False)
    segment_update(segment=spare, is_active=True)
    # Editing an active segment does not count it twice.
    segment_update(segment=spare, name="Потерянные", definition={"names": ["Lost", "Hibernating"]})


def test_the_limit_is_data(client_a):
    Tier.objects.filter(code="foundation").update(max_segments=1, name="Старт")
    client_a.refresh_from_db()
    make(client_a, "rfm", {"names": ["Lost"]})
    with pytest.raises(TierLimitError) as info:
        make(client_a, "rfm", {"names": ["New"]})
    assert "На тарифе Старт не больше 1" in info.value.message


def test_predictive_refused_on_foundation_allowed_on_advanced(client_a, client_b):
    with pytest.raises(TierLimitError) as info:
        make(client_a, "predictive", {"churn_at_least": 0.7})
    assert info.value.code == "tier_feature_predictive"
    assert "Предиктивные сегменты доступны с тарифа Advanced CVM" in info.value.message
    assert info.value.extra["required_tier"] == "advanced"
    with pytest.raises(TierLimitError) as info:
        make(client_a, "lookalike_seed", {"top_percent": 20})
    assert '"by": "monetary"' in info.value.message
    with pytest.raises(TierLimitError) as info:
        make(client_a, "rule", {"all": [{"score": "predicted_clv", "op": "gt", "value": 1}]})
    assert "predicted_clv" in info.value.message
    assert Segment.objects.for_client(client_a).count() == 0
    # Lookalike on the best customers by spend, and rules on RFM scores, are Foundation's.
    make(client_a, "lookalike_seed", {"top_percent": 20, "by": "monetary"})
    make(client_a, "rule", {"all": [{"score": "rfm_segment", "op": "eq", "value": "Lost"}]})
    assert make(client_b, "predictive", {"churn_at_least": 0.7}).pk
    assert make(client_b, "lookalike_seed", {}).definition == {
        "top_percent": 20,
        "by": "predicted_clv",
    }


@pytest.mark.parametrize(
    ("kind", "definition", "path"),
    [
        ("rfm", {"names": ["Champions", "Kings"]}, "names[1]"),
        ("rfm", {"names": []}, "names"),
        ("rfm", {"names": ["Lost"], "extra": 1}, "extra"),
        ("lifecycle", {"stages": ["Retention", "Sleeping"]}, "stages[1]"),
        ("predictive", {"churn_at_least": 0.7, "clv_decile": 3}, ""),
        ("predictive", {"churn_at_least": 1.7}, "churn_at_least"),
        ("predictive", {"clv_decile": 11}, "clv_decile"),
        ("predictive", {"clv_top_percent": 0}, "clv_top_percent"),
        ("lookalike_seed", {"top_percent": 20, "by": "age"}, "by"),
        ("suppression", {"type": "recent_purchasers"}, "days"),
        ("suppression", {"type": "opted_out", "purpose": "telepathy"}, "purpose"),
        ("suppression", {"type": "everyone"}, "type"),
        ("rule", {"all": [{"orders": {"count": 2}}]}, "all[0].orders.count"),
        ("rule", [], ""),
    ],
)
def test_invalid_definitions_name_the_key(client_b, kind, definition, path):
    with pytest.raises(SegmentError) as info:
        make(client_b, kind, definition)
    assert info.value.code == "invalid_definition"
    assert [e.path for e in info.value.errors] == [path]
    assert Segment.objects.for_client(client_b).count() == 0


def test_names_are_unique_per_client(client_a, client_b):
    make(client_a, "rfm", {"names": ["Lost"]}, name="Потерянные")
    make(client_b, "rfm", {"names": ["Lost"]}, name="Потерянные")
    with pytest.raises(SegmentError) as info:
        make(client_a, "rfm", {"names": ["New"]}, name=" Потерянные ")
    assert info.value.code == "segment_name_taken"
    with pytest.raises(SegmentError) as info:
        make(client_a, "cluster", {}, name="x")
    assert info.value.code == "invalid_kind"


def test_create_and_update_are_audited(client_a, agency_admin):
    segment = make(client_a, "rfm", {"names": ["Lost"]}, name="A", actor=agency_admin)
    assert segment.created_by == agency_admin
    segment_update(segment=segment, name="B", actor=agency_admin)
    actions = list(
        AuditLogEntry.objects.filter(client=client_a)
        .filter(action__startswith="segment_")
        .values_list("action", flat=True)
        .order_by("id")
    )
    assert actions == ["segment_created", "segment_updated"]


# --------------------------------------------------------------------------------------------
# Members of each kind (hand-built base: see tests/segments/test_rules.build_base)


@pytest.mark.parametrize(
    ("kind", "definition", "expected"),
    [
        ("rfm", {"names": ["Champions", "New"]}, {"c1", "c4"}),
        ("lifecycle", {"stages": ["Win-back"]}, {"c2"}),
        ("predictive", {"churn_at_least": 0.3}, {"c2", "c4"}),
        # population with a positive CLV: c1 9000 > c2 500 > c4 300
        ("predictive", {"clv_top_percent": 10}, {"c1"}),  # ceil(0.3) = 1
        ("predictive", {"clv_top_percent": 34}, {"c1", "c2"}),  # ceil(1.02) = 2
        ("predictive", {"clv_decile": 1}, {"c4"}),  # NTILE(10) of 3 rows: 1, 2, 3
        ("predictive", {"clv_decile": 3}, {"c1"}),
        ("predictive", {"clv_decile": 10}, set()),
        ("lookalike_seed", {"top_percent": 50, "by": "monetary"}, {"c1", "c2"}),
        ("lookalike_seed", {"top_percent": 100}, {"c1", "c2", "c4"}),
        (
            "rule",
            {"all": [{"attribute": "city", "op": "eq", "value": "Москва"}, {"orders": {}}]},
            {"c1"},
        ),
        ("suppression", {"type": "recent_purchasers", "days": 30}, {"c1", "c4"}),
        ("suppression", {"type": "recent_purchasers", "days": 3}, {"c4"}),
        ("suppression", {"type": "existing_customers"}, {"c1", "c2", "c4"}),
    ],
)
def test_members_of_each_kind(client_b, base_b, kind, definition, expected):
    segment = make(client_b, kind, definition)
    assert ids(segment_members_query(segment)) == expected
    assert current(segment) == expected
    assert segment.size == len(expected)


def test_erased_customers_are_in_no_segment(client_b, base_b):
    Customer.objects.for_client(client_b).filter(external_id="c1").update(erased_at=timezone.now())
    for kind, definition in [
        ("rfm", {"names": ["Champions"]}),
        ("predictive", {"clv_top_percent": 10}),
        ("lookalike_seed", {"top_percent": 100}),
        ("rule", {"attribute": "city", "op": "eq", "value": "Москва"}),
        ("suppression", {"type": "existing_customers"}),
        ("suppression", {"type": "opted_out", "purpose": "ad_audiences"}),
    ]:
        segment = make(client_b, kind, definition)
        assert "c1" not in current(segment), kind
    # The top 10 % are ranked among the customers that remain: c2 is the best of them.
    assert current(Segment.objects.for_client(client_b).get(kind="predictive")) == {"c2"}


def test_deciles_and_top_share_follow_ntile_and_the_tie_rule(client_b):
    """25 customers, CLVs with ties: deciles equal rfm.ntile over (value, id) worst first, the
    top N % are the last ceil(N × 25 / 100) of that order."""
    now = timezone.now()
    values = [100, 100, 100, 250, 250, 300, 300, 300, 300, 420] * 2 + [500, 500, 650, 700, 0]
    customers = [
        Customer.objects.create(client=client_b, external_id=f"k{i:02}") for i in range(25)
    ]
    for customer, value in zip(customers, values, strict=True):
        CustomerScore.objects.create(
            customer=customer, client=client_b, computed_at=now, predicted_clv=Decimal(value)
        )
    population = sorted(
        (Decimal(v), c.pk, c.external_id) for c, v in zip(customers, values, strict=True) if v > 0
    )
    order = list(range(len(population)))
    deciles = rfm.ntile(np.array(order), 10)
    for d in range(1, 11):
        segment = make(client_b, "predictive", {"clv_decile": d}, name=f"d{d}")
        expected = {population[i][2] for i in order if deciles[i] == d}
        assert current(segment) == expected, d
    for percent, k in [(10, 3), (20, 5), (50, 12), (100, 24)]:
        segment = make(client_b, "predictive", {"clv_top_percent": percent}, name=f"t{percent}")
        assert current(segment) == {row[2] for row in population[-k:]}, percent


def test_opted_out_follows_the_consent_ledger(client_b, base_b):
    """Suppression of people without a current consent for ad audiences: a withdrawal puts the
    person in at the next refresh, a new grant takes them out."""
    publish_texts(client_b)
    c = {x.external_id: x for x in Customer.objects.for_client(client_b)}

    def record(external_id, action):
        consent_record_append(
            client=client_b,
            customer=c[external_id],
            purpose_code="ad_audiences",
            action=action,
            source="web_form",
        )

    record("c1", "granted")
    record("c2", "granted")
    segment = make(client_b, "suppression", {"type": "opted_out", "purpose": "ad_audiences"})
    assert current(segment) == {"c3", "c4"}  # never consented
    record("c2", "withdrawn")
    assert current(segment) == {"c3", "c4"}  # memberships change at refresh, not before
    result = segment_refresh(segment=segment)
    assert (result.entered, result.left) == (1, 0)
    assert current(segment) == {"c2", "c3", "c4"}
    record("c3", "granted")
    segment_refresh(segment=segment)
    assert current(segment) == {"c2", "c4"}


# --------------------------------------------------------------------------------------------
# Refresh: diffs, snapshots, idempotence


def _set_rfm(client, **segments):
    for external_id, name in segments.items():
        CustomerScore.objects.for_client(client).filter(customer__external_id=external_id).update(
            rfm_segment=name
        )


def test_refresh_diffs_memberships_and_snapshots(client_b, base_b):
    t0 = timezone.now()
    segment = make(client_b, "rfm", {"names": ["Champions", "New"]}, refresh=False)
    first = segment_refresh(segment=segment, now=t0)
    assert (first.size, first.entered, first.left) == (2, 2, 0)

    _set_rfm(client_b, c1="Loyal", c2="Champions")
    t1 = t0 + dt.timedelta(days=1)
    second = segment_refresh(segment=segment, now=t1)
    assert (second.size, second.entered, second.left) == (2, 1, 1)
    assert current(segment) == {"c2", "c4"}
    c1_stay = SegmentMembership.objects.for_client(client_b).get(
        segment=segment, customer__external_id="c1"
    )
    assert (c1_stay.entered_at, c1_stay.left_at) == (t0, t1)
    assert (
        SegmentMembership.objects.for_client(client_b)
        .get(segment=segment, customer__external_id="c4")
        .entered_at
        == t0
    )  # stayers are not touched

    snapshots = list(
        SegmentSizeSnapshot.objects.for_client(client_b)
        .filter(segment=segment)
        .values_list("at", "size", "entered", "left")
    )
    assert snapshots == [(t0, 2, 2, 0), (t1, 2, 1, 1)]
    segment.refresh_from_db()
    assert (segment.size, segment.refreshed_at) == (2, t1)

    # Back in: a new stay, the old one stays closed.
    _set_rfm(client_b, c1="Champions")
    t2 = t1 + dt.timedelta(days=1)
    assert segment_refresh(segment=segment, now=t2).entered == 1
    stays = SegmentMembership.objects.for_client(client_b).filter(
        segment=segment, customer__external_id="c1"
    )
    assert sorted(stays.values_list("entered_at", "left_at")) == [(t0, t1), (t2, None)]


def test_second_refresh_without_change_creates_nothing(client_b, base_b):
    segment = make(client_b, "rfm", {"names": ["Champions", "New"]})
    memberships = SegmentMembership.objects.for_client(client_b).filter(segment=segment)
    snapshots = SegmentSizeSnapshot.objects.for_client(client_b).filter(segment=segment)
    before = (list(memberships.values_list("pk", "entered_at", "left_at")), snapshots.count())
    later = timezone.now() + dt.timedelta(hours=1)
    result = segment_refresh(segment=segment, now=later)
    assert (result.entered, result.left, result.size) == (0, 0, 2)
    assert (list(memberships.values_list("pk", "entered_at", "left_at")), snapshots.count()) == (
        before
    )
    segment.refresh_from_db()
    assert segment.refreshed_at == later


def test_an_empty_segment_gets_its_first_snapshot_once(client_b):
    segment = make(client_b, "rfm", {"names": ["Lost"]})
    segment_refresh(segment=segment)
    assert list(
        SegmentSizeSnapshot.objects.for_client(client_b).values_list("size", "entered", "left")
    ) == [(0, 0, 0)]


def test_refresh_is_set_based(client_b):
    """The same number of statements for 3 and for 60 members: no per-member Python."""
    now = timezone.now()

    def statements(n: int, name: str) -> int:
        for i in range(n):
            customer = Customer.objects.create(client=client_b, external_id=f"{name}{i}")
            CustomerScore.objects.create(
                customer=customer, client=client_b, computed_at=now, rfm_segment=name
            )
        segment = make(client_b, "rfm", {"names": [name]}, name=name, refresh=False)
        with CaptureQueriesContext(connection) as queries:
            result = segment_refresh(segment=segment)
        assert result.entered == n
        CustomerScore.objects.for_client(client_b).filter(rfm_segment=name).update(
            rfm_segment="Lost"
        )
        with CaptureQueriesContext(connection) as leaving:
            assert segment_refresh(segment=segment).left == n
        return len(queries) + len(leaving)

    assert statements(3, "New") == statements(60, "Loyal")


def test_memberships_refresh_covers_active_segments_and_isolates_bad_ones(client_b, base_b):
    run = ScoringRun.objects.create(client=client_b, status=ScoringRun.Status.SUCCEEDED)
    good = make(client_b, "rfm", {"names": ["Champions"]}, refresh=False)
    idle = make(client_b, "rfm", {"names": ["New"]}, refresh=False, is_active=False)
    broken = make(client_b, "lifecycle", {"stages": ["Retention"]}, refresh=False)
    # A definition that no longer validates (stored before a rename, say).
    Segment.objects.for_client(client_b).filter(pk=broken.pk).update(
        definition={"stages": ["Loyalty"]}
    )
    results = {r.segment_id: r for r in segment_memberships_refresh(client=client_b, run=run)}
    assert set(results) == {good.pk, broken.pk}
    assert results[good.pk].entered == 1
    assert results[broken.pk].skipped.startswith("не обновлён")
    broken.refresh_from_db()
    assert "stages[0]" in broken.warnings[0]
    assert current(idle) == set()
    assert SegmentSizeSnapshot.objects.for_client(client_b).get(segment=good).run == run


def test_after_a_downgrade_predictive_segments_are_left_as_they_are(client_b, base_b):
    segment = make(client_b, "predictive", {"churn_at_least": 0.5})
    assert current(segment) == {"c2"}
    client_b.tier = Tier.objects.get(code="foundation")
    client_b.save(update_fields=["tier"])
    CustomerScore.objects.for_client(client_b).update(churn_probability=0.9)
    result = segment_refresh(segment=segment)
    assert "Foundation" in result.skipped
    assert current(segment) == {"c2"}
    segment.refresh_from_db()
    assert segment.warnings == [result.skipped]


def test_warnings(client_b, base_b, client_a):
    seed = make(client_b, "lookalike_seed", {"top_percent": 100})
    assert seed.size == 3
    assert seed.warnings == [WARNING_LOOKALIKE_SMALL]
    assert "1000" in WARNING_LOOKALIKE_SMALL
    unscored = make(client_a, "rfm", {"names": ["Lost"]})
    assert unscored.warnings == [WARNING_NO_SCORES]
    suppression = make(client_a, "suppression", {"type": "existing_customers"})
    assert suppression.warnings == []


def test_update_recomputes_members(client_b, base_b):
    segment = make(client_b, "rfm", {"names": ["Champions"]})
    assert current(segment) == {"c1"}
    segment = segment_update(segment=segment, kind="lifecycle", definition={"stages": ["Win-back"]})
    assert current(segment) == {"c2"}
    assert segment.size == 1
    with pytest.raises(SegmentError) as info:
        segment_update(segment=segment, kind="predictive")  # the lifecycle definition does not fit
    assert info.value.code == "invalid_definition"


# --------------------------------------------------------------------------------------------
# Movement


def _run(client, finished, transitions=None, status=ScoringRun.Status.SUCCEEDED):
    return ScoringRun.objects.create(
        client=client, status=status, finished_at=finished, rfm_transitions=transitions or {}
    )


def test_transition_matrix_between_consecutive_runs(client_b, client_a):
    t = timezone.now()
    first = _run(client_b, t - dt.timedelta(days=2))
    _run(client_b, t - dt.timedelta(days=1, hours=12), status=ScoringRun.Status.FAILED)
    second = _run(client_b, t - dt.timedelta(days=1), {"Champions": {"Loyal": 3, "Champions": 7}})
    third = _run(client_b, t, {"Loyal": {"At Risk": 2}})
    matrix = transition_matrix(first, second)
    assert list(matrix) == list(rfm.SEGMENTS)
    assert list(matrix["Lost"]) == list(rfm.SEGMENTS)
    assert matrix["Champions"]["Loyal"] == 3
    assert matrix["Champions"]["Champions"] == 7
    assert sum(sum(row.values()) for row in matrix.values()) == 10
    assert transition_matrix(second, third)["Loyal"]["At Risk"] == 2
    with pytest.raises(TransitionUnavailable) as info:
        transition_matrix(first, third)
    assert info.value.code == "transition_not_consecutive"
    assert info.value.extra == {"previous_run": second.pk}
    assert "соседними" in info.value.message
    with pytest.raises(SegmentError):
        transition_matrix(_run(client_a, t), third)


def test_movement_between_any_two_moments_from_memberships(client_b, base_b):
    champions = make(client_b, "rfm", {"names": ["Champions"]}, name="Champions", refresh=False)
    at_risk = make(client_b, "rfm", {"names": ["At Risk"]}, name="At Risk", refresh=False)
    t0 = timezone.now()
    segment_memberships_refresh(client=client_b, now=t0)  # c1 Champions, c2 At Risk
    _set_rfm(client_b, c1="At Risk", c2="Champions", c4="Champions")
    t1 = t0 + dt.timedelta(days=30)
    segment_memberships_refresh(client=client_b, now=t1)
    matrix = segment_movement(
        client=client_b,
        segments=[champions, at_risk],
        at_a=t0 + dt.timedelta(days=1),
        at_b=t1 + dt.timedelta(days=1),
    )
    assert matrix == {
        "Champions": {"Champions": 0, "At Risk": 1},
        "At Risk": {"Champions": 1, "At Risk": 0},
    }
    same = segment_movement(client=client_b, segments=[champions, at_risk], at_a=t0, at_b=t0)
    assert same["Champions"]["Champions"] == 1


# --------------------------------------------------------------------------------------------
# Admin


@pytest.fixture
def staff(client, agency_admin):
    client.force_login(agency_admin)
    return client


def test_admin_list_shows_size_trend_and_warnings(staff, client_b, base_b):
    segment = make(client_b, "rfm", {"names": ["Champions"]})
    _set_rfm(client_b, c2="Champions", c4="Champions")
    segment_refresh(segment=segment)
    make(client_b, "lookalike_seed", {"top_percent": 100}, name="seed")
    page = staff.get(reverse("admin:segments_segment_changelist")).content.decode()
    assert "▲ +2" in page
    assert str(WARNING_LOOKALIKE_SMALL) in page
    _set_rfm(client_b, c2="Lost")
    segment_refresh(segment=segment)
    page = staff.get(reverse("admin:segments_segment_changelist")).content.decode()
    assert "▼ −1" in page


def test_admin_change_page_shows_the_rule_in_russian_and_the_size_chart(staff, client_b, base_b):
    rule = {
        "all": [
            {"attribute": "city", "op": "eq", "value": "Москва"},
            {"orders": {"count": {"gte": 1}, "within_days": 90}},
        ]
    }
    segment = make(client_b, "rule", rule, name="Москва")
    page = staff.get(reverse("admin:segments_segment_change", args=[segment.pk])).content.decode()
    assert "Все условия:" in page
    assert "город = «Москва»" in page
    assert "&quot;all&quot;: [\n" in page  # the JSON, pretty-printed
    assert 'id="segment-size-chart"' in page
    assert "vendor/chartjs/chart.umd.min.js" in page
    assert 'id="segment-size-data"' in page
    assert "members.csv" in page


def test_admin_form_names_the_bad_node_and_the_tier(staff, client_a, client_b):
    url = reverse("admin:segments_segment_add")
    bad_rule = '{"all": [{"city": 1}, {"orders": {"count": 2}}]}'
    response = staff.post(
        url,
        {"client": client_b.pk, "name": "x", "kind": "rule", "definition": bad_rule},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "all[0]: неизвестное условие" in page
    assert "all[1].orders.count: условие сравнения" in page
    response = staff.post(
        url, {"client": client_b.pk, "name": "x", "kind": "rule", "definition": '{"all": [}'}
    )
    assert "Это не JSON" in response.content.decode()
    for definition, said in [
        ('{"all": [{"attribute": "city", "op": "eq", "value": "\\u0000"}]}', "NUL"),
        ('{"all": ' + "[" * 1500 + "]" * 1500 + "}", "вложенность глубже"),
    ]:
        response = staff.post(
            url, {"client": client_b.pk, "name": "x", "kind": "rule", "definition": definition}
        )
        assert response.status_code == 200
        assert said in response.content.decode()
    response = staff.post(
        url,
        {"client": client_a.pk, "name": "x", "kind": "predictive",
         "definition": '{"churn_at_least": 0.5}', "is_active": "on"},
    )  # fmt: skip
    assert "доступны с тарифа Advanced CVM" in response.content.decode()
    assert not Segment.objects.unscoped().exists()


def test_admin_add_and_change_go_through_the_services(staff, client_b, base_b, agency_admin):
    url = reverse("admin:segments_segment_add")
    response = staff.post(
        url,
        {"client": client_b.pk, "name": "Лучшие", "kind": "rfm",
         "definition": '{"names": ["Champions"]}', "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    segment = Segment.objects.for_client(client_b).get()
    assert (segment.size, segment.created_by) == (1, agency_admin)
    assert current(segment) == {"c1"}
    response = staff.post(
        reverse("admin:segments_segment_change", args=[segment.pk]),
        {"name": "Лучшие", "kind": "rfm", "definition": '{"names": ["Champions", "New"]}',
         "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    assert current(segment) == {"c1", "c4"}
    assert AuditLogEntry.objects.filter(action="segment_updated", client=client_b).exists()
    # The services' entries only: the admin adds no generic second one.
    assert list(
        AuditLogEntry.objects.filter(client=client_b, object_id=str(segment.pk))
        .order_by("pk")
        .values_list("action", flat=True)
    ) == ["segment_created", "segment_updated"]


def test_admin_refresh_action(staff, client_b, base_b):
    segment = make(client_b, "rfm", {"names": ["Champions"]})
    _set_rfm(client_b, c2="Champions")
    response = staff.post(
        reverse("admin:segments_segment_changelist"),
        {"action": "refresh_now", "_selected_action": [segment.pk]},
        follow=True,
    )
    assert "Обновлён 1 сегмент; вошли 1, вышли 0." in response.content.decode()
    assert current(segment) == {"c1", "c2"}


def test_admin_members_csv_is_streamed_scoped_and_audited(
    client, staff, client_a, client_b, base_b, account_manager
):
    segment = make(client_b, "rfm", {"names": ["Champions", "New"]})
    url = reverse("admin:segments_segment_members_csv", args=[segment.pk])
    response = staff.get(url)
    assert response.status_code == 200
    assert response.streaming
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["external_id"] for r in rows] == ["c1", "c4"]
    assert rows[0]["email"] == "c1@shop.ru"
    assert rows[0]["rfm_segment"] == "Champions"
    assert rows[0]["predicted_clv"] == "9000.00"
    assert AuditLogEntry.objects.filter(action="segment_members_exported", client=client_b).exists()
    # An account manager of client A only: client B's segment does not exist for them.
    client.force_login(account_manager)
    assert client.get(url).status_code == 404
    assert client.get(reverse("admin:segments_segment_change", args=[segment.pk])).status_code in (
        302,
        404,
    )


def test_admin_members_csv_neutralises_formulas_and_has_a_bom(staff, client_b, base_b):
    formula = '=HYPERLINK("http://x","click")'
    Customer.objects.for_client(client_b).filter(external_id="c1").update(
        external_id=formula, phone="+79161234567"
    )
    segment = make(client_b, "rfm", {"names": ["Champions", "New"]})
    response = staff.get(reverse("admin:segments_segment_members_csv", args=[segment.pk]))
    data = b"".join(response.streaming_content)
    assert data.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    first = next(r for r in rows if r["email"] == "c1@shop.ru")
    assert first["external_id"] == "'" + formula
    assert first["phone"] == "'+79161234567"  # text starting with + is text, not a formula
    assert first["predicted_clv"] == "9000.00"  # a number stays a number


def test_admin_memberships_are_read_only(staff, client_b, base_b):
    segment = make(client_b, "rfm", {"names": ["Champions"]})
    url = reverse("admin:segments_segmentmembership_changelist")
    page = staff.get(url, {"segment": segment.pk, "state": "current"}).content.decode()
    assert "c1@shop.ru" in page
    assert staff.get(url, {"state": "left"}).content.decode().count("c1@shop.ru") == 0
    membership = SegmentMembership.objects.for_client(client_b).get()
    change = staff.get(reverse("admin:segments_segmentmembership_change", args=[membership.pk]))
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert staff.get(reverse("admin:segments_segmentmembership_add")).status_code == 403
    assert "c1@shop.ru" in staff.get(url, {"q": " C1@Shop.ru "}).content.decode()
    assert "c1@shop.ru" not in staff.get(url, {"q": "c4"}).content.decode()


def test_orders_of_other_statuses_do_not_make_customers(client_b, base_b):
    """Only paid orders make an existing customer (c3 gets a cancelled one)."""
    c3 = Customer.objects.for_client(client_b).get(external_id="c3")
    Order.objects.create(
        client=client_b,
        customer=c3,
        external_id="cancelled",
        placed_at=timezone.now(),
        amount=10,
        status="cancelled",
    )
    segment = make(client_b, "suppression", {"type": "existing_customers"})
    assert "c3" not in current(segment)
