"""Server-side request forgery (issue 11, security 1): a platform's address is deployment
configuration (``<PROVIDER>_BASE_URL``), never tenant data; a destination's country is its
platform operator's; and what a platform answers reaches a client only as the platform's parsed
message, never as a raw body."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from werkzeug.wrappers import Response

from agency.models import AuditLogEntry
from audiences.models import Destination, SyncRun
from audiences.sync import audience_sync_now, platform_client
from consent.models import DataRecipient
from integrations import mytarget, vk_ads, yandex_audiences
from integrations.http import PlatformError
from tests.stubs.vk_ads import VkAdsStub
from tests.stubs.yandex_audiences import YandexAudiencesStub

from .conftest import (
    FAST,
    VK_CLIENT,
    VK_SECRET,
    YANDEX_TOKEN,
    build_world,
    make_audience,
    point_platforms_at,
    vk_destination,
    yandex_destination,
)

pytestmark = pytest.mark.django_db

YANDEX_BODY = {"name": "Яндекс", "platform": "yandex_audiences", "credentials": {"token": "t"}}


def post(api, url, body):
    return api.post(url, json.dumps(body), content_type="application/json")


def patch(api, url, body):
    return api.patch(url, json.dumps(body), content_type="application/json")


def counts(client):
    return (
        Destination.objects.for_client(client).count(),
        DataRecipient.objects.for_client(client).count(),
        AuditLogEntry.objects.filter(client=client).count(),
    )


# --------------------------------------------------------------------------------------------
# No client input chooses an address or a country


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_url", "http://127.0.0.1:8000/"),
        ("base_url", "http://169.254.169.254/latest/"),
        ("base_url", ""),
        ("country", "RU"),
        ("country", "DE"),
    ],
)
def test_api_refuses_an_address_or_a_country_and_writes_nothing(api_b, client_b, field, value):
    before = counts(client_b)
    response = post(api_b, "/api/v1/destinations/", {**YANDEX_BODY, field: value})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert (body["code"], body["field"]) == ("invalid_field", field)
    assert field in body["message"]
    assert counts(client_b) == before
    assert before[:2] == (0, 0)

    destination = yandex_destination(client_b)
    before = counts(client_b)
    response = patch(
        api_b, f"/api/v1/destinations/{destination.pk}/", {"name": "Другое", field: value}
    )
    assert response.status_code == 400, response.json()
    assert (response.json()["code"], response.json()["field"]) == ("invalid_field", field)
    assert counts(client_b) == before
    destination.refresh_from_db()
    assert destination.name == "Яндекс"  # nothing of the request was applied


def test_destination_reports_its_platforms_country(api_b, client_b):
    created = post(
        api_b,
        "/api/v1/destinations/",
        {
            "name": "myTarget",
            "platform": "mytarget",
            "credentials": {"client_id": VK_CLIENT, "client_secret": VK_SECRET},
        },
    )
    assert created.status_code == 201, created.json()
    assert created.json()["country"] == "RU"
    assert "base_url" not in created.json()
    destination = Destination.objects.for_client(client_b).get()
    assert destination.recipient.country == "RU"
    schema = api_b.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    inputs = schema["components"]["schemas"]["DestinationInputRequest"]["properties"]
    assert "base_url" not in inputs
    assert "country" not in inputs


def test_admin_form_has_no_address_and_the_sync_goes_to_the_setting(
    client, agency_admin, client_b, settings
):
    """Staff cannot choose an address either: the form has no such field, and an address
    posted anyway is not stored nor used."""
    world = build_world(client_b, 110)
    with (
        YandexAudiencesStub(tokens={YANDEX_TOKEN}, quota_per_minute=None) as configured,
        YandexAudiencesStub(tokens={YANDEX_TOKEN}, quota_per_minute=None) as posted,
    ):
        point_platforms_at(settings, yandex=configured)
        client.force_login(agency_admin)
        add_url = reverse("admin:audiences_destination_add")
        page = client.get(add_url).content.decode()
        assert 'name="base_url"' not in page
        assert 'name="country"' not in page
        response = client.post(
            add_url,
            {
                "client": client_b.pk,
                "name": "Яндекс",
                "platform": "yandex_audiences",
                "hashing": "sha256",
                "is_active": "on",
                "credentials": json.dumps({"token": YANDEX_TOKEN}),
                "base_url": posted.base_url,
                "country": "DE",
            },
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        destination = Destination.objects.for_client(client_b).get()
        assert (destination.country, destination.recipient.country) == ("RU", "RU")
        run = audience_sync_now(make_audience(world, destination), source="test", http_options=FAST)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert configured.calls("upload_csv_file") == 1
        assert posted.requests == []


# --------------------------------------------------------------------------------------------
# The address comes from the settings, read when a sync runs


def test_a_sync_goes_to_the_configured_address(client_a, settings):
    world = build_world(client_a, 110)
    with (
        YandexAudiencesStub(tokens={YANDEX_TOKEN}, quota_per_minute=None) as first,
        YandexAudiencesStub(tokens={YANDEX_TOKEN}, quota_per_minute=None) as second,
    ):
        point_platforms_at(settings, yandex=first)
        audience = make_audience(world, yandex_destination(client_a))
        run = audience_sync_now(audience, source="test", http_options=FAST)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert first.calls("upload_csv_file") == 1
        assert second.requests == []

        # The deployment moves the platform: the next sync follows the setting.
        point_platforms_at(settings, yandex=second)
        first_requests = len(first.requests)
        audience_sync_now(audience, source="test", http_options=FAST)
        assert len(first.requests) == first_requests
        assert second.requests, "the second sync did not reach the configured address"


@pytest.mark.parametrize(
    ("platform", "setting", "official"),
    [
        ("yandex_audiences", "YANDEX_AUDIENCES_BASE_URL", yandex_audiences.DEFAULT_BASE_URL),
        ("vk_ads", "VK_ADS_BASE_URL", vk_ads.DEFAULT_BASE_URL),
        ("mytarget", "MYTARGET_BASE_URL", mytarget.DEFAULT_BASE_URL),
    ],
)
def test_platform_client_uses_the_setting_else_the_official_host(
    client_a, settings, platform, setting, official
):
    if platform == "yandex_audiences":
        destination = yandex_destination(client_a)
    else:
        destination = vk_destination(client_a, platform=platform)
    setattr(settings, setting, "")
    api = platform_client(destination)
    assert str(api.http.client.base_url) == official
    api.close()
    setattr(settings, setting, "http://127.0.0.1:9/proxy/")
    api = platform_client(destination)
    assert str(api.http.client.base_url) == "http://127.0.0.1:9/proxy/"
    api.close()


# --------------------------------------------------------------------------------------------
# A platform's reply reaches a client only as its parsed message

HOSTILE = "<html><body>internal-token=hunter2 DEBUG TRACE at 10.0.0.7</body></html>"


class HostileYandexStub(YandexAudiencesStub):
    """Answers every request with an HTML error page (a proxy, a misconfigured host)."""

    def __init__(self, *, status: int, **options):
        super().__init__(**options)
        self.status = status

    def handle(self, request):
        return Response(HOSTILE, status=self.status, mimetype="text/html")


class HostileVkStub(VkAdsStub):
    def handle(self, request):
        return Response(HOSTILE, status=400, mimetype="text/plain")


def _shown_to_the_client(run: SyncRun) -> str:
    run.audience.refresh_from_db()
    return "\n".join(
        [run.message, run.error, run.platform_error, run.audience.state_message, *run.steps]
    )


@pytest.mark.parametrize("status", [400, 503])
def test_a_hostile_error_body_never_reaches_the_run(
    client, client_a, portal_owner_a, settings, status
):
    world = build_world(client_a, 110)
    with HostileYandexStub(status=status) as stub:
        point_platforms_at(settings, yandex=stub)
        audience = make_audience(world, yandex_destination(client_a))
        run = audience_sync_now(audience, source="test", http_options={**FAST, "max_attempts": 2})
    assert stub.requests, "the sync never reached the stub"
    assert run.status in (SyncRun.Status.FAILED, SyncRun.Status.DEFERRED), run.status
    shown = _shown_to_the_client(run)
    assert f"HTTP {status}" in shown
    for leaked in ("hunter2", "10.0.0.7", "<html", "DEBUG TRACE"):
        assert leaked not in shown
    if status == 400:
        assert run.platform_error == "HTTP 400"
    # The portal shows the same fields.
    client.force_login(portal_owner_a)
    page = client.get(reverse("portal:audiences", args=[client_a.slug])).content.decode()
    assert "hunter2" not in page
    assert f"HTTP {status}" in page


@pytest.mark.parametrize("platform", ["vk_ads", "mytarget"])
def test_a_hostile_error_body_never_reaches_a_vk_error(client_a, settings, platform):
    with HostileVkStub() as stub:
        point_platforms_at(settings, vk=stub, mytarget=stub)
        api = platform_client(vk_destination(client_a, platform=platform), **FAST)
        with pytest.raises(PlatformError) as refused:
            api.lists_named("x")
        api.close()
    assert stub.requests
    assert (refused.value.status, refused.value.message) == (400, "HTTP 400")
