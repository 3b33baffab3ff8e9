"""Audience API: destinations with write-only credentials, audiences with ids looked up in the
request's client, "sync now" (one run, queued after commit), sync runs, value-based bid
modifiers (tier, exact modifiers, CSV, Direct body), and another client's key getting 404."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver
from django.utils import timezone

from audiences import api as audiences_api
from audiences.bidding import CSV_COLUMNS
from audiences.models import Audience, Destination, SyncRun
from audiences.services import audience_create, destination_create
from clients.models import Customer
from clients.services import api_key_create
from consent.models import DataRecipient
from segments.models import CustomerScore, Segment, SegmentMembership

pytestmark = pytest.mark.django_db

YANDEX_TOKEN = "y0_AgAAAAsecret-yandex-token-0123456789"
VK_SECRET = "vk-client-secret-abcdef-9876543210"


def post(api, url, body=None):
    return api.post(url, data=json.dumps(body or {}), content_type="application/json")


def patch(api, url, body):
    return api.patch(url, data=json.dumps(body), content_type="application/json")


def make_segment(client, name: str, kind: str = "rule") -> Segment:
    return Segment.objects.create(client=client, name=name, kind=kind, definition={})


@pytest.fixture
def yandex_b(client_b):
    return destination_create(
        client=client_b,
        name="Яндекс",
        platform="yandex_audiences",
        credentials={"token": YANDEX_TOKEN},
    )


@pytest.fixture
def audience_b(client_b, yandex_b):
    return audience_create(
        client=client_b,
        name="Лучшие",
        segment=make_segment(client_b, "Лучшие"),
        destination=yandex_b,
    )


# --------------------------------------------------------------------------------------------
# Destinations


def test_destinations_create_list_update_never_return_credentials(api_b, client_b):
    created = post(
        api_b,
        "/api/v1/destinations/",
        {"name": "Яндекс", "platform": "yandex_audiences", "credentials": {"token": YANDEX_TOKEN}},
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert set(body) == {
        "id",
        "name",
        "platform",
        "hashing",
        "country",
        "is_active",
        "created_at",
        "has_token",
        "token_expires_at",
    }
    assert (body["hashing"], body["country"], body["has_token"]) == ("sha256", "RU", True)
    vk = post(
        api_b,
        "/api/v1/destinations/",
        {
            "name": "VK",
            "platform": "vk_ads",
            "credentials": {"client_id": "42", "client_secret": VK_SECRET},
            "is_active": False,
        },
    )
    assert vk.status_code == 201, vk.json()
    assert (vk.json()["hashing"], vk.json()["has_token"], vk.json()["is_active"]) == (
        "md5",
        False,
        False,
    )
    url = f"/api/v1/destinations/{body['id']}/"
    new_token = "y0_AgAAAArotated-token-zzz"
    updated = patch(api_b, url, {"name": "Яндекс 2", "credentials": {"token": new_token}})
    assert updated.status_code == 200, updated.json()
    assert updated.json()["name"] == "Яндекс 2"
    destination = Destination.objects.for_client(client_b).get(pk=body["id"])
    assert new_token not in destination.credentials_encrypted  # stored encrypted
    from audiences.services import destination_credentials

    assert destination_credentials(destination) == {"token": new_token}
    # Blank-free PATCH keeps the stored credentials.
    assert patch(api_b, url, {"is_active": False}).status_code == 200
    assert destination_credentials(Destination.objects.for_client(client_b).get(pk=body["id"])) == {
        "token": new_token
    }

    responses = [
        created,
        vk,
        updated,
        api_b.get("/api/v1/destinations/"),
        api_b.get(url),
        api_b.get("/api/v1/destinations/?format=api"),
        api_b.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"),
    ]
    for response in responses:
        text = response.content.decode()
        for secret in (YANDEX_TOKEN, VK_SECRET, new_token, "credentials_encrypted"):
            assert secret not in text, (response.request["PATH_INFO"], secret)
    listed = api_b.get("/api/v1/destinations/").json()["results"]
    assert [d["name"] for d in listed] == ["Яндекс 2", "VK"]
    assert "credentials" not in listed[0]


def test_destination_rules_are_json_errors(api_b, client_b):
    md5_yandex = post(
        api_b,
        "/api/v1/destinations/",
        {
            "name": "Я",
            "platform": "yandex_audiences",
            "hashing": "md5",
            "credentials": {"token": YANDEX_TOKEN},
        },
    )
    assert md5_yandex.status_code == 400
    body = md5_yandex.json()
    assert (body["code"], body["field"]) == ("invalid_hashing", "hashing")
    assert "SHA-256" in body["message"] or "sha256" in body["message"]
    missing = post(
        api_b,
        "/api/v1/destinations/",
        {"name": "VK", "platform": "vk_ads", "credentials": {"client_id": "42"}},
    )
    assert missing.status_code == 400
    assert (missing.json()["code"], missing.json()["field"]) == (
        "invalid_credentials",
        "credentials",
    )
    not_object = post(
        api_b,
        "/api/v1/destinations/",
        {"name": "VK", "platform": "vk_ads", "credentials": "secret-string-here"},
    )
    assert not_object.status_code == 400
    assert not_object.json()["code"] == "invalid"
    assert "secret-string-here" not in not_object.content.decode()
    assert Destination.objects.for_client(client_b).count() == 0
    assert DataRecipient.objects.for_client(client_b).count() == 0


def test_destination_update_rules(api_b, client_b, yandex_b):
    url = f"/api/v1/destinations/{yandex_b.pk}/"
    response = patch(api_b, url, {"hashing": "plain"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_hashing")
    response = patch(api_b, url, {"platform": "vk_ads"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_field")
    assert response.json()["field"] == "platform"
    yandex_b.refresh_from_db()
    assert (yandex_b.hashing, yandex_b.platform) == ("sha256", "yandex_audiences")


# --------------------------------------------------------------------------------------------
# Audiences


def test_audience_create_list_retrieve_update(api_b, client_b, yandex_b):
    segment = make_segment(client_b, "Лучшие")
    suppression = make_segment(client_b, "Недавние покупатели", kind="suppression")
    created = post(
        api_b,
        "/api/v1/audiences/",
        {
            "name": "Лучшие в Яндекс",
            "segment": segment.pk,
            "destination": yandex_b.pk,
            "suppression_segments": [suppression.pk],
            "sync_every_days": 14,
            "direct_retargeting_condition_id": 777,
        },
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["segment"] == segment.pk
    assert body["destination"] == yandex_b.pk
    assert body["suppression_segments"] == [suppression.pk]
    assert (body["purpose"], body["identifiers"], body["state"]) == (
        "retargeting",
        "email_phone",
        "new",
    )
    assert body["direct_retargeting_condition_id"] == 777
    assert body["last_run"] is None
    assert body["next_sync_at"] is not None
    audience = Audience.objects.for_client(client_b).get()
    assert audience.periodic_task.interval.every == 14

    url = f"/api/v1/audiences/{body['id']}/"
    run = SyncRun.objects.create(client=client_b, audience=audience, status="succeeded")
    run.exported = 12
    run.save()
    listed = api_b.get("/api/v1/audiences/").json()["results"]
    assert [a["name"] for a in listed] == ["Лучшие в Яндекс"]
    assert listed[0]["last_run"]["id"] == run.pk
    assert listed[0]["last_run"]["status"] == "succeeded"
    assert listed[0]["last_run"]["exported"] == 12
    assert api_b.get(url).json()["last_run"]["status_url"] == f"/api/v1/sync-runs/{run.pk}/"

    updated = patch(api_b, url, {"sync_every_days": 3, "is_active": False})
    assert updated.status_code == 200, updated.json()
    assert (updated.json()["sync_every_days"], updated.json()["is_active"]) == (3, False)
    assert updated.json()["next_sync_at"] is None  # schedule disabled
    audience.refresh_from_db()
    assert audience.periodic_task.enabled is False
    assert audience.periodic_task.interval.every == 3
    cleared = patch(api_b, url, {"suppression_segments": []})
    assert cleared.json()["suppression_segments"] == []


def test_audience_with_another_clients_segment_or_destination_is_not_found(
    api_b, client_a, client_b, yandex_b
):
    own = make_segment(client_b, "Свой")
    foreign_segment = make_segment(client_a, "Чужой")
    foreign_destination = destination_create(
        client=client_a, name="Чужой", platform="yandex_audiences", credentials={"token": "t"}
    )
    base = {"name": "x", "segment": own.pk, "destination": yandex_b.pk}
    cases = [
        ({"segment": foreign_segment.pk}, "segment_not_found", "segment"),
        ({"segment": 10**9}, "segment_not_found", "segment"),
        ({"destination": foreign_destination.pk}, "destination_not_found", "destination"),
        (
            {"suppression_segments": [foreign_segment.pk]},
            "segment_not_found",
            "suppression_segments",
        ),
    ]
    messages = {}
    for change, code, field in cases:
        response = post(api_b, "/api/v1/audiences/", {**base, **change})
        assert response.status_code == 400, change
        assert (response.json()["code"], response.json()["field"]) == (code, field)
        assert "Чужой" not in response.content.decode()
        messages[str(change)] = response.json()["message"]
    # A foreign id and a missing one read the same.
    assert messages[str(cases[0][0])].replace(str(foreign_segment.pk), "N") == messages[
        str(cases[1][0])
    ].replace(str(10**9), "N")
    assert Audience.objects.for_client(client_b).count() == 0
    assert Audience.objects.for_client(client_a).count() == 0


def test_audience_rules_from_the_service(api_b, client_b, audience_b, yandex_b):
    suppression = make_segment(client_b, "Исключение", kind="suppression")
    response = post(
        api_b,
        "/api/v1/audiences/",
        {"name": "s", "segment": suppression.pk, "destination": yandex_b.pk},
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_segment")
    response = post(
        api_b,
        "/api/v1/audiences/",
        {"name": "Лучшие", "segment": audience_b.segment_id, "destination": yandex_b.pk},
    )
    assert (response.status_code, response.json()["code"]) == (400, "name_taken")
    response = post(
        api_b,
        "/api/v1/audiences/",
        {
            "name": "n",
            "segment": audience_b.segment_id,
            "destination": yandex_b.pk,
            "sync_every_days": 90,
        },
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert "sync_every_days" in response.json()["errors"]
    assert Audience.objects.for_client(client_b).count() == 1


# --------------------------------------------------------------------------------------------
# Sync now and sync runs


def test_sync_creates_one_pending_run_queued_after_commit(
    api_b, client_b, audience_b, django_capture_on_commit_callbacks
):
    url = f"/api/v1/audiences/{audience_b.pk}/sync/"
    assert api_b.get(url).json() == {"created": False, "run": None}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post(api_b, url)
    assert first.status_code == 202
    assert first.json()["created"] is True
    run = first.json()["run"]
    assert (run["status"], run["source"], run["audience"]) == ("pending", "api", audience_b.pk)
    assert len(callbacks) == 1  # audience_sync_task.delay(run id), after the commit
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        second = post(api_b, url)
    assert second.status_code == 202
    assert second.json()["created"] is False
    assert second.json()["run"]["id"] == run["id"]
    assert callbacks == []
    assert SyncRun.objects.for_client(client_b).count() == 1
    assert api_b.get(url).json()["run"]["id"] == run["id"]


def test_sync_runs_list_and_detail(api_b, client_b, audience_b):
    older = SyncRun.objects.create(
        client=client_b,
        audience=audience_b,
        status="failed",
        platform_error='{"errors": [{"code": 400}]}',
        error="платформа отказала",
        request_ids=["req-1"],
        steps=["10:00:00 выгрузка"],
    )
    newer = SyncRun.objects.create(
        client=client_b, audience=audience_b, status="running", progress=40, stage="загрузка"
    )
    page = api_b.get(f"/api/v1/audiences/{audience_b.pk}/sync-runs/?page_size=1").json()
    assert [r["id"] for r in page["results"]] == [newer.pk]
    assert page["results"][0]["progress"] == 40
    second = api_b.get(page["next"]).json()
    assert [r["id"] for r in second["results"]] == [older.pk]
    detail = api_b.get(f"/api/v1/sync-runs/{older.pk}/").json()
    assert detail["platform_error"] == '{"errors": [{"code": 400}]}'
    assert (detail["request_ids"], detail["steps"]) == (["req-1"], ["10:00:00 выгрузка"])
    for field in (
        "members",
        "held_back_erased",
        "held_back_consent",
        "suppressed",
        "no_identifier",
        "exported",
        "uploaded",
        "added",
        "removed",
        "remote_status",
        "matched_percent",
        "message",
        "started_at",
        "finished_at",
        "source",
    ):
        assert field in detail, field
    assert [r["id"] for r in api_b.get("/api/v1/sync-runs/").json()["results"]] == [
        newer.pk,
        older.pk,
    ]


def test_read_only_key_cannot_sync_or_write(client_b, audience_b, make_api):
    _key, raw = api_key_create(client=client_b, name="ro", scopes=["read"])
    read_only = make_api(raw)
    assert read_only.get("/api/v1/audiences/").status_code == 200
    response = post(read_only, f"/api/v1/audiences/{audience_b.pk}/sync/")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert SyncRun.objects.for_client(client_b).count() == 0


# --------------------------------------------------------------------------------------------
# Another client's key


def _routes():
    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)

    return list(walk(audiences_api.urlpatterns))


def test_every_route_with_an_id_is_404_for_another_clients_key(
    api_a, api_b, client_a, client_b, audience_b, yandex_b
):
    run = SyncRun.objects.create(client=client_b, audience=audience_b)
    objects = {"destinations": yandex_b.pk, "audiences": audience_b.pk, "sync-runs": run.pk}
    with_ids = [r for r in _routes() if "<" in r]
    assert len(with_ids) == 5  # destination, audience, its sync and sync-runs, a run
    for route in with_ids:
        owner = next(name for name in objects if route.startswith(f"{name}/"))
        url = "/api/v1/" + re.sub(r"<(?:\w+:)?\w+>", str(objects[owner]), route)
        assert api_b.get(url).status_code == 200, url
        response = api_a.get(url)
        assert response.status_code == 404, url
        assert response.json() == {"code": "not_found", "message": "Не найдено."}
        assert api_a.get(url.replace(str(objects[owner]), "abc")).status_code == 404
    sync = post(api_a, f"/api/v1/audiences/{audience_b.pk}/sync/")
    assert sync.status_code == 404
    assert patch(api_a, f"/api/v1/audiences/{audience_b.pk}/", {"name": "чужая"}).status_code == (
        404
    )
    response = patch(api_a, f"/api/v1/destinations/{yandex_b.pk}/", {"credentials": {"token": "x"}})
    assert response.status_code == 404
    assert SyncRun.objects.for_client(client_b).count() == 1
    assert Audience.objects.for_client(client_b).get().name == "Лучшие"
    yandex_b.refresh_from_db()
    from audiences.services import destination_credentials

    assert destination_credentials(yandex_b) == {"token": YANDEX_TOKEN}
    for listing in ("destinations", "audiences", "sync-runs"):
        assert api_a.get(f"/api/v1/{listing}/").json()["results"] == [], listing


# --------------------------------------------------------------------------------------------
# Value-based bid modifiers


def test_bid_modifiers_need_the_value_bidding_tier(api_a, client_a):
    for response in (
        api_a.get("/api/v1/bid-modifiers/"),
        api_a.get("/api/v1/bid-modifiers/?format=csv"),
        post(api_a, "/api/v1/bid-modifiers/direct-body/", {"campaign_id": 5}),
    ):
        assert response.status_code == 403
        assert response["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["code"] == "tier_feature_value_bidding"
        assert body["message"] == (
            "Ставки по ценности клиента доступны с тарифа Advanced CVM; у клиента тариф Foundation."
        )
        assert (body["tier"], body["required_tier"]) == ("foundation", "advanced")


@pytest.fixture
def valued_b(client_b, yandex_b):
    """Ten scored customers k1..k10 with predicted CLV 100, 200, ..., 1000 and audiences:

    - "Топ" on {k9, k10}: mean 950; 9 of 10 CLVs below it -> percentile 90 -> 200;
    - "Середина" on {k5, k6}: mean 550, percentile 50 -> 130 + (50-20)/60 * 70 = 165;
    - "Дно" on {k1, k2}: mean 150, percentile 10 -> 50 (0 with exclude_bottom);
    - "Исключить" (purpose exclusion) on {k3} -> 0;
    - "Без оценок" on a segment of an unscored customer k11 -> no modifier;
    - "VK" on a VK Ads cabinet: not a Yandex audience, not listed.
    k5 also left "Середина" (left_at set) in an earlier stay: only current members count.
    """
    now = timezone.now()
    customers = {}
    for i in range(1, 12):
        customers[i] = Customer.objects.create(client=client_b, external_id=f"k{i}", first_seen=now)
        if i <= 10:
            CustomerScore.objects.create(
                customer=customers[i],
                client=client_b,
                predicted_clv=Decimal(100 * i),
                computed_at=now,
            )
    vk = destination_create(
        client=client_b,
        name="VK",
        platform="vk_ads",
        credentials={"client_id": "1", "client_secret": VK_SECRET},
    )
    plan = [
        ("Топ", [9, 10], "retargeting", yandex_b, 101),
        ("Середина", [5, 6], "retargeting", yandex_b, 102),
        ("Дно", [1, 2], "retargeting", yandex_b, None),
        ("Исключить", [3], "exclusion", yandex_b, 104),
        ("Без оценок", [11], "retargeting", yandex_b, 105),
        ("VK", [9], "retargeting", vk, None),
    ]
    for name, members, purpose, destination, condition in plan:
        segment = Segment.objects.create(
            client=client_b, name=f"s-{name}", kind="rule", definition={}, size=len(members)
        )
        for i in members:
            SegmentMembership.objects.create(
                client=client_b, segment=segment, customer=customers[i], entered_at=now
            )
        audience_create(
            client=client_b,
            name=name,
            segment=segment,
            destination=destination,
            purpose=purpose,
            direct_retargeting_condition_id=condition,
        )
    middle = Segment.objects.for_client(client_b).get(name="s-Середина")
    SegmentMembership.objects.create(
        client=client_b, segment=middle, customer=customers[10], entered_at=now, left_at=now
    )
    return client_b


def test_bid_modifiers_exact_values(api_b, valued_b):
    response = api_b.get("/api/v1/bid-modifiers/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["exclude_bottom"] is False
    got = {
        r["audience"]: (r["mean_clv"], r["clv_percentile"], r["bid_modifier"])
        for r in body["results"]
    }
    assert got == {
        "Без оценок": (None, None, None),
        "Дно": ("150.00", 10.0, 50),
        "Исключить": ("300.00", 20.0, 0),
        "Середина": ("550.00", 50.0, 165),
        "Топ": ("950.00", 90.0, 200),
    }
    top = next(r for r in body["results"] if r["audience"] == "Топ")
    assert set(top) == {
        "audience_id",
        "audience",
        "segment",
        "members",
        "mean_clv",
        "clv_percentile",
        "bid_modifier",
        "reason",
        "retargeting_condition_id",
        "remote_segment_id",
    }
    assert (top["segment"], top["members"], top["retargeting_condition_id"]) == ("s-Топ", 2, 101)
    bottom = api_b.get("/api/v1/bid-modifiers/?exclude_bottom=1").json()
    assert bottom["exclude_bottom"] is True
    assert {r["audience"]: r["bid_modifier"] for r in bottom["results"]}["Дно"] == 0


def test_bid_modifiers_csv(api_b, valued_b):
    response = api_b.get("/api/v1/bid-modifiers/?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="bid-modifiers-')
    assert response.content.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8
    text = response.content.decode("utf-8-sig")
    assert next(csv.reader(io.StringIO(text))) == [
        "audience_id", "audience", "segment", "members", "mean_clv", "clv_percentile",
        "bid_modifier", "retargeting_condition_id", "remote_segment_id", "reason",
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == CSV_COLUMNS
    by_name = {r["audience"]: r for r in rows}
    assert (by_name["Топ"]["bid_modifier"], by_name["Топ"]["mean_clv"]) == ("200", "950.00")
    assert by_name["Без оценок"]["bid_modifier"] == ""


def test_bid_modifiers_csv_neutralises_formulas(api_b, valued_b):
    formula = '=HYPERLINK("http://x","click")'
    Audience.objects.for_client(valued_b).filter(name="Топ").update(name=formula)
    response = api_b.get("/api/v1/bid-modifiers/?format=csv")
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    (top,) = [r for r in rows if r["segment"] == "s-Топ"]
    assert top["audience"] == "'" + formula
    assert top["bid_modifier"] == "200"


def test_direct_body(api_b, valued_b):
    response = post(api_b, "/api/v1/bid-modifiers/direct-body/", {"campaign_id": 555})
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "method": "add",
        "params": {
            "BidModifiers": [
                {
                    "CampaignId": 555,
                    "RetargetingAdjustments": [
                        # Audiences by name; "Дно" has no condition id, "Без оценок" no modifier.
                        {"RetargetingConditionId": 104, "BidModifier": 0},
                        {"RetargetingConditionId": 102, "BidModifier": 165},
                        {"RetargetingConditionId": 101, "BidModifier": 200},
                    ],
                }
            ]
        },
    }
    for bad in ({}, {"campaign_id": 0}, {"campaign_id": "abc"}, {"campaign_id": -3}):
        response = post(api_b, "/api/v1/bid-modifiers/direct-body/", bad)
        assert response.status_code == 400, bad
        assert (response.json()["code"], response.json()["field"]) == ("invalid", "campaign_id")


def test_schema_documents_the_routes_and_carries_no_secret(api_a):
    schema = api_a.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    paths = document["paths"]
    for route in (
        "/api/v1/destinations/",
        "/api/v1/destinations/{id}/",
        "/api/v1/audiences/",
        "/api/v1/audiences/{id}/",
        "/api/v1/audiences/{id}/sync/",
        "/api/v1/audiences/{id}/sync-runs/",
        "/api/v1/sync-runs/{id}/",
        "/api/v1/bid-modifiers/",
        "/api/v1/bid-modifiers/direct-body/",
    ):
        assert route in paths, route
        for operation in paths[route].values():
            assert operation["tags"] == ["audiences"], route
    assert paths["/api/v1/audiences/{id}/"]["get"]["parameters"][0]["schema"]["type"] == "integer"
    destination = document["components"]["schemas"]["Destination"]["properties"]
    assert "credentials" not in destination
    assert set(paths["/api/v1/bid-modifiers/"]["get"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/csv",
    }
