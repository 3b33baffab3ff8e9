"""Bitrix24 sends only data[FIELDS][ID]: the platform reads the contact and the deal back through
the client's inbound REST webhook (crm.contact.get, crm.deal.get), from a task sent after the
webhook's commit, against a loopback stub of the Bitrix24 REST API."""

from __future__ import annotations

import io
from decimal import Decimal
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.fernet import Fernet
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from agency.crypto import secret_decrypt
from agency.models import AuditLogEntry
from clients.models import Client, CrmDeal, Customer, Order
from clients.services import (
    Bitrix24WebhookInvalid,
    client_bitrix24_rest_set,
    client_bitrix24_rest_url,
    crm_bitrix24_fetch,
)
from integrations.bitrix24.client import Bitrix24Client, Bitrix24UrlInvalid, rest_webhook_parse
from integrations.http import PlatformError, PlatformUnavailable
from tests.stubs.bitrix24 import Bitrix24Stub

pytestmark = pytest.mark.django_db

B24_URL = "/api/v1/webhooks/bitrix24/"
FORM = "application/x-www-form-urlencoded"
TOKEN = "k3p9x2m7q1w8e4r6"  # noqa: S105 - the stub's webhook code
REST_URL = f"https://shop.bitrix24.ru/rest/7/{TOKEN}/"
FAST = {"timeout": 5, "max_attempts": 3, "max_backoff": 0.05}

CONTACT = {
    "NAME": "Ольга",
    "LAST_NAME": "Морозова",
    "EMAIL": [{"ID": "21", "VALUE": " Olga.Morozova@Example.RU ", "VALUE_TYPE": "WORK"}],
    "PHONE": [{"ID": "22", "VALUE": "8 (926) 555-12-34", "VALUE_TYPE": "MOBILE"}],
    "ADDRESS_CITY": "Тверь",
    "DATE_CREATE": "2024-03-01T09:30:00+03:00",
    "TYPE_ID": "CLIENT",
}
DEAL = {
    "TITLE": "Заказ с сайта",
    "STAGE_ID": "WON",
    "STAGE_SEMANTIC_ID": "S",
    "CATEGORY_ID": "0",
    "OPPORTUNITY": "12500.00",
    "CURRENCY_ID": "RUB",
    "CONTACT_ID": "77",
    "DATE_CREATE": "2024-03-02T10:00:00+03:00",
    "CLOSEDATE": "2024-03-05T18:00:00+03:00",
}


@pytest.fixture(autouse=True)
def _fresh_throttle_history():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def stub(settings):
    with Bitrix24Stub(
        webhooks={("7", TOKEN): {"crm"}}, contacts={77: CONTACT}, deals={555: DEAL}
    ) as server:
        settings.BITRIX24_BASE_URL = server.root_url + "/"
        yield server


@pytest.fixture
def eager_celery(monkeypatch):
    from config.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def connected(client_a):
    client_bitrix24_rest_set(client=client_a, url=REST_URL, source="test")
    client_a.refresh_from_db()
    return client_a


def id_only(client: Client, event: str, entity_id: str) -> list[tuple[str, str]]:
    return [
        ("event", event),
        ("data[FIELDS][ID]", entity_id),
        ("ts", "1717000000"),
        ("auth[domain]", "shop.bitrix24.ru"),
        ("auth[member_id]", "a1b2c3"),
        ("auth[application_token]", client.webhook_secret),
    ]


def post_hook(client: Client, pairs):
    return APIClient().post(
        f"{B24_URL}?client={client.slug}", data=urlencode(pairs), content_type=FORM
    )


