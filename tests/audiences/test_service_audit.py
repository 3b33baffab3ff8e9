"""The audiences services own their side effects: one audit entry per change or sync request,
whichever entry point (API, admin, beat) calls them, and the sync task sent only after the
commit."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from agency.models import AuditLogEntry
from audiences import tasks
from audiences.models import Audience, Destination, SyncRun
from audiences.services import audience_create, audience_sync_request, destination_create
from segments.models import Segment

pytestmark = pytest.mark.django_db

TOKEN = "y0_AgAAAA-audit-test-token-0123456789"


def post(api, url, body=None):
    return api.post(url, data=json.dumps(body or {}), content_type="application/json")


def patch(api, url, body):
    return api.patch(url, data=json.dumps(body), content_type="application/json")


def entries(client, **filters):
    return AuditLogEntry.objects.filter(client=client, **filters)


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.audience_sync_task, "delay", lambda run_id: calls.append(run_id))
    return calls


@pytest.fixture
def audience_b(client_b):
    destination = destination_create(
        client=client_b, name="Яндекс", platform="yandex_audiences", credentials={"token": TOKEN}
    )
    segment = Segment.objects.create(client=client_b, name="Лучшие", kind="rule", definition={})
    return audience_create(client=client_b, name="Лучшие", segment=segment, destination=destination)


def test_api_sync_writes_exactly_one_audit_entry_and_sends_after_commit(
    api_b, client_b, audience_b, sent, django_capture_on_commit_callbacks
):
    before = entries(client_b).count()
    url = f"/api/v1/audiences/{audience_b.pk}/sync/"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(api_b, url)
        assert sent == []
    assert response.status_code == 202
    run_id = response.json()["run"]["id"]
    assert entries(client_b).count() == before + 1
    entry = entries(client_b).get(action="audience_sync_requested")
    assert (entry.source, entry.object_id) == ("api", str(audience_b.pk))
    assert entry.actor_label.startswith("api-key:")
    assert entry.details == {"run": run_id, "created": True, "source": "api"}
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == [run_id]

    # A second request reuses the run: audited as such, nothing sent.
    with django_capture_on_commit_callbacks(execute=True):
        assert post(api_b, url).json()["created"] is False
    assert sent == [run_id]
    assert entries(client_b, action="audience_sync_requested").count() == 2


def test_admin_and_beat_sync_go_through_the_same_service(
    client, agency_admin, client_b, audience_b, sent, django_capture_on_commit_callbacks
):
    client.force_login(agency_admin)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:audiences_audience_sync", args=[audience_b.pk]))
    run = SyncRun.objects.for_client(client_b).get()
    assert sent == [run.pk]
    admin_entry = entries(client_b, action="audience_sync_requested").get()
    assert (admin_entry.source, admin_entry.actor) == ("admin", agency_admin)

    SyncRun.objects.for_client(client_b).update(status="succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        beat_run_id = tasks.audience_scheduled_sync_task(audience_b.pk)
    assert sent == [run.pk, beat_run_id]
    beat_entry = entries(client_b, action="audience_sync_requested").latest("pk")
    assert (beat_entry.source, beat_entry.details["source"]) == ("system", "beat")


def test_a_rolled_back_sync_request_sends_nothing(
    client_b, audience_b, sent, django_capture_on_commit_callbacks
):
    from django.db import transaction

    def ask_then_fail():
        with transaction.atomic():
            audience_sync_request(audience=audience_b, source="admin")
            raise RuntimeError("the caller failed after asking")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        ask_then_fail()
    assert sent == []
    assert not SyncRun.objects.for_client(client_b).exists()


def test_destination_and_audience_changes_via_the_api_are_audited_once_each(
    api_b, client_b, django_capture_on_commit_callbacks
):
    segment = Segment.objects.create(client=client_b, name="Все", kind="rule", definition={})
    before = entries(client_b).count()
    created = post(
        api_b,
        "/api/v1/destinations/",
        {
            "name": "Яндекс",
            "platform": "yandex_audiences",
            "credentials": {"token": TOKEN},
            "is_active": False,
        },
    )
    assert created.status_code == 201, created.json()
    destination_id = created.json()["id"]
    assert entries(client_b).count() == before + 1  # an inactive cabinet is one change
    entry = entries(client_b, action="destination_created").get()
    assert (entry.source, entry.object_id) == ("api", str(destination_id))
    assert TOKEN not in json.dumps(entry.details)

    changed = patch(
        api_b,
        f"/api/v1/destinations/{destination_id}/",
        {"is_active": True, "credentials": {"token": TOKEN + "-new"}},
    )
    assert changed.status_code == 200, changed.json()
    entry = entries(client_b, action="destination_updated").get()
    assert entry.details == {"fields": ["is_active"], "credentials_replaced": True}
    assert "new" not in json.dumps(entry.details)

    made = post(
        api_b,
        "/api/v1/audiences/",
        {"name": "Все", "segment": segment.pk, "destination": destination_id},
    )
    assert made.status_code == 201, made.json()
    audience_id = made.json()["id"]
    assert entries(client_b, action="audience_created").get().object_id == str(audience_id)
    updated = patch(api_b, f"/api/v1/audiences/{audience_id}/", {"sync_every_days": 3})
    assert updated.status_code == 200, updated.json()
    entry = entries(client_b, action="audience_updated").get()
    assert entry.details == {"fields": ["sync_every_days"], "restarted": False}
    assert entries(client_b).count() == before + 4


def test_a_refused_change_is_not_audited(api_b, client_b):
    before = entries(client_b).count()
    response = post(
        api_b,
        "/api/v1/destinations/",
        {"name": "Яндекс", "platform": "yandex_audiences", "credentials": {"token": TOKEN},
         "hashing": "md5"},
    )  # fmt: skip
    assert response.status_code == 400
    assert entries(client_b).count() == before
    assert not Destination.objects.for_client(client_b).exists()


def test_admin_changes_are_audited_by_the_service_once(client, agency_admin, client_b):
    client.force_login(agency_admin)
    form = {
        "client": client_b.pk,
        "name": "Яндекс",
        "platform": "yandex_audiences",
        "hashing": "sha256",
        "is_active": "on",
        "credentials": json.dumps({"token": TOKEN}),
    }
    response = client.post(reverse("admin:audiences_destination_add"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    destination = Destination.objects.for_client(client_b).get()
    segment = Segment.objects.create(client=client_b, name="Все", kind="rule", definition={})
    response = client.post(
        reverse("admin:audiences_audience_add"),
        {"client": client_b.pk, "name": "Все", "segment": segment.pk,
         "destination": destination.pk, "purpose": "retargeting", "identifiers": "email_phone",
         "lookalike_value": 3, "sync_every_days": 7, "is_active": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    audience = Audience.objects.for_client(client_b).get()

    actions = list(entries(client_b).order_by("pk").values_list("action", "source", "actor"))
    assert actions[-2:] == [
        ("destination_created", "admin", agency_admin.pk),
        ("audience_created", "admin", agency_admin.pk),
    ]
    assert not entries(client_b, action__in=["admin_add", "admin_change"]).exists()
    assert entries(client_b, action="audience_created").get().object_id == str(audience.pk)
