"""Audience admin: write-only credentials, saving through the services, clients' objects only,
"sync now" by role, the read-only sync runs and the value-based bid modifiers page."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from audiences.models import Audience, Destination, SyncRun
from audiences.services import audience_create, destination_create, destination_credentials
from segments.models import Segment
from tests.audiences.test_api import valued_b, yandex_b  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

TOKEN_A = "y0_AgAAAA-admin-test-token-a-123456"
TOKEN_B = "y0_AgAAAA-admin-test-token-b-654321"


def _segment(client, name: str, kind: str = "rule") -> Segment:
    return Segment.objects.create(client=client, name=name, kind=kind, definition={})


@pytest.fixture
def world(client_a, client_b):
    """One Yandex cabinet and one audience per client."""
    out = {}
    for key, client, token in (("a", client_a, TOKEN_A), ("b", client_b, TOKEN_B)):
        destination = destination_create(
            client=client, name=f"Яндекс {key}", platform="yandex_audiences",
            credentials={"token": token},
        )  # fmt: skip
        segment = _segment(client, f"Лучшие {key}")
        out[key] = {
            "destination": destination,
            "segment": segment,
            "audience": audience_create(
                client=client, name=f"Аудитория {key}", segment=segment, destination=destination
            ),
        }
    return out


def _url(name: str, *args) -> str:
    return reverse(f"admin:audiences_{name}", args=args)


# --------------------------------------------------------------------------------------------
# Pages


def test_pages_open_for_the_agency_admin(client, agency_admin, world):
    client.force_login(agency_admin)
    audience = world["b"]["audience"]
    run = SyncRun.objects.create(
        client=audience.client, audience=audience, status="failed", progress=30,
        steps=["10:00:00 снимок собран"], request_ids=["req-42"],
        platform_error='{"error": "quota"}', error="платформа отказала",
    )  # fmt: skip
    pages = [
        _url("destination_changelist"),
        _url("destination_add"),
        _url("destination_change", world["b"]["destination"].pk),
        _url("audience_changelist"),
        _url("audience_add"),
        _url("audience_change", audience.pk),
        _url("syncrun_changelist"),
        _url("syncrun_change", run.pk),
        _url("audience_bidding_index"),
        _url("audience_bidding", audience.client_id),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert TOKEN_A not in body, url
        assert TOKEN_B not in body, url
    run_page = client.get(_url("syncrun_change", run.pk)).content.decode()
    for text in ("10:00:00 снимок собран", "req-42", "quota", "платформа отказала", "<progress"):
        assert text in run_page
    assert 'http-equiv="refresh"' not in run_page  # a finished run does not refresh
    audience_page = client.get(_url("audience_change", audience.pk)).content.decode()
    assert "Синхронизировать сейчас" in audience_page
    assert _url("syncrun_change", run.pk) in audience_page  # its recent runs
    assert "django_celery_beat/periodictask/" in audience_page  # link to its beat entry
    listing = client.get(_url("audience_changelist")).content.decode()
    assert "ещё не синхронизирована" in listing
    assert "раз в 7 дн." in listing


def test_a_running_sync_refreshes_its_page_and_the_list(client, agency_admin, world):
    client.force_login(agency_admin)
    audience = world["a"]["audience"]
    run = SyncRun.objects.create(client=audience.client, audience=audience, status="running")
    assert 'http-equiv="refresh"' in client.get(_url("syncrun_change", run.pk)).content.decode()
    assert 'http-equiv="refresh"' in client.get(_url("syncrun_changelist")).content.decode()


def test_sync_runs_are_read_only(client, agency_admin, world):
    client.force_login(agency_admin)
    audience = world["a"]["audience"]
    run = SyncRun.objects.create(client=audience.client, audience=audience)
    assert client.get(_url("syncrun_add")).status_code == 403
    assert client.post(_url("syncrun_delete", run.pk), {"post": "yes"}).status_code == 403
    page = client.get(_url("syncrun_change", run.pk)).content.decode()
    assert 'name="_save"' not in page
    assert SyncRun.objects.for_client(audience.client).count() == 1


# --------------------------------------------------------------------------------------------
# Destinations: write-only credentials through the services


def test_destination_add_and_edit_keep_credentials_secret(client, agency_admin, client_b):
    client.force_login(agency_admin)
    form = {
        "client": client_b.pk,
        "name": "VK агентский",
        "platform": "vk_ads",
        "hashing": "md5",
        "is_active": "on",
        "credentials": '{"client_id": "77", "client_secret": "very-secret-vk-value"}',
    }
    response = client.post(_url("destination_add"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    destination = Destination.objects.for_client(client_b).get()
    assert destination_credentials(destination) == {
        "client_id": "77",
        "client_secret": "very-secret-vk-value",
    }
    assert destination.recipient.country == "RU"  # the service made its data recipient
    change_url = _url("destination_change", destination.pk)
    page = client.get(change_url).content.decode()
    assert "very-secret-vk-value" not in page
    assert 'name="credentials"' in page
    # Blank credentials on edit keep the stored ones.
    edit = {k: v for k, v in form.items() if k not in ("client", "platform")}
    edit.update(name="VK 2", credentials="")
    assert client.post(change_url, edit).status_code == 302
    destination.refresh_from_db()
    assert destination.name == "VK 2"
    assert destination_credentials(destination)["client_secret"] == "very-secret-vk-value"
    # New credentials replace them.
    edit["credentials"] = '{"client_id": "78", "client_secret": "rotated-secret"}'
    assert client.post(change_url, edit).status_code == 302
    destination.refresh_from_db()
    assert destination_credentials(destination) == {
        "client_id": "78",
        "client_secret": "rotated-secret",
    }


def test_destination_form_reports_the_services_refusal(client, agency_admin, client_b):
    client.force_login(agency_admin)
    form = {
        "client": client_b.pk,
        "name": "Яндекс",
        "platform": "yandex_audiences",
        "hashing": "md5",
        "is_active": "on",
        "credentials": '{"token": "typed-secret-token"}',
    }
    response = client.post(_url("destination_add"), form)
    assert response.status_code == 200
    body = response.content.decode()
    assert "принимает хеширование" in body
    assert "typed-secret-token" not in body  # not even echoed back
    response = client.post(
        _url("destination_add"), {**form, "hashing": "sha256", "credentials": "{"}
    )
    assert "Это не JSON" in response.content.decode()
    response = client.post(
        _url("destination_add"), {**form, "hashing": "sha256", "credentials": ""}
    )
    assert "Укажите учётные данные" in response.content.decode()
    assert Destination.objects.for_client(client_b).count() == 0


# --------------------------------------------------------------------------------------------
# Audiences: the client's objects only, saving through the services


def test_audience_add_through_the_service(client, agency_admin, client_b, world):
    client.force_login(agency_admin)
    segment = _segment(client_b, "Новые")
    exclusion = _segment(client_b, "Недавние", kind="suppression")
    form = {
        "client": client_b.pk,
        "name": "Новые в Яндекс",
        "segment": segment.pk,
        "destination": world["b"]["destination"].pk,
        "purpose": "retargeting",
        "identifiers": "email",
        "lookalike_value": 3,
        "exclusions": [exclusion.pk],
        "sync_every_days": 10,
        "is_active": "on",
    }
    page = client.get(_url("audience_add") + f"?client={client_b.pk}").content.decode()
    assert "Лучшие b" in page
    assert "Лучшие a" not in page  # choices of that client only
    assert f'value="{exclusion.pk}"' in page
    response = client.post(_url("audience_add") + f"?client={client_b.pk}", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    audience = Audience.objects.for_client(client_b).get(name="Новые в Яндекс")
    assert audience.periodic_task.interval.every == 10  # the service scheduled it
    through = Audience.suppression_segments.through.objects.filter(audience_id=audience.pk)
    assert list(through.values_list("segment_id", flat=True)) == [exclusion.pk]
    # Another client's segment is refused, nothing created.
    response = client.post(
        _url("audience_add"), {**form, "name": "чужой", "segment": world["a"]["segment"].pk}
    )
    assert response.status_code == 200
    assert Audience.objects.for_client(client_b).filter(name="чужой").count() == 0
    # The audience's own segment as its exclusion: the service's refusal on the field.
    response = client.post(
        _url("audience_add"), {**form, "name": "сам себе", "exclusions": [segment.pk]}
    )
    assert response.status_code == 200
    assert "не может быть своим исключением" in response.content.decode()


def test_audience_change_offers_the_clients_segments_and_saves_through_the_service(
    client, agency_admin, world
):
    client.force_login(agency_admin)
    audience = world["b"]["audience"]
    url = _url("audience_change", audience.pk)
    page = client.get(url).content.decode()
    assert "Лучшие b" in page
    assert "Лучшие a" not in page
    form = {
        "name": "Аудитория b",
        "segment": audience.segment_id,
        "purpose": "retargeting",
        "identifiers": "email_phone",
        "lookalike_value": 3,
        "sync_every_days": 2,
    }  # is_active unticked
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    audience.refresh_from_db()
    assert (audience.sync_every_days, audience.is_active) == (2, False)
    assert audience.periodic_task.enabled is False
    assert audience.periodic_task.interval.every == 2


# --------------------------------------------------------------------------------------------
# Roles


def test_account_manager_sees_only_own_clients_objects(
    client, account_manager, client_a, client_b, world
):
    client.force_login(account_manager)
    for name in ("destination", "audience"):
        listing = client.get(_url(f"{name}_changelist")).content.decode()
        assert world["a"][name].name in listing
        assert world["b"][name].name not in listing
        foreign = client.get(_url(f"{name}_change", world["b"][name].pk))
        assert foreign.status_code == 302  # "does not exist", like a missing id
    run_b = SyncRun.objects.create(client=client_b, audience=world["b"]["audience"])
    assert client.get(_url("syncrun_change", run_b.pk)).status_code == 302
    assert client.get(_url("audience_bidding", client_b.pk)).status_code == 404
    response = client.post(_url("audience_sync", world["b"]["audience"].pk))
    assert response.status_code == 404
    assert SyncRun.objects.for_client(client_b).count() == 1


def test_sync_now_creates_one_run_after_commit(
    client, account_manager, client_a, world, django_capture_on_commit_callbacks
):
    client.force_login(account_manager)
    audience = world["a"]["audience"]
    url = _url("audience_sync", audience.pk)
    assert url in client.get(_url("audience_change", audience.pk)).content.decode()
    assert client.get(url).status_code == 405
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url)
    run = SyncRun.objects.for_client(client_a).get()
    assert response.status_code == 302
    assert response["Location"] == _url("syncrun_change", run.pk)
    assert (run.status, run.source) == ("pending", "admin")
    assert len(callbacks) == 1  # audience_sync_task.delay, after the commit
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again = client.post(url)
    assert again["Location"] == _url("syncrun_change", run.pk)
    assert callbacks == []
    assert SyncRun.objects.for_client(client_a).count() == 1


def test_sync_now_action(client, agency_admin, client_a, client_b, world):
    client.force_login(agency_admin)
    selected = [world["a"]["audience"].pk, world["b"]["audience"].pk]
    response = client.post(
        _url("audience_changelist"), {"action": "sync_now", "_selected_action": selected}
    )
    assert response.status_code == 302
    assert SyncRun.objects.for_client(client_a).get().source == "admin"
    assert SyncRun.objects.for_client(client_b).count() == 1
    client.post(_url("audience_changelist"), {"action": "sync_now", "_selected_action": selected})
    assert SyncRun.objects.unscoped().filter(client__in=[client_a, client_b]).count() == 2


def test_analyst_reads_but_cannot_sync(client, analyst, client_a, world):
    client.force_login(analyst)
    audience = world["a"]["audience"]
    page = client.get(_url("audience_change", audience.pk))
    assert page.status_code == 200
    assert "Синхронизировать сейчас" not in page.content.decode()
    listing = client.get(_url("audience_changelist")).content.decode()
    assert "sync_now" not in listing
    assert client.post(_url("audience_sync", audience.pk)).status_code == 403
    client.post(
        _url("audience_changelist"), {"action": "sync_now", "_selected_action": [audience.pk]}
    )
    assert client.get(_url("audience_add")).status_code == 403
    assert SyncRun.objects.for_client(client_a).count() == 0


# --------------------------------------------------------------------------------------------
# Value-based bid modifiers


def test_bidding_page_table_and_downloads(client, analyst, valued_b, client_a):  # noqa: F811
    client.force_login(analyst)
    url = _url("audience_bidding", valued_b.pk)
    page = client.get(url).content.decode()
    assert 'data-modifier="200"' in page
    assert 'data-modifier="165"' in page
    assert "?format=csv" in page
    assert "?format=json" in page
    csv_response = client.get(url + "?format=csv")
    assert csv_response["Content-Type"] == "text/csv; charset=utf-8"
    lines = csv_response.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith('"audience_id","audience","segment","members","mean_clv"')
    assert len(lines) == 6  # the header and five Yandex audiences
    Audience.objects.for_client(valued_b).filter(name="Топ").update(name="@SUM(1+1)")
    data = client.get(url + "?format=csv").content
    assert data.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert {r["audience"]: r["bid_modifier"] for r in rows}["'@SUM(1+1)"] == "200"
    body = client.get(url + "?format=json&exclude_bottom=1").json()
    assert {r["audience"]: r["bid_modifier"] for r in body}["Дно"] == 0
    direct = client.get(url + "?format=json&campaign_id=9").json()
    assert direct["params"]["BidModifiers"][0]["CampaignId"] == 9
    refused = client.get(_url("audience_bidding", client_a.pk)).content.decode()
    assert "Ставки по ценности клиента доступны с тарифа" in refused