# --------------------------------------------------------------------------------------------
# The webhook URL: Bitrix24 cloud portals only, stored encrypted


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6/",
        "https://shop.bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6",
        " https://My-Shop.Bitrix24.KZ/rest/1/abcdef12/ ",
        "https://acme.bitrix24.com.br/rest/12/abcdef12/",
    ],
)
def test_cloud_portal_urls_are_accepted_and_normalised(url):
    webhook = rest_webhook_parse(url)
    assert webhook.url.startswith(f"https://{webhook.host}/rest/")
    assert webhook.url.endswith("/")
    assert webhook.host.endswith(".bitrix24.ru") or "bitrix24." in webhook.host


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6/",  # not https
        "https://evil.example.com/rest/7/k3p9x2m7q1w8e4r6/",  # not Bitrix24
        "https://shop.bitrix24.ru.evil.com/rest/7/k3p9x2m7q1w8e4r6/",  # a suffix trick
        "https://bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6/",  # no portal
        "https://a.b.bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6/",  # not one portal label
        "https://127.0.0.1/rest/7/k3p9x2m7q1w8e4r6/",
        "https://localhost/rest/7/k3p9x2m7q1w8e4r6/",
        "https://shop.bitrix24.ru:8443/rest/7/k3p9x2m7q1w8e4r6/",  # a port
        "https://user:pw@shop.bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6/",
        "https://shop.bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6/crm.contact.get.json",
        "https://shop.bitrix24.ru/rest/7/k3p9x2m7q1w8e4r6/?next=http://127.0.0.1/",
        "https://shop.bitrix24.ru/other/7/k3p9x2m7q1w8e4r6/",
        "",
    ],
)
def test_a_foreign_host_or_shape_is_refused(url):
    with pytest.raises(Bitrix24UrlInvalid):
        rest_webhook_parse(url)


def test_a_foreign_host_is_refused_on_save_and_nothing_is_stored(client_a):
    with pytest.raises(Bitrix24WebhookInvalid) as refused:
        client_bitrix24_rest_set(
            client=client_a, url="https://169.254.169.254/rest/1/abcdef12/", source="test"
        )
    assert refused.value.code == "invalid_bitrix24_webhook"
    assert refused.value.status == 400
    client_a.refresh_from_db()
    assert client_a.bitrix24_rest_encrypted == ""
    assert not AuditLogEntry.objects.filter(action="client_bitrix24_webhook_set").exists()


def test_the_url_is_stored_encrypted_and_audited_without_the_token(client_a):
    client_bitrix24_rest_set(client=client_a, url=REST_URL, source="test")
    client_a.refresh_from_db()

    assert TOKEN not in client_a.bitrix24_rest_encrypted
    assert secret_decrypt(client_a.bitrix24_rest_encrypted) == {"url": REST_URL}
    assert client_bitrix24_rest_url(client_a) == REST_URL
    entry = AuditLogEntry.objects.get(action="client_bitrix24_webhook_set")
    assert entry.details == {"portal": "shop.bitrix24.ru"}
    assert TOKEN not in str(entry.details)

    client_bitrix24_rest_set(client=client_a, url="", source="test")
    client_a.refresh_from_db()
    assert client_bitrix24_rest_url(client_a) == ""


# --------------------------------------------------------------------------------------------
# The client against the stub


def test_client_reads_contact_and_deal_and_parses_bitrix24_errors(stub):
    with Bitrix24Client(webhook_url=REST_URL, **FAST) as api:
        assert api.contact_get(77)["NAME"] == "Ольга"
        assert api.deal_get("555")["STAGE_ID"] == "WON"
        with pytest.raises(PlatformError) as missing:
            api.contact_get(78)
    assert (missing.value.status, missing.value.message) == (400, "Not found")
    assert stub.methods_called() == [
        ("crm.contact.get", "77"),
        ("crm.deal.get", "555"),
        ("crm.contact.get", "78"),
    ]
    # The path carries the client's user id and token; the host is the deployment's.
    assert {r["path"] for r in stub.requests} >= {f"/rest/7/{TOKEN}/crm.contact.get.json"}

    with (
        Bitrix24Client(webhook_url=REST_URL.replace(TOKEN, "wrongtoken1"), **FAST) as api,
        pytest.raises(PlatformError) as refused,
    ):
        api.contact_get(77)
    assert refused.value.status == 401
    assert refused.value.code == "INVALID_CREDENTIALS"
    assert refused.value.message == "Invalid request credentials"


def test_query_limit_is_retried_then_reported_unavailable(stub):
    stub.fault_rate = 1.0
    stub.fault_kinds = ("503",)
    with (
        Bitrix24Client(webhook_url=REST_URL, **FAST) as api,
        pytest.raises(PlatformUnavailable) as unavailable,
    ):
        api.contact_get(77)
    assert api.http.calls == FAST["max_attempts"]
    assert "QUERY_LIMIT_EXCEEDED" in str(unavailable.value)


