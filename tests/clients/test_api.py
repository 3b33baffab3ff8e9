"""The customer-base API: bulk upserts, reads, filters, errors."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from clients.models import Customer, Event, Order
from clients.selectors import customers_search
from clients.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def post_bulk(api, kind: str, records, partial: bool = False):
    url = f"/api/v1/{kind}/bulk/" + ("?partial=true" if partial else "")
    return api.post(url, data=json.dumps(records), content_type="application/json")


CUSTOMERS = [
    {
        "external_id": "c1",
        "email": " Ivan@Mail.RU ",
        "phone": "8 (916) 123-45-67",
        "first_name": "Иван",
    },
    {
        "external_id": "c2",
        "email": "olga@example.ru",
        "phone": "+7 903 000-11-22",
        "city": "Казань",
    },
    {"external_id": "c3", "phone": "89161112233", "attributes": {"loyalty": "gold"}},
]


def test_bulk_customers_creates_normalised_rows(api_a, client_a):
    response = post_bulk(api_a, "customers", CUSTOMERS)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "committed": True,
        "total": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "errors": [],
    }
    c1 = Customer.objects.for_client(client_a).get(external_id="c1")
    assert c1.email == "ivan@mail.ru"
    assert c1.phone == "+79161234567"
    assert c1.first_name == "Иван"
    c3 = Customer.objects.for_client(client_a).get(external_id="c3")
    assert c3.attributes == {"loyalty": "gold"}


def test_bulk_replay_is_idempotent(api_a, client_a):
    assert post_bulk(api_a, "customers", CUSTOMERS).json()["created"] == 3
    before = {c.external_id: c.updated_at for c in Customer.objects.for_client(client_a).all()}
    replay = post_bulk(api_a, "customers", CUSTOMERS).json()
    # A replay changes nothing and says so (it used to report "updated 3").
    assert (replay["created"], replay["updated"], replay["unchanged"]) == (0, 0, 3)
    assert replay["rejected"] == 0
    after = {c.external_id: c.updated_at for c in Customer.objects.for_client(client_a).all()}
    assert after == before  # nothing changed, so nothing was rewritten
    assert Customer.objects.for_client(client_a).count() == 3


def test_bulk_update_changes_only_given_fields(api_a, client_a):
    post_bulk(api_a, "customers", CUSTOMERS)
    body = post_bulk(api_a, "customers", [{"external_id": "c1", "city": "Москва"}]).json()
    assert (body["created"], body["updated"]) == (0, 1)
    c1 = Customer.objects.for_client(client_a).get(external_id="c1")
    assert c1.city == "Москва"
    assert c1.email == "ivan@mail.ru"  # absent field left alone
    post_bulk(api_a, "customers", [{"external_id": "c1", "email": ""}])
    c1.refresh_from_db()
    assert c1.email == ""  # an empty string clears


def test_all_or_nothing_writes_nothing_on_one_bad_row(api_a, client_a):
    records = [*CUSTOMERS, {"external_id": "c4", "email": "not-an-email"}]
    response = post_bulk(api_a, "customers", records)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_rows"
    assert body["committed"] is False
    assert body["rejected"] == 1
    assert body["errors"][0]["index"] == 3
    assert body["errors"][0]["field"] == "email"
    assert body["errors"][0]["code"] == "invalid_email"
    assert "email" in body["errors"][0]["message"]
    assert body["errors"][0]["value"] == "not-an-email"
    assert Customer.objects.for_client(client_a).count() == 0


def test_partial_accepts_valid_rows_and_lists_rejected(api_a, client_a):
    records = [
        *CUSTOMERS,
        {"external_id": "c4", "phone": "12345"},
        {"email": "no-id@example.ru"},
        "not an object",
    ]
    response = post_bulk(api_a, "customers", records, partial=True)
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["rejected"], body["total"]) == (3, 3, 6)
    assert [(e["index"], e["field"], e["code"]) for e in body["errors"]] == [
        (3, "phone", "invalid_phone"),
        (4, "external_id", "required"),
        (5, "", "invalid_row"),
    ]
    assert set(Customer.objects.for_client(client_a).values_list("external_id", flat=True)) == {
        "c1",
        "c2",
        "c3",
    }


def test_orders_bulk_links_customers_and_rejects_bad_values(api_a, client_a):
    post_bulk(api_a, "customers", CUSTOMERS)
    orders = [
        {
            "external_id": "o1",
            "customer_external_id": "c1",
            "placed_at": "2025-03-01T12:00:00+03:00",
            "amount": "8 000,50",
            "items": [{"sku": "A1", "name": "Кофе", "qty": 2, "price": 4000.25}],
        },
        {
            "external_id": "o2",
            "customer_external_id": "c2",
            "placed_at": "2025-03-02",
            "amount": 1200,
        },
        {
            "external_id": "o3",
            "customer_external_id": "ghost",
            "placed_at": "2025-03-02",
            "amount": 1,
        },
        {"external_id": "o4", "customer_external_id": "c1", "placed_at": "31.02.2025", "amount": 5},
        {
            "external_id": "o5",
            "customer_external_id": "c1",
            "placed_at": "2025-03-02",
            "amount": "-1",
        },
        {
            "external_id": "o6",
            "customer_external_id": "c1",
            "placed_at": "2025-03-02",
            "amount": "10",
            "items": [{"sku": "A1", "qty": -2, "price": 5}],
        },
    ]
    strict = post_bulk(api_a, "orders", orders)
    assert strict.status_code == 422
    assert Order.objects.for_client(client_a).count() == 0

    body = post_bulk(api_a, "orders", orders, partial=True).json()
    assert (body["created"], body["rejected"]) == (2, 4)
    reasons = {(e["index"], e["field"]): e["message"] for e in body["errors"]}
    assert "нет покупателя" in reasons[(2, "customer_external_id")]
    assert "не дата" in reasons[(3, "placed_at")]
    assert reasons[(4, "amount")] == "отрицательная сумма"
    assert "qty" in reasons[(5, "items")]
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (2, "unknown_customer"),
        (3, "invalid_time"),
        (4, "invalid_amount"),
        (5, "invalid_items"),
    ]
    o1 = Order.objects.for_client(client_a).select_related("customer").get(external_id="o1")
    assert str(o1.amount) == "8000.50"
    assert o1.customer.external_id == "c1"
    assert o1.placed_at.isoformat() == "2025-03-01T09:00:00+00:00"
    o2 = Order.objects.for_client(client_a).get(external_id="o2")
    # A date without a time zone is read in the client's zone (Europe/Moscow, UTC+3).
    assert o2.placed_at.isoformat() == "2025-03-01T21:00:00+00:00"


def test_events_without_id_are_idempotent_on_replay(api_a, client_a):
    post_bulk(api_a, "customers", CUSTOMERS)
    events = [
        {
            "customer_external_id": "c1",
            "type": "visit",
            "occurred_at": "2025-03-01T10:00:00Z",
            "utm_source": "yandex",
            "utm_medium": "cpc",
        },
        {
            "external_id": "e2",
            "customer_external_id": "c2",
            "type": "cart",
            "occurred_at": "2025-03-01",
        },
    ]
    first = post_bulk(api_a, "events", events).json()
    second = post_bulk(api_a, "events", events).json()
    assert (first["created"], second["created"], second["unchanged"]) == (2, 0, 2)
    assert second["updated"] == 0
    assert Event.objects.for_client(client_a).count() == 2


def test_too_many_records_is_413_and_writes_nothing(api_a, client_a):
    records = [{"external_id": f"x{i}"} for i in range(settings.BULK_MAX_RECORDS + 1)]
    response = post_bulk(api_a, "customers", records)
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_records"
    assert Customer.objects.for_client(client_a).count() == 0


def test_oversized_body_is_413_json(api_a, client_a):
    big = [{"external_id": f"x{i}", "city": "М" * 600} for i in range(10_000)]
    payload = json.dumps(big)
    assert len(payload.encode()) > 12 * 1024 * 1024
    response = api_a.post("/api/v1/customers/bulk/", data=payload, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert Customer.objects.for_client(client_a).count() == 0


def test_malformed_json_is_a_json_error(api_a):
    response = api_a.post("/api/v1/customers/bulk/", data="[{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_body_must_be_an_array(api_a):
    response = api_a.post(
        "/api/v1/customers/bulk/",
        data=json.dumps({"external_id": "1"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"


def test_list_filters_and_cursor_pagination(api_a, client_a):
    post_bulk(api_a, "customers", CUSTOMERS)
    page = api_a.get("/api/v1/customers/?page_size=2").json()
    assert len(page["results"]) == 2
    assert page["next"]
    rest = api_a.get(page["next"]).json()
    ids = {r["external_id"] for r in page["results"] + rest["results"]}
    assert ids == {"c1", "c2", "c3"}

    by_phone = api_a.get("/api/v1/customers/", {"phone": "8 916 123 45 67"}).json()["results"]
    assert [r["external_id"] for r in by_phone] == ["c1"]
    by_email = api_a.get("/api/v1/customers/", {"email": "IVAN@mail.ru"}).json()["results"]
    assert [r["external_id"] for r in by_email] == ["c1"]
    by_id = api_a.get("/api/v1/customers/", {"external_id": "c2"}).json()["results"]
    assert by_id[0]["city"] == "Казань"
    future = api_a.get("/api/v1/customers/", {"updated_since": "2100-01-01T00:00:00Z"}).json()
    assert future["results"] == []
    bad = api_a.get("/api/v1/customers/", {"updated_since": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_filter"


def test_contact_filters_are_the_shared_customer_look_up(api_a, client_a):
    """?email= / ?phone= find who the portal's and the admin's look-up (clients.selectors) finds
    for the same spelling, and answer 400 for a value that is no email / phone."""
    post_bulk(api_a, "customers", CUSTOMERS)
    for field, term, expected in [
        ("phone", "8 916 123 45 67", ["c1"]),
        ("phone", "+7 (916) 123-45-67", ["c1"]),
        ("phone", "+7 999 000-00-00", []),
        ("email", "IVAN@mail.ru", ["c1"]),
        ("email", "nobody@example.ru", []),
    ]:
        found = api_a.get("/api/v1/customers/", {field: term}).json()["results"]
        assert [r["external_id"] for r in found] == expected
        searched = customers_search(client=client_a, term=term)
        assert list(searched.values_list("external_id", flat=True)) == expected
    for field, bad in [("email", "not-an-email"), ("phone", "12345")]:
        response = api_a.get("/api/v1/customers/", {field: bad})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_filter"
        assert response.json()["message"]


def test_retrieve_and_order_customer_filter(api_a, client_a):
    post_bulk(api_a, "customers", CUSTOMERS)
    post_bulk(
        api_a,
        "orders",
        [
            {
                "external_id": "o1",
                "customer_external_id": "c2",
                "placed_at": "2025-01-01",
                "amount": 10,
            }
        ],
    )
    order = Order.objects.for_client(client_a).get(external_id="o1")
    body = api_a.get(f"/api/v1/orders/{order.pk}/").json()
    assert body["customer_external_id"] == "c2"
    assert body["amount"] == "10.00"
    listed = api_a.get("/api/v1/orders/", {"customer_external_id": "c1"}).json()["results"]
    assert listed == []


def test_auth_errors_are_json(client_a, make_api):
    from rest_framework.test import APIClient

    anonymous = APIClient().get("/api/v1/customers/")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    wrong = make_api("cvm_deadbeef_nope").get("/api/v1/customers/")
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "authentication_failed"

    key, raw = api_key_create(client=client_a)
    assert make_api(raw).get("/api/v1/customers/").status_code == 200
    api_key_revoke(api_key=key)
    assert make_api(raw).get("/api/v1/customers/").status_code == 401


def test_read_only_key_cannot_write(client_a, make_api):
    _key, raw = api_key_create(client=client_a, scopes=["read"])
    api = make_api(raw)
    assert api.get("/api/v1/customers/").status_code == 200
    response = post_bulk(api, "customers", CUSTOMERS)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert Customer.objects.for_client(client_a).count() == 0


def test_portal_session_user_reads_own_client(client_a, portal_owner_a, api_a):
    from rest_framework.test import APIClient

    post_bulk(api_a, "customers", CUSTOMERS)
    session = APIClient()
    session.force_authenticate(portal_owner_a)
    body = session.get("/api/v1/customers/").json()
    assert len(body["results"]) == 3


def test_schema_and_docs_are_served(api_a):
    schema = api_a.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    paths = document["paths"]
    assert document["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "Authorization"
    assert "/api/v1/customers/bulk/" in paths
    assert "/api/v1/orders/{id}/" in paths
    docs = api_a.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    # Assets are served locally (drf-spectacular-sidecar), never from a CDN; every script and
    # stylesheet URL on the page is relative.
    import re

    assets = re.findall(rb'(?:src|href)="([^"]+)"', docs.content)
    assert assets
    assert all(not url.startswith((b"http:", b"https:", b"//")) for url in assets), assets


def test_bulk_writes_an_audit_entry(api_a, client_a):
    from agency.models import AuditLogEntry

    post_bulk(api_a, "customers", CUSTOMERS)
    entry = AuditLogEntry.objects.get(action="bulk_upsert_customers")
    assert entry.client_id == client_a.pk
    assert entry.source == "api"
    assert entry.actor_label.startswith("api-key:")
    assert entry.details["created"] == 3


def test_throttling_is_per_key_and_json(api_a, api_b, monkeypatch):
    from django.core.cache import cache

    from clients.auth import ApiKeyRateThrottle

    cache.clear()
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/minute"})
    statuses = [api_a.get("/api/v1/customers/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = api_a.get("/api/v1/customers/")
    assert throttled.json()["code"] == "throttled"
    assert "Retry-After" in throttled.headers
    # Another key has its own budget.
    assert api_b.get("/api/v1/customers/").status_code == 200
    cache.clear()


def test_two_spellings_of_an_internationalised_email_are_one_address(api_a, client_a):
    """x@пример.рф and x@xn--e1afmkfd.xn--p1ai are stored alike, found by either spelling and
    hashed alike for the ad platforms (audiences.hashing hashes the stored form)."""
    from audiences.hashing import hasher_for

    response = post_bulk(
        api_a,
        "customers",
        [
            {"external_id": "u1", "email": "x@пример.рф"},
            {"external_id": "u2", "email": "X@XN--E1AFMKFD.XN--P1AI"},
            {"external_id": "u3", "email": "Юзер@mail.ru"},
        ],
    )
    assert response.status_code == 200, response.json()
    stored = dict(
        Customer.objects.for_client(client_a).values_list("external_id", "email").order_by("pk")
    )
    assert stored == {"u1": "x@пример.рф", "u2": "x@пример.рф", "u3": "юзер@mail.ru"}
    for spelling in ("x@xn--e1afmkfd.xn--p1ai", "X@Пример.РФ"):
        found = api_a.get("/api/v1/customers/", {"email": spelling}).json()["results"]
        assert sorted(r["external_id"] for r in found) == ["u1", "u2"]
    assert len({hasher_for("sha256")(stored[k]) for k in ("u1", "u2")}) == 1


def test_stored_punycode_emails_are_migrated_to_the_unicode_spelling(client_a):
    import importlib

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    name = "0008_customer_email_idn_domains_in_unicode"
    migration = importlib.import_module(f"clients.migrations.{name}")
    old = Customer.objects.create(
        client=client_a, external_id="old", email="x@xn--e1afmkfd.xn--p1ai"
    )
    plain = Customer.objects.create(client=client_a, external_id="plain", email="a@example.ru")
    state = MigrationExecutor(connection).loader.project_state(("clients", name))

    migration.idn_domains_to_unicode(state.apps, None)

    old.refresh_from_db()
    plain.refresh_from_db()
    assert (old.email, plain.email) == ("x@пример.рф", "a@example.ru")
