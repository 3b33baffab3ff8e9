"""The admin and the API in Russian by default and in English on request: status, platform and
segment labels, error messages, the schema; times of a client's data in the client's zone."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from audiences.models import SyncRun
from audiences.services import audience_create, destination_create
from clients.models import ImportJob
from segments.labels import LIFECYCLE_STAGE_LABELS, RFM_SEGMENT_LABELS, rfm_segment_label
from segments.lifecycle import STAGES
from segments.models import ScoringRun, Segment
from segments.rfm import SEGMENTS
from segments.segmentation import segment_definition_describe

pytestmark = pytest.mark.django_db

ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture
def run_a(client_a):
    client_a.time_zone = "Asia/Vladivostok"
    client_a.save(update_fields=["time_zone"])
    destination = destination_create(
        client=client_a, name="Яндекс", platform="yandex_audiences", credentials={"token": "t"}
    )
    segment = Segment.objects.create(client=client_a, name="Лучшие", kind="rule", definition={})
    audience = audience_create(
        client=client_a, name="Лучшие → Яндекс", segment=segment, destination=destination
    )
    run = SyncRun.objects.create(client=client_a, audience=audience, status="deferred")
    at = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)  # 19:30 in Vladivostok
    SyncRun.objects.for_client(client_a).filter(pk=run.pk).update(created_at=at)
    return run


def test_admin_shows_status_and_platform_labels_in_the_chosen_language(client, agency_admin, run_a):
    client.force_login(agency_admin)
    listing = reverse("admin:audiences_syncrun_changelist")
    russian = client.get(listing).content.decode()
    assert "отложена (платформа ещё обрабатывает)" in russian
    assert "<h1>Выберите синхронизация для изменения</h1>" in russian or "Агентство CVM" in russian
    english = client.get(listing, **ENGLISH).content.decode()
    assert "deferred (the platform is still processing)" in english
    assert "отложена" not in english
    assert "Agency CVM" in english  # the site header: one brand name, translated
    destinations = client.get(
        reverse("admin:audiences_destination_changelist"), **ENGLISH
    ).content.decode()
    assert "Yandex Audiences" in destinations
    assert "Яндекс Аудитории" not in destinations


def test_admin_lists_show_times_in_the_row_clients_zone(client, agency_admin, run_a):
    client.force_login(agency_admin)
    page = client.get(reverse("admin:audiences_syncrun_changelist")).content.decode()
    cell = re.search(r'<th class="field-created_at">(.*?)</th>', page, re.S).group(1)
    assert "19:30" in cell  # 09:30 UTC in Asia/Vladivostok
    assert "+10" in cell  # the zone is named
    change = client.get(reverse("admin:audiences_syncrun_change", args=[run_a.pk])).content
    created = re.search(
        r'field-created_at.*?<div class="readonly">(.*?)</div>', change.decode(), re.S
    )
    assert "19:30" in created.group(1)  # the change page is in the run's client's zone
    assert timezone.get_current_timezone_name() == "Europe/Moscow"  # only for that page


def test_object_titles_use_the_clients_zone(client_a):
    client_a.time_zone = "Asia/Vladivostok"
    client_a.save(update_fields=["time_zone"])
    at = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)
    run = ScoringRun.objects.create(client=client_a)
    ScoringRun.objects.for_client(client_a).filter(pk=run.pk).update(created_at=at)
    run.refresh_from_db()
    assert str(run) == "Скоринг 24.11.2026 19:30 · в очереди"
    with translation.override("en"):
        assert str(run) == "Scoring 24.11.2026 19:30 · queued"
    job = ImportJob.objects.create(client=client_a, kind="orders")
    ImportJob.objects.for_client(client_a).filter(pk=job.pk).update(created_at=at)
    job.refresh_from_db()
    assert str(job) == "заказы · 2026-11-24 19:30"


def test_rfm_and_lifecycle_names_are_translated_codes_stay(db):
    assert set(RFM_SEGMENT_LABELS) == set(SEGMENTS)
    assert set(LIFECYCLE_STAGE_LABELS) == set(STAGES)
    assert rfm_segment_label("Champions") == "Чемпионы"
    described = segment_definition_describe("rfm", {"names": ["Champions", "At Risk"]})
    assert described == "RFM-сегменты: Чемпионы, Под угрозой ухода"
    lifecycle = segment_definition_describe("lifecycle", {"stages": ["Win-back"]})
    assert lifecycle == "Стадии жизненного цикла: Возврат"
    with translation.override("en"):
        assert rfm_segment_label("Champions") == "Champions"
        described = segment_definition_describe("rfm", {"names": ["Champions", "At Risk"]})
        assert described == "RFM segments: Champions, At Risk"
        for code in SEGMENTS:
            assert not re.search("[\u0400-\u04ff]", rfm_segment_label(code)), code
        for code in STAGES:
            assert not re.search("[\u0400-\u04ff]", str(LIFECYCLE_STAGE_LABELS[code])), code


def test_api_errors_follow_accept_language(api_a):
    missing = api_a.get("/api/v1/segments/999999/")
    assert missing.json() == {"code": "not_found", "message": "Не найдено."}
    missing = api_a.get("/api/v1/segments/999999/", **ENGLISH)
    assert missing.json() == {"code": "not_found", "message": "Not found."}

    body = {"name": "VIP", "kind": "rfm", "definition": {"names": ["Champions"]}}
    assert api_a.post("/api/v1/segments/", body, format="json").status_code == 201
    refused = api_a.post("/api/v1/segments/", body, format="json")
    assert refused.status_code == 400
    assert refused.json()["message"] == "Сегмент «VIP» у клиента уже есть."
    refused = api_a.post("/api/v1/segments/", body, format="json", **ENGLISH)
    assert refused.json()["message"] == "The client already has a segment “VIP”."
    invalid = {"name": "X", "kind": "rfm", "definition": {"names": ["Kings"]}}
    refused = api_a.post("/api/v1/segments/", invalid, format="json", **ENGLISH).json()
    assert refused["code"] == "invalid_definition"
    assert refused["errors"] == [
        {
            "path": "names[0]",
            "message": f"unknown RFM segment 'Kings': one of {', '.join(SEGMENTS)}",
        }
    ]
    shapeless = api_a.post("/api/v1/segments/", {"kind": "rfm"}, format="json", **ENGLISH)
    assert shapeless.json()["message"] == "Invalid data."

    body = {"name": "Churners", "kind": "predictive", "definition": {"churn_at_least": 0.5}}
    tier = api_a.post("/api/v1/segments/", body, format="json", **ENGLISH)
    assert tier.status_code == 403
    assert tier.json()["message"] == (
        "Predictive segments are available from the Advanced CVM tier; "
        "the client's tier is Foundation."
    )
    unknown = api_a.get("/api/v1/no-such-route/", **ENGLISH)
    assert unknown.json() == {"code": "not_found", "message": "Not found."}


def test_a_refusal_before_the_language_middleware_follows_accept_language(api_a, settings):
    settings.API_MAX_BODY_BYTES = 100
    body = json.dumps([{"external_id": f"x{i}"} for i in range(20)])
    url = "/api/v1/customers/bulk/"
    russian = api_a.post(url, data=body, content_type="application/json").json()
    assert russian["message"].startswith("Тело запроса ")
    english = api_a.post(url, data=body, content_type="application/json", **ENGLISH).json()
    assert english["code"] == "payload_too_large"
    assert english["message"].startswith(f"The request body of {len(body)} bytes is over")


def test_schema_in_russian_by_default_and_in_english_with_lang(api_a):
    accept = {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}
    russian = json.loads(api_a.get("/api/schema/", **accept).content)
    assert russian["info"]["title"] == "API «Агентство CVM»"
    assert "Авторизация" in russian["info"]["description"]
    english = json.loads(api_a.get("/api/schema/?lang=en", **accept).content)
    assert english["info"]["title"] == "Agency CVM API"
    assert english["info"]["description"].startswith("Customer base ingestion")
    assert english["paths"]["/api/v1/segments/"]["post"]["summary"] == "Create a segment"
    by_header = json.loads(api_a.get("/api/schema/", **accept, **ENGLISH).content)
    assert by_header["info"]["title"] == "Agency CVM API"