# --------------------------------------------------------------------------------------------
# Webhooks with only data[FIELDS][ID]


def test_contact_hook_with_only_an_id_upserts_the_fetched_contact(
    connected, stub, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_hook(connected, id_only(connected, "ONCRMCONTACTADD", "77"))

    # The CRM gets its answer at once; the REST call waits for the commit.
    assert response.status_code == 200
    assert response.json()["fetching"] == [{"entity": "contact", "id": "77"}]
    assert response.json()["skipped"] == []
    assert stub.methods_called() == []
    assert len(callbacks) == 1

    callbacks[0]()  # the commit: the task runs (eagerly here)

    assert stub.methods_called() == [("crm.contact.get", "77")]
    customer = Customer.objects.for_client(connected).get(external_id="b24-77")
    assert customer.first_name == "Ольга"
    assert customer.last_name == "Морозова"
    assert customer.city == "Тверь"
    assert customer.email == "olga.morozova@example.ru"
    assert customer.phone == "+79265551234"
    assert customer.source == "bitrix24"
    events = list(
        AuditLogEntry.objects.filter(action="crm_webhook", client_id=connected.pk)
        .order_by("pk")
        .values_list("details", flat=True)
    )
    assert [e["fetching"] for e in events] == [1, 0]
    assert events[1]["event"] == "ONCRMCONTACTADD crm.contact.get"
    assert events[1]["customers"]["created"] == 1


def test_deal_hook_with_only_an_id_fetches_the_deal_and_its_unknown_contact(
    connected, stub, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_hook(connected, id_only(connected, "ONCRMDEALUPDATE", "555"))

    assert response.status_code == 200
    assert response.json()["fetching"] == [{"entity": "deal", "id": "555"}]
    assert stub.methods_called() == [("crm.deal.get", "555"), ("crm.contact.get", "77")]
    order = Order.objects.for_client(connected).get(external_id="b24-555")
    assert order.amount == Decimal("12500.00")
    assert order.status == Order.Status.PAID
    assert order.customer.external_id == "b24-77"
    deal = CrmDeal.objects.for_client(connected).get(crm="bitrix24", deal_id="555")
    assert deal.status == CrmDeal.Status.WON

    # A later deal hook does not read the contact again: it is a customer now.
    with django_capture_on_commit_callbacks(execute=True):
        post_hook(connected, id_only(connected, "ONCRMDEALUPDATE", "555"))
    assert stub.methods_called()[2:] == [("crm.deal.get", "555")]
    assert Order.objects.for_client(connected).count() == 1


def test_an_entity_bitrix24_does_not_have_is_skipped_with_its_words(connected, stub):
    reply = crm_bitrix24_fetch(client=connected, entity="contact", entity_id="404")

    assert reply["customers"]["created"] == 0
    (skip,) = reply["skipped"]
    assert (skip["entity"], skip["id"]) == ("contact", "404")
    assert "Not found" in skip["reason"]
    assert "shop.bitrix24.ru" in skip["reason"]
    assert not Customer.objects.for_client(connected).exists()
    # No one waits for a background fetch's reply: the audit log keeps the reason.
    entry = AuditLogEntry.objects.get(action="crm_webhook", client_id=connected.pk)
    assert "Not found" in entry.details["skipped_reasons"][0]


def test_revoked_webhook_credentials_are_reported_not_retried(connected, stub):
    stub.webhooks.clear()
    reply = crm_bitrix24_fetch(client=connected, entity="deal", entity_id="555", http_options=FAST)
    assert "Invalid request credentials" in reply["skipped"][0]["reason"]
    assert len(stub.requests) == 1


def test_without_a_rest_webhook_an_id_only_hook_is_skipped_and_says_how_to_connect(
    client_a, stub, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_hook(client_a, id_only(client_a, "ONCRMCONTACTADD", "77"))

    assert response.status_code == 200
    body = response.json()
    assert body["fetching"] == []
    assert "только ID" in body["skipped"][0]["reason"]
    assert "входящий вебхук" in body["skipped"][0]["reason"]
    assert callbacks == []
    assert stub.requests == []
    assert not Customer.objects.for_client(client_a).exists()


def test_the_fetch_uses_this_clients_webhook_only(connected, client_b, stub):
    """Another client's hook naming the same id reads nothing (client_b has no REST webhook)."""
    reply = crm_bitrix24_fetch(client=client_b, entity="contact", entity_id="77")
    assert "только ID" in reply["skipped"][0]["reason"]
    assert stub.requests == []
    assert not Customer.objects.for_client(client_b).exists()


# --------------------------------------------------------------------------------------------
# The admin: write-only, Bitrix24 hosts only, agency admins only


def change_form_data(response) -> dict:
    """The change form's current values, as the browser would send them back."""
    form = response.context["adminform"].form
    data: dict = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None or value is False:
            continue
        if isinstance(value, list | tuple) or hasattr(value, "all"):
            items = value.all() if hasattr(value, "all") else value
            data[name] = [getattr(v, "pk", v) for v in items]
        elif value is True:
            data[name] = "on"
        else:
            data[name] = getattr(value, "pk", value)
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management.initial.get(name, 0)
    return data


def test_admin_stores_the_webhook_write_only_and_refuses_a_foreign_host(
    client, agency_admin, client_a
):
    client.force_login(agency_admin)
    url = reverse("admin:clients_client_change", args=[client_a.pk])
    page = client.get(url)
    data = change_form_data(page)

    refused = client.post(url, {**data, "bitrix24_rest_url": "https://10.0.0.5/rest/1/abcdef12/"})
    assert refused.status_code == 200  # the form again, with the error
    assert "облачные порталы Битрикс24" in refused.content.decode()
    client_a.refresh_from_db()
    assert client_a.bitrix24_rest_encrypted == ""

    saved = client.post(url, {**data, "bitrix24_rest_url": REST_URL})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    client_a.refresh_from_db()
    assert client_bitrix24_rest_url(client_a) == REST_URL

    shown = client.get(url).content.decode()
    assert "shop.bitrix24.ru" in shown
    assert TOKEN not in shown  # write-only

    # Saving the form without a new value keeps it.
    client.post(url, change_form_data(client.get(url)))
    client_a.refresh_from_db()
    assert client_bitrix24_rest_url(client_a) == REST_URL


def test_account_manager_cannot_set_the_webhook(client, account_manager, client_a):
    client.force_login(account_manager)
    url = reverse("admin:clients_client_change", args=[client_a.pk])
    page = client.get(url)
    assert 'name="bitrix24_rest_url"' not in page.content.decode()

    client.post(url, {**change_form_data(page), "bitrix24_rest_url": REST_URL})

    client_a.refresh_from_db()
    assert client_a.bitrix24_rest_encrypted == ""


def test_key_rotation_re_encrypts_the_webhook(settings, connected):
    new_key = Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [new_key, *settings.CREDENTIALS_KEYS]

    out = io.StringIO()
    call_command("rotate_credentials_key", stdout=out)

    assert "вебхуков Битрикс24 клиентов: 1" in out.getvalue()
    settings.CREDENTIALS_KEYS = [new_key]  # the old key removed
    connected.refresh_from_db()
    assert client_bitrix24_rest_url(connected) == REST_URL


def test_the_stub_refuses_what_bitrix24_refuses(stub):
    base = f"{stub.root_url}/rest/7/{TOKEN}/"
    with httpx.Client(timeout=5) as http:
        by_query = http.get(base + "crm.contact.get", params={"id": "77"})
        by_form = http.post(base + "crm.deal.get.json", data={"id": "555"})
        no_id = http.post(base + "crm.contact.get.json", json={})
        bad_id = http.get(base + "crm.contact.get.json", params={"id": "x"})
        unknown = http.post(base + "crm.contact.delete.json", json={"id": 77})
        wrong = http.get(f"{stub.root_url}/rest/8/{TOKEN}/crm.contact.get.json?id=77")
    assert by_query.json()["result"]["NAME"] == "Ольга"
    assert by_form.json()["result"]["ID"] == "555"
    assert set(by_form.json()) == {"result", "time"}
    assert (no_id.status_code, no_id.json()) == (
        400,
        {"error": "", "error_description": "ID is not defined or invalid."},
    )
    assert bad_id.status_code == 400
    assert (unknown.status_code, unknown.json()["error"]) == (404, "ERROR_METHOD_NOT_FOUND")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "INVALID_CREDENTIALS")
