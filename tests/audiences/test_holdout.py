"""An audience's holdout: the same people (or whole regions) left out of every upload by the
chains' hash rule, counted as held out, never in the file the platform receives; the geo split
only on the Enterprise tier; a running test's split fixed; the fields and the sample-ratio check
in the API."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agency.arms import holdout_fraction, is_held_out, sample_ratio_p_value
from audiences.hashing import EMAIL
from audiences.holdout import audience_holdout_check, held_out_flags, region_sql
from audiences.models import Audience, SyncRun
from audiences.services import AudienceError, audience_create, audience_update
from audiences.snapshots import snapshot_values
from campaigns import arms as chain_arms
from clients.ingest import ingest_records
from clients.models import Customer
from clients.services import client_create
from clients.tiers import TierLimitError
from consent.models import ConsentRecord
from segments.segmentation import segment_create
from tests.consent.conftest import publish_texts

from .conftest import FAST, build_world, grant, make_audience, sha256, yandex_destination

pytestmark = pytest.mark.django_db


def sync(audience):
    from audiences.sync import audience_sync_now

    return audience_sync_now(audience, source="test", http_options=FAST)


def held_ids(audience, customers) -> set[int]:
    return {
        c.pk
        for c in customers
        if holdout_fraction(audience.client_id, audience.pk, c.pk) * 100 < audience.holdout_percent
    }


# -------------------------------------------------------------------------------------------
# The hash rule, shared with the chains


def test_rule_is_the_chains_rule_and_fixed_across_processes_and_order():
    # A literal: blake2b of "1:2:3", not Python's per-process salted hash().
    assert holdout_fraction(1, 2, 3) == 0.16559366151577265
    ids = np.arange(1, 5001)
    mask = chain_arms.arms_of(7, 11, ids, 20)
    assert [chain_arms.arm_of(7, 11, int(i), 20) == chain_arms.HOLDOUT for i in ids] == list(mask)
    audience = Audience(client_id=7, pk=11, holdout_percent=20)
    flags = held_out_flags(audience, list(ids))
    assert list(flags) == list(mask)  # an audience and a chain with the same ids agree
    shuffled = np.random.default_rng(1).permutation(ids)
    again = held_out_flags(audience, list(shuffled))
    assert set(shuffled[again]) == set(ids[flags])  # order does not matter


def test_realised_share_is_the_planned_share():
    ids = list(range(1, 20_001))
    for percent in (10, 20, 50):
        flags = held_out_flags(Audience(client_id=3, pk=5, holdout_percent=percent), ids)
        assert abs(flags.mean() * 100 - percent) < 1.0
        assert sample_ratio_p_value(int(flags.sum()), len(ids) - int(flags.sum()), percent) > 0.001
    assert held_out_flags(Audience(client_id=3, pk=5, holdout_percent=0), ids).sum() == 0


# -------------------------------------------------------------------------------------------
# Syncs


def test_held_out_people_never_uploaded_and_the_same_on_every_snapshot(client_a, yandex_stub):
    world = build_world(client_a, 400)
    audience = make_audience(world, yandex_destination(client_a), holdout_percent=20)
    assert audience.holdout_started_at is not None
    eligible = world.expected()
    held = held_ids(audience, eligible)
    assert 40 < len(held) < 120

    run = sync(audience)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.held_out == len(held)
    # Counted as held out, not as consent or suppression.
    assert (run.members, run.held_back_consent, run.suppressed) == (400, 10, 5)
    assert run.exported == len(eligible) - len(held)
    segment_id = Audience.objects.for_client(client_a).get(pk=audience.pk).remote["segment_id"]
    uploaded = yandex_stub.segment_values(segment_id, "email")
    kept = [c for c in eligible if c.pk not in held]
    assert uploaded == {sha256(c.email) for c in kept}
    out = [c for c in eligible if c.pk in held]
    assert not uploaded & {sha256(c.email) for c in out}
    assert not yandex_stub.segment_values(segment_id, "phone") & {
        sha256(c.phone.lstrip("+")) for c in out
    }

    # A second snapshot (after a withdrawal) holds out the same people.
    grant(client_a, [kept[0]], action=ConsentRecord.Action.WITHDRAWN)
    yandex_stub.process_all()
    second = sync(audience)
    assert second.status == SyncRun.Status.SUCCEEDED, second.error
    assert second.snapshot_id != run.snapshot_id
    assert second.held_out == len(held)
    assert set(snapshot_values(second.snapshot_id, EMAIL)) == {sha256(c.email) for c in kept[1:]}

    check = audience_holdout_check(audience=audience)
    assert (check.held_out, check.treatment) == (len(held), len(eligible) - len(held) - 1)
    assert check.srm_p_value == pytest.approx(
        sample_ratio_p_value(check.held_out, check.treatment, 20)
    )


def test_without_a_holdout_nobody_is_held_out(client_a, yandex_stub):
    world = build_world(client_a, 150)
    audience = make_audience(world, yandex_destination(client_a))
    run = sync(audience)
    assert run.held_out == 0
    assert run.exported == 135
    assert audience_holdout_check(audience=audience).running is False


CITIES = ["Москва", "Санкт-Петербург", "Казань", "Самара", "Пермь", "Омск", "Томск", "Уфа"]


def regional_world(client, size=480):
    publish_texts(client)
    records = [
        {
            "external_id": f"r{i:05d}",
            "email": f"geo{i}@example.ru",
            "phone": f"+7926{i:07d}",
            # Spelling variants of one city are one region.
            "city": (f"  {CITIES[i % 8].upper()} " if i % 16 == 0 else CITIES[i % 8]),
            "first_name": "Гео",
        }
        for i in range(size)
    ]
    records.append({"external_id": "nocity", "email": "nocity@example.ru", "first_name": "Гео"})
    ingest_records(client=client, kind="customers", records=records)
    customers = list(Customer.objects.for_client(client))
    grant(client, customers)
    segment = segment_create(
        client=client,
        name="Гео",
        kind="rule",
        definition={"all": [{"attribute": "first_name", "op": "eq", "value": "Гео"}]},
    )
    return customers, segment


@pytest.fixture
def client_e(db):
    return client_create(name="Энтерпрайз", tier_code="enterprise")


def test_geo_split_holds_out_whole_regions(client_e, yandex_stub):
    customers, segment = regional_world(client_e)
    audience = audience_create(
        client=client_e,
        name="Гео-тест",
        segment=segment,
        destination=yandex_destination(client_e),
        holdout_percent=50,
        holdout_unit="region",
    )
    run = sync(audience)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    segment_id = Audience.objects.for_client(client_e).get(pk=audience.pk).remote["segment_id"]
    uploaded = yandex_stub.segment_values(segment_id, "email")
    by_region: dict[str, set[bool]] = {}
    for c in customers:
        region = c.city.strip().lower().replace("ё", "е")
        by_region.setdefault(region, set()).add(sha256(c.email) in uploaded)
    assert by_region.pop("") == {True}  # no city: not in the test, always uploaded
    assert all(len(seen) == 1 for seen in by_region.values()), by_region  # whole regions
    held_regions = {r for r, seen in by_region.items() if seen == {False}}
    # The regions the hash rule holds out (which ones depends on the ids the database gives).
    assert held_regions == {r for r in by_region if is_held_out(client_e.pk, audience.pk, r, 50)}
    assert run.held_out == sum(
        1 for c in customers if c.city.strip().lower().replace("ё", "е") in held_regions
    )
    # The SQL normalisation is the one the test used.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {region_sql('c')} FROM clients_customer c "  # noqa: S608
            "WHERE c.client_id = %s AND c.external_id = 'r00000'",
            [client_e.pk],
        )
        assert cursor.fetchone()[0] == "москва"
    # No sample-ratio check on regions of unequal size.
    assert audience_holdout_check(audience=audience).srm_p_value is None


def test_geo_split_refused_below_enterprise(client_a, client_b):
    for client in (client_a, client_b):
        world_segment = segment_create(
            client=client,
            name="Все",
            kind="rule",
            definition={"all": [{"attribute": "first_name", "op": "eq", "value": "x"}]},
        )
        destination = yandex_destination(client)
        with pytest.raises(TierLimitError) as refused:
            audience_create(
                client=client,
                name="Гео",
                segment=world_segment,
                destination=destination,
                holdout_percent=20,
                holdout_unit="region",
            )
        assert refused.value.code == "tier_feature_incrementality"
        assert "Enterprise" in refused.value.message
        assert not Audience.objects.for_client(client).exists()
        person = audience_create(
            client=client,
            name="Люди",
            segment=world_segment,
            destination=destination,
            holdout_percent=20,
        )
        audience_update(audience=person, holdout_percent=0)  # stop, then:
        with pytest.raises(TierLimitError):
            audience_update(audience=person, holdout_unit="region", holdout_percent=20)
        person.refresh_from_db()
        assert person.holdout_unit == "person"


def test_running_split_is_fixed_stop_then_start_anew(client_a):
    segment = segment_create(
        client=client_a,
        name="Все",
        kind="rule",
        definition={"all": [{"attribute": "first_name", "op": "eq", "value": "x"}]},
    )
    destination = yandex_destination(client_a)
    audience = audience_create(
        client=client_a, name="А", segment=segment, destination=destination, holdout_percent=20
    )
    started = audience.holdout_started_at
    with pytest.raises(AudienceError) as refused:
        audience_update(audience=audience, holdout_percent=30)
    assert refused.value.code == "holdout_running"
    assert refused.value.field == "holdout_percent"
    audience.refresh_from_db()
    assert (audience.holdout_percent, audience.holdout_started_at) == (20, started)
    audience_update(audience=audience, holdout_percent=0)
    assert audience.holdout_started_at is None
    audience_update(audience=audience, holdout_percent=30)
    assert audience.holdout_started_at > started
    audience_update(audience=audience, holdout_percent=0)
    with pytest.raises(AudienceError) as too_big:
        audience_update(audience=audience, holdout_percent=60)
    assert too_big.value.code == "invalid_holdout_percent"
    with pytest.raises(AudienceError) as lookalike:
        audience_create(
            client=client_a,
            name="Б",
            segment=segment,
            destination=destination,
            purpose="lookalike",
            holdout_percent=10,
        )
    assert lookalike.value.code == "invalid_holdout_purpose"


def test_api_fields_validation_and_tier(client_a, api_a):
    segment = segment_create(
        client=client_a,
        name="Все",
        kind="rule",
        definition={"all": [{"attribute": "first_name", "op": "eq", "value": "x"}]},
    )
    destination = yandex_destination(client_a)
    body = {
        "name": "А",
        "segment": segment.pk,
        "destination": destination.pk,
        "holdout_percent": 20,
    }
    created = api_a.post(
        "/api/v1/audiences/", data=json.dumps(body), content_type="application/json"
    )
    assert created.status_code == 201, created.content
    data = created.json()
    assert (data["holdout_percent"], data["holdout_unit"]) == (20, "person")
    assert data["holdout_started_at"]
    assert data["holdout_check"] == {
        "held_out": 0,
        "treatment": 0,
        "realised_percent": None,
        "srm_p_value": None,
        "srm_alert": False,
    }
    bad = api_a.post(
        "/api/v1/audiences/",
        data=json.dumps({**body, "name": "Б", "holdout_percent": 51}),
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert "holdout_percent" in json.dumps(bad.json())
    geo = api_a.post(
        "/api/v1/audiences/",
        data=json.dumps({**body, "name": "В", "holdout_unit": "region"}),
        content_type="application/json",
    )
    assert geo.status_code == 403
    assert geo.json()["code"] == "tier_feature_incrementality"
    change = api_a.patch(
        f"/api/v1/audiences/{data['id']}/",
        data=json.dumps({"holdout_percent": 30}),
        content_type="application/json",
    )
    assert change.status_code == 400
    assert change.json()["code"] == "holdout_running"
    assert Audience.objects.for_client(client_a).count() == 1


def test_admin_form_starts_refuses_geo_below_enterprise_and_shows_the_check(
    client, agency_admin, client_b
):
    from django.urls import reverse

    from segments.models import Segment

    client.force_login(agency_admin)
    segment = Segment.objects.create(client=client_b, name="Все b", kind="rule", definition={})
    destination = yandex_destination(client_b)
    form = {
        "client": client_b.pk,
        "name": "С тестом",
        "segment": segment.pk,
        "destination": destination.pk,
        "purpose": "retargeting",
        "identifiers": "email",
        "lookalike_value": 3,
        "sync_every_days": 7,
        "is_active": "on",
        "holdout_percent": 20,
        "holdout_unit": "person",
    }
    add = reverse("admin:audiences_audience_add") + f"?client={client_b.pk}"
    assert 'name="holdout_percent"' in client.get(add).content.decode()
    geo = client.post(add, {**form, "holdout_unit": "region"})
    assert geo.status_code == 200
    assert "Тесты инкрементальности доступны с тарифа" in geo.content.decode()
    assert not Audience.objects.for_client(client_b).exists()
    too_big = client.post(add, {**form, "holdout_percent": 70})
    assert too_big.status_code == 200
    assert not Audience.objects.for_client(client_b).exists()
    response = client.post(add, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    audience = Audience.objects.for_client(client_b).get(name="С тестом")
    assert audience.holdout_percent == 20
    assert audience.holdout_started_at is not None
    SyncRun.objects.create(
        client=client_b, audience=audience, status="succeeded", held_out=30, exported=170
    )
    change = reverse("admin:audiences_audience_change", args=[audience.pk])
    text = client.get(change).content.decode()
    assert "в контрольной группе 30, к выгрузке 170 (15.0 % при плане 20 %)" in text
    assert "проверка долей: p = 0.077" in text  # 30 of 200 against 20 %
    SyncRun.objects.create(
        client=client_b, audience=audience, status="succeeded", held_out=20, exported=180
    )
    text = client.get(change).content.decode()
    assert "доли не сходятся с планом (p = 0.0004)" in text  # 20 of 200: the split is broken
