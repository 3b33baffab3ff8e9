"""The consent API (grant/withdraw, one or a batch; a customer's history) and the banner's
public endpoint (site key, origin, CORS preflight, rate limit, evidence)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client as HttpClient
from django.utils import timezone

from agency.models import AuditLogEntry
from clients.models import Customer
from clients.services import api_key_create
from consent.models import ConsentRecord, ConsentSite
from consent.selectors import consent_is_granted
from consent.services import consent_log_verify, consent_text_create, consent_text_publish

from .conftest import TEXT_PARTS

pytestmark = pytest.mark.django_db

URL = "/api/v1/consents/"


def post(api, body, partial: bool = False):
    url = URL + ("?partial=true" if partial else "")
    return api.post(url, data=json.dumps(body), content_type="application/json")


def records(client):
    return ConsentRecord.objects.for_client(client)


def audits(client):
    return AuditLogEntry.objects.filter(client=client, action="consents_recorded")


EVIDENCE = {
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126",
    "url": "https://shop.example.ru/checkout",
    "form_id": "checkout-email-optin",
}


# ---------------------------------------------------------------------------------------------
# POST /api/v1/consents/: one object


def test_grant_one_records_proof(api_a, client_a, texts_a, customers_a):
    response = post(
        api_a,
        {
            "customer_external_id": "p0",
            "purpose": "email_marketing",
            "action": "granted",
            "at": "2025-03-01T12:00:00+03:00",
            "source": "web_form",
            "text_version": 1,
            "evidence": EVIDENCE,
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["purpose"] == "email_marketing"
    assert body["action"] == "granted"
    assert body["source"] == "web_form"
    assert body["text_version"] == 1
    assert body["customer_external_id"] == "p0"
    assert body["evidence"] == EVIDENCE
    record = records(client_a).get()
    assert record.pk == body["id"]
    assert record.customer == customers_a[0]
    assert record.text == texts_a["email_marketing"]
    assert record.at.isoformat() == "2025-03-01T09:00:00+00:00"
    assert (record.ip, record.form_id) == ("203.0.113.7", "checkout-email-optin")
    assert consent_is_granted(customer=customers_a[0], purpose_code="email_marketing")
    assert audits(client_a).count() == 1
    assert consent_log_verify(client=client_a).ok


def test_withdraw_after_grant_and_defaults(api_a, client_a, texts_a, customers_a):
    grant = {"customer_external_id": "p1", "purpose": "sms_marketing", "action": "granted"}
    assert post(api_a, grant).status_code == 201
    response = post(api_a, {**grant, "action": "withdrawn"})
    assert response.status_code == 201, response.content
    withdrawal = records(client_a).get(pk=response.json()["id"])
    # Defaults: source api, the latest published text, now, no evidence.
    assert withdrawal.source == "api"
    assert withdrawal.text == texts_a["sms_marketing"]
    assert abs(withdrawal.at - timezone.now()) < timedelta(minutes=1)
    assert withdrawal.ip is None
    assert not consent_is_granted(customer=customers_a[1], purpose_code="sms_marketing")
    assert records(client_a).count() == 2  # a withdrawal is a new record, never an update


def test_anonymous_subject_and_naive_time_in_client_zone(api_a, client_a, texts_a):
    response = post(
        api_a,
        {
            "subject_id": "yclid-2b7c9e",
            "purpose": "analytics_cookies",
            "action": "granted",
            "at": "2025-03-01T12:00:00",
        },
    )
    assert response.status_code == 201, response.content
    record = records(client_a).get()
    assert (record.customer_id, record.subject_id) == (None, "yclid-2b7c9e")
    assert record.at.astimezone(client_a.tzinfo).hour == 12


@pytest.mark.parametrize(
    ("row", "code", "field"),
    [
        (
            {"customer_external_id": "p0", "purpose": "telepathy", "action": "granted"},
            "unknown_purpose",
            "purpose",
        ),
        (
            {"customer_external_id": "nobody", "purpose": "email_marketing", "action": "granted"},
            "unknown_customer",
            "customer_external_id",
        ),
        ({"purpose": "email_marketing", "action": "granted"}, "missing_subject", ""),
        (
            {"customer_external_id": "p0", "purpose": "email_marketing", "action": "maybe"},
            "invalid_action",
            "action",
        ),
        (
            {
                "customer_external_id": "p0",
                "purpose": "email_marketing",
                "action": "granted",
                "text_version": 7,
            },
            "unknown_text_version",
            "text_version",
        ),
        (
            {
                "customer_external_id": "p0",
                "purpose": "email_marketing",
                "action": "granted",
                "at": "2999-01-01T00:00:00Z",
            },
            "future_time",
            "at",
        ),
        (
            {
                "customer_external_id": "p0",
                "purpose": "email_marketing",
                "action": "granted",
                "evidence": {"ip": "300.1.1.1"},
            },
            "invalid_ip",
            "evidence.ip",
        ),
        (
            {
                "customer_external_id": "p0",
                "purpose": "email_marketing",
                "action": "granted",
                "purpose_code": "x",
            },
            "unknown_field",
            "purpose_code",
        ),
    ],
)
def test_one_bad_object_is_400_with_its_code(
    api_a, client_a, texts_a, customers_a, row, code, field
):
    response = post(api_a, row)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code
    if field:
        assert body["field"] == field
    assert records(client_a).count() == 0


def test_grant_without_a_published_text_is_refused(api_b, client_b):
    # Client B has a customer but has published no consent text.
    from clients.ingest import ingest_records

    ingest_records(client=client_b, kind="customers", records=[{"external_id": "b1"}])
    grant = {"customer_external_id": "b1", "purpose": "email_marketing", "action": "granted"}
    response = post(api_b, grant)
    assert response.status_code == 400
    assert response.json()["code"] == "no_published_text"
    # A withdrawal needs no text: it is always allowed.
    assert post(api_b, {**grant, "action": "withdrawn"}).status_code == 201
    assert records(client_b).count() == 1


def test_read_only_key_cannot_record(client_a, texts_a, customers_a, make_api):
    _key, raw = api_key_create(client=client_a, name="ro", scopes=["read"])
    response = post(
        make_api(raw),
        {"customer_external_id": "p0", "purpose": "email_marketing", "action": "granted"},
    )
    assert response.status_code == 403
    assert records(client_a).count() == 0


def test_no_key_is_401(client_a, texts_a, customers_a):
    from rest_framework.test import APIClient

    response = post(
        APIClient(), {"customer_external_id": "p0", "purpose": "email_marketing", "action": "x"}
    )
    assert response.status_code in (401, 403)
    assert records(client_a).count() == 0


# ---------------------------------------------------------------------------------------------
# POST /api/v1/consents/: a batch


def _mixed_batch():
    return [
        {"customer_external_id": "p0", "purpose": "email_marketing", "action": "granted"},
        {"customer_external_id": "p1", "purpose": "telepathy", "action": "granted"},
        {"customer_external_id": "ghost", "purpose": "email_marketing", "action": "granted"},
        {"purpose": "sms_marketing", "action": "withdrawn"},
        {"customer_external_id": "p2", "purpose": "push_marketing", "action": "withdrawn"},
        "not an object",
    ]


def test_batch_all_or_nothing_writes_nothing(api_a, client_a, texts_a, customers_a):
    response = post(api_a, _mixed_batch())
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "invalid_rows"
    assert (body["committed"], body["total"], body["created"], body["rejected"]) == (
        False,
        6,
        0,
        4,
    )
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (1, "unknown_purpose"),
        (2, "unknown_customer"),
        (3, "missing_subject"),
        (5, "invalid_row"),
    ]
    assert body["errors"][1] == {
        "index": 2,
        "field": "customer_external_id",
        "code": "unknown_customer",
        "message": "Покупатель с таким внешним id не найден.",
        "value": "ghost",
    }
    assert records(client_a).count() == 0
    assert audits(client_a).get().details["committed"] is False


def test_batch_partial_writes_the_good_rows(api_a, client_a, texts_a, customers_a):
    response = post(api_a, _mixed_batch(), partial=True)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["committed"], body["total"], body["created"], body["rejected"]) == (
        True,
        6,
        2,
        4,
    )
    assert [r["index"] for r in body["records"]] == [0, 4]
    assert {e["index"] for e in body["errors"]} == {1, 2, 3, 5}
    assert records(client_a).count() == 2
    assert consent_is_granted(customer=customers_a[0], purpose_code="email_marketing")
    assert audits(client_a).get().details == {
        "mode": "bulk",
        "partial": True,
        "committed": True,
        "total": 6,
        "created": 2,
        "rejected": 4,
    }


GOOD_ROWS = {
    "customers": {"external_id": "n1", "email": "n1@example.ru"},
    "orders": {
        "external_id": "o1",
        "customer_external_id": "p0",
        "placed_at": "2025-03-01T12:00:00+03:00",
        "amount": "10",
    },
    "events": {"customer_external_id": "p0", "type": "visit", "occurred_at": "2025-03-01"},
    "consents": {"customer_external_id": "p0", "purpose": "email_marketing", "action": "granted"},
}


@pytest.mark.parametrize("partial", [False, True])
def test_the_four_bulk_kinds_answer_one_row_error_shape(
    api_a, client_a, texts_a, customers_a, partial
):
    """Customers, orders, events and consents: the same envelope (a JSON array, ?partial), the
    same reply, and for the same faults the same row errors (clients.bulk)."""
    replies = {}
    for kind, good in GOOD_ROWS.items():
        url = URL if kind == "consents" else f"/api/v1/{kind}/bulk/"
        batch = [good, {**good, "nickname": "Ник"}, "x", {**good, "unknown": None}]
        response = api_a.post(
            url + ("?partial=true" if partial else ""),
            data=json.dumps(batch),
            content_type="application/json",
        )
        assert response.status_code == (200 if partial else 422), (kind, response.content)
        replies[kind] = response.json()
    for kind, body in replies.items():
        assert body["errors"] == [
            {
                "index": 1,
                "field": "nickname",
                "code": "unknown_field",
                "message": "неизвестное поле",
                "value": "",
            },
            {
                "index": 2,
                "field": "",
                "code": "invalid_row",
                "message": "запись — не JSON-объект",
                "value": "x",
            },
            {
                "index": 3,
                "field": "unknown",
                "code": "unknown_field",
                "message": "неизвестное поле",
                "value": "",
            },
        ], kind
        assert (body["committed"], body["total"], body["rejected"]) == (partial, 4, 3), kind
        assert body["created"] == (1 if partial else 0), kind
        if not partial:
            assert body["code"] == "invalid_rows", kind
            assert body["message"].startswith("Отклонено записей: 3; ничего не записано."), kind
    assert records(client_a).count() == (1 if partial else 0)
    assert Customer.objects.for_client(client_a).filter(external_id="n1").exists() == partial


def test_batch_refusal_by_the_service_rolls_back_the_whole_batch(
    api_a, client_a, texts_a, customers_a
):
    rows = [
        {"customer_external_id": f"p{i}", "purpose": "email_marketing", "action": "granted"}
        for i in range(5)
    ]
    # Two rows ask for an unpublished version: a draft of the same purpose.
    draft = consent_text_create(
        client=client_a, purpose_code="email_marketing", title="v2", **TEXT_PARTS
    )
    rows[3]["text_version"] = draft.version
    response = post(api_a, rows)
    assert response.status_code == 422
    assert [(e["index"], e["code"]) for e in response.json()["errors"]] == [
        (3, "unknown_text_version")
    ]
    assert records(client_a).count() == 0
    consent_text_publish(text=draft)
    response = post(api_a, rows)
    assert response.status_code == 200, response.content
    assert response.json()["created"] == 5
    assert records(client_a).get(customer=customers_a[3]).text == draft
    assert records(client_a).get(customer=customers_a[0]).text == draft  # the latest published
    assert consent_log_verify(client=client_a).ok


def test_batch_grant_withdraw_grant_resolves_by_time(api_a, client_a, texts_a, customers_a):
    base = {"customer_external_id": "p0", "purpose": "email_marketing"}
    rows = [
        {**base, "action": "granted", "at": "2025-01-01T10:00:00Z"},
        {**base, "action": "granted", "at": "2025-01-03T10:00:00Z"},
        {**base, "action": "withdrawn", "at": "2025-01-02T10:00:00Z"},
    ]
    assert post(api_a, rows).json()["created"] == 3
    assert consent_is_granted(customer=customers_a[0], purpose_code="email_marketing")


def test_batch_limit(api_a, client_a, texts_a, customers_a, settings):
    settings.BULK_MAX_RECORDS = 3
    row = {"customer_external_id": "p0", "purpose": "email_marketing", "action": "granted"}
    response = post(api_a, [row] * 4)
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_records"
    assert records(client_a).count() == 0
    assert post(api_a, [row] * 3).status_code == 200


def test_body_must_be_an_object_or_an_array(api_a, client_a):
    response = post(api_a, "granted")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"


# ---------------------------------------------------------------------------------------------
# GET /api/v1/customers/{id}/consents/


def test_customer_history_and_state(api_a, client_a, texts_a, customers_a):
    person = customers_a[0]
    base = {"customer_external_id": "p0", "purpose": "email_marketing"}
    post(api_a, {**base, "action": "granted", "at": "2025-01-01T10:00:00Z", "evidence": EVIDENCE})
    withdrawn = post(
        api_a, {**base, "action": "withdrawn", "at": "2025-02-01T10:00:00Z", "source": "portal"}
    ).json()
    post(api_a, {**base, "purpose": "sms_marketing", "action": "granted"})
    post(api_a, {"customer_external_id": "p1", "purpose": "push_marketing", "action": "granted"})

    response = api_a.get(f"/api/v1/customers/{person.pk}/consents/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["customer"] == {"id": person.pk, "external_id": "p0"}
    email = body["state"]["email_marketing"]
    assert (email["granted"], email["record_id"], email["source"], email["text_version"]) == (
        False,
        withdrawn["id"],
        "portal",
        1,
    )
    assert body["state"]["sms_marketing"]["granted"] is True
    assert body["state"]["push_marketing"]["granted"] is False  # that was p1
    assert body["state"]["profiling"] == {
        "purpose": "profiling",
        "name": body["state"]["profiling"]["name"],
        "granted": False,
        "record_id": None,
        "at": None,
        "source": None,
        "text_version": None,
    }
    history = body["history"]
    assert [(h["purpose"], h["action"]) for h in history] == [
        ("sms_marketing", "granted"),
        ("email_marketing", "withdrawn"),
        ("email_marketing", "granted"),
    ]
    assert history[2]["evidence"] == EVIDENCE
    assert history[2]["text_version"] == 1
    assert history[2]["at"].startswith("2025-01-01T13:00:00")  # shown in Moscow time


def test_history_includes_linked_cookie_subject(api_a, client_a, texts_a, customers_a):
    from consent.services import consent_subject_link

    post(api_a, {"subject_id": "cookie-abc123", "purpose": "ad_cookies", "action": "granted"})
    consent_subject_link(client=client_a, subject_id="cookie-abc123", customer=customers_a[2])
    body = api_a.get(f"/api/v1/customers/{customers_a[2].pk}/consents/").json()
    assert body["state"]["ad_cookies"]["granted"] is True
    assert body["history"][0]["subject_id"] == "cookie-abc123"


# ---------------------------------------------------------------------------------------------
# Another client's key


def test_other_clients_key_gets_404_for_the_customer(api_a, api_b, client_a, texts_a, customers_a):
    post(api_a, {"customer_external_id": "p0", "purpose": "email_marketing", "action": "granted"})
    response = api_b.get(f"/api/v1/customers/{customers_a[0].pk}/consents/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert "p0" not in response.content.decode()
    missing = api_b.get("/api/v1/customers/999999999/consents/")
    assert missing.status_code == 404
    assert missing.json() == response.json()  # the same answer for foreign and missing


def test_other_clients_key_cannot_touch_client_as_customers(
    api_b, client_a, client_b, texts_a, customers_a
):
    grant = {"customer_external_id": "p0", "purpose": "email_marketing", "action": "withdrawn"}
    response = post(api_b, grant)
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_customer"
    response = post(api_b, [grant, {**grant, "customer_external_id": "p1"}], partial=True)
    assert response.json()["created"] == 0
    assert {e["code"] for e in response.json()["errors"]} == {"unknown_customer"}
    assert records(client_a).count() == 0
    assert records(client_b).count() == 0
    assert Customer.objects.for_client(client_b).count() == 0


def test_session_user_of_the_client_reads_history(client, portal_owner_a, client_a, customers_a):
    client.force_login(portal_owner_a)
    response = client.get(f"/api/v1/customers/{customers_a[0].pk}/consents/")
    assert response.status_code == 200
    assert response.json()["customer"]["external_id"] == "p0"


# ---------------------------------------------------------------------------------------------
# The banner's public endpoint

SHOP = "https://shop.example.ru"
SUBJECT = "3f2a9c1e-7b44-4d6a-9c0e-2a1b3c4d5e6f"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # the banner's rate limit lives in the cache
    yield
    cache.clear()


@pytest.fixture
def site_a(client_a):
    return ConsentSite.objects.create(
        client=client_a, name="Альфа shop", allowed_origins=[SHOP, "http://localhost:8000/"]
    )


@pytest.fixture
def browser():
    return HttpClient(HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/126 test")


def banner_post(http, site_key, body, origin=SHOP, **extra):
    headers = {"HTTP_ORIGIN": origin} if origin else {}
    return http.post(
        f"/consent/api/banner/?site={site_key}",
        data=json.dumps(body),
        content_type="application/json",
        **headers,
        **extra,
    )


def choice(analytics: bool, ads: bool, **extra):
    return {
        "subject_id": SUBJECT,
        "choices": {"analytics_cookies": analytics, "ad_cookies": ads},
        "url": f"{SHOP}/catalog?utm_source=test",
        **extra,
    }


def test_banner_script_carries_config_and_texts(browser, site_a, texts_a, settings):
    settings.PUBLIC_BASE_URL = "https://cvm.agency.ru"
    response = browser.get(f"/consent/banner.js?site={site_a.site_key}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    source = response.content.decode()
    head, _sep, rest = source.partition(";\n")
    config = json.loads(head.removeprefix("window.CVM_CONSENT_CONFIG = "))
    assert config["endpoint"] == (
        f"https://cvm.agency.ru/consent/api/banner/?site={site_a.site_key}"
    )
    assert config["cookieName"] == "cvm_consent"
    assert config["cookieDays"] == 180
    assert [c["code"] for c in config["categories"]] == ["analytics_cookies", "ad_cookies"]
    analytics = config["categories"][0]
    assert analytics["textVersion"] == 1
    assert analytics["operatorName"] == TEXT_PARTS["operator_name"]
    assert analytics["withdrawal"] == TEXT_PARTS["withdrawal"]
    assert config["operator"]["name"] == "ООО «Альфа Маркет»"
    assert "window.consent = api" in rest
    # No external resources: the script names no other host.
    assert "http://" not in rest
    assert "https://" not in rest


def test_banner_script_escapes_texts(browser, site_a, client_a):
    text = consent_text_create(
        client=client_a,
        purpose_code="analytics_cookies",
        title="</script><script>alert(1)</script>",
        **TEXT_PARTS,
    )
    consent_text_publish(text=text)
    source = browser.get(f"/consent/banner.js?site={site_a.site_key}").content.decode()
    assert "</script>" not in source.partition(";\n")[0]
    assert "\\u003c/script\\u003e" in source


def test_banner_script_unknown_site(browser, db):
    response = browser.get("/consent/banner.js?site=nope")
    assert response.status_code == 404
    assert "CVM_CONSENT_CONFIG" not in response.content.decode()


def test_banner_accept_records_grants_with_evidence(browser, client_a, site_a, texts_a):
    response = banner_post(browser, site_a.site_key, choice(True, True), REMOTE_ADDR="198.51.100.4")
    assert response.status_code == 201, response.content
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in response["Vary"]
    assert response.json() == {
        "subject_id": SUBJECT,
        "choices": {"analytics_cookies": True, "ad_cookies": True},
        "records": 2,
    }
    saved = list(records(client_a).order_by("id"))
    assert [(r.purpose.code, r.action) for r in saved] == [
        ("analytics_cookies", "granted"),
        ("ad_cookies", "granted"),
    ]
    for record in saved:
        assert record.source == "cookie_banner"
        assert record.subject_id == SUBJECT
        assert record.customer_id is None
        assert record.ip == "198.51.100.4"
        assert record.user_agent == "Mozilla/5.0 (X11; Linux x86_64) Chrome/126 test"
        assert record.url == f"{SHOP}/catalog?utm_source=test"
        assert record.text == texts_a[record.purpose.code]
        assert record.details == {"site": site_a.pk, "origin": SHOP}
    assert consent_log_verify(client=client_a).ok


def test_banner_reject_records_denials_and_no_grant(browser, client_a, site_a, texts_a):
    response = banner_post(browser, site_a.site_key, choice(False, False))
    assert response.status_code == 201, response.content
    saved = records(client_a)
    assert sorted(saved.values_list("purpose__code", "action")) == [
        ("ad_cookies", "withdrawn"),
        ("analytics_cookies", "withdrawn"),
    ]
    assert not saved.filter(action="granted").exists()


def test_banner_keeps_the_text_version_shown(browser, client_a, site_a, texts_a):
    newer = consent_text_create(
        client=client_a, purpose_code="analytics_cookies", title="v2", **TEXT_PARTS
    )
    consent_text_publish(text=newer)
    body = choice(True, False, texts={"analytics_cookies": 1, "ad_cookies": 1})
    assert banner_post(browser, site_a.site_key, body).status_code == 201
    shown = records(client_a).get(purpose__code="analytics_cookies")
    assert shown.text == texts_a["analytics_cookies"]  # v1, the one on the visitor's screen
    bad = choice(True, False, texts={"analytics_cookies": 9})
    response = banner_post(browser, site_a.site_key, bad)
    assert response.status_code == 400
    assert "texts.analytics_cookies" in response.json()["errors"]


def test_banner_bad_site_key(browser, client_a, site_a, texts_a):
    response = banner_post(browser, "no-such-key", choice(True, True))
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_site_key"
    assert "Access-Control-Allow-Origin" not in response
    site_a.is_active = False
    site_a.save(update_fields=["is_active"])
    response = banner_post(browser, site_a.site_key, choice(True, True))
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_site_key"
    assert records(client_a).count() == 0


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.com", "http://shop.example.ru", "https://shop.example.ru.evil.ru", ""],
)
def test_banner_wrong_origin_is_403_and_writes_nothing(browser, client_a, site_a, texts_a, origin):
    response = banner_post(browser, site_a.site_key, choice(True, True), origin=origin)
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response
    assert records(client_a).count() == 0


def test_banner_origin_compared_normalised(browser, client_a, site_a, texts_a):
    body = choice(False, False, url="http://localhost:8000/demo")
    response = banner_post(browser, site_a.site_key, body, origin="http://LOCALHOST:8000")
    assert response.status_code == 201, response.content
    response = banner_post(browser, site_a.site_key, choice(False, False), origin=f"{SHOP}:443")
    assert response.status_code == 201, response.content


def test_banner_preflight(browser, site_a):
    preflight = {
        "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
        "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "content-type",
    }
    url = f"/consent/api/banner/?site={site_a.site_key}"
    allowed = browser.options(url, HTTP_ORIGIN=SHOP, **preflight)
    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    assert allowed["Access-Control-Allow-Headers"].lower() == "content-type"
    refused = browser.options(url, HTTP_ORIGIN="https://evil.example.com", **preflight)
    assert refused.status_code == 403
    assert refused.json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused
    unknown = browser.options("/consent/api/banner/?site=nope", HTTP_ORIGIN=SHOP, **preflight)
    assert unknown.status_code == 403
    assert "Access-Control-Allow-Origin" not in unknown


def test_banner_rate_limit_per_ip_and_site(browser, client_a, site_a, texts_a, settings):
    settings.CONSENT_BANNER_RATE = "3/minute"
    for _ in range(3):
        assert banner_post(browser, site_a.site_key, choice(True, False)).status_code == 201
    limited = banner_post(browser, site_a.site_key, choice(True, False))
    assert limited.status_code == 429
    assert limited.json()["code"] == "throttled"
    assert limited["Access-Control-Allow-Origin"] == SHOP  # so the script can read it
    # Another visitor's IP is not affected; preflights are not counted.
    other = banner_post(browser, site_a.site_key, choice(True, False), REMOTE_ADDR="192.0.2.9")
    assert other.status_code == 201
    url = f"/consent/api/banner/?site={site_a.site_key}"
    assert browser.options(url, HTTP_ORIGIN=SHOP).status_code == 204
    assert records(client_a).count() == 4 * 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (choice(True, True, subject_id="x"), "subject_id"),
        ({**choice(True, True), "choices": {"email_marketing": True}}, "choices.email_marketing"),
        (
            {**choice(True, True), "choices": {"analytics_cookies": "yes"}},
            "choices.analytics_cookies",
        ),
        ({**choice(True, True), "choices": {}}, "choices"),
        (choice(True, True, url="https://evil.example.com/"), "url"),
    ],
)
def test_banner_bad_body_is_400_and_writes_nothing(browser, client_a, site_a, texts_a, body, field):
    response = banner_post(browser, site_a.site_key, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"
    assert field in response.json()["errors"]
    assert records(client_a).count() == 0


def test_banner_grant_without_text_writes_nothing(browser, client_b, db):
    site = ConsentSite.objects.create(client=client_b, name="b", allowed_origins=[SHOP])
    response = banner_post(browser, site.site_key, choice(True, False))
    assert response.status_code == 422
    assert response.json()["code"] == "no_published_text"
    assert records(client_b).count() == 0  # not even the ad_cookies denial: all or nothing


def test_banner_needs_no_csrf_token_or_session(client_a, site_a, texts_a):
    strict = HttpClient(enforce_csrf_checks=True)
    response = banner_post(strict, site_a.site_key, choice(False, True))
    assert response.status_code == 201, response.content


def test_banner_body_limit(browser, client_a, site_a, texts_a):
    body = choice(True, True, padding="x" * 10_000)
    response = banner_post(browser, site_a.site_key, body)
    assert response.status_code == 413
    assert records(client_a).count() == 0


# ---------------------------------------------------------------------------------------------
# The demo page


def test_demo_page_includes_the_banner(browser, site_a, texts_a):
    response = browser.get(f"/consent/demo/?site={site_a.site_key}")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'src="/consent/banner.js?site={site_a.site_key}"' in page
    assert 'data-consent="analytics_cookies"' in page
    assert "Яндекс Метрика" in page
    # The test client's origin (http://testserver) is not allowed: the page says so.
    assert 'id="origin-warning"' in page


def test_demo_without_key(browser, site_a, settings):
    settings.DEBUG = False
    assert browser.get("/consent/demo/").status_code == 404
    assert browser.get("/consent/demo/?site=nope").status_code == 404
    settings.DEBUG = True
    response = browser.get("/consent/demo/")
    assert response.status_code == 200
    assert site_a.site_key in response.content.decode()
