"""CRM webhooks: Bitrix24 and amoCRM events become customers and orders, verified per client."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.utils.datastructures import MultiValueDict
from rest_framework.test import APIClient

from agency.models import AuditLogEntry
from clients.models import Customer, Order
from clients.webhooks import (
    MAX_KEY_DEPTH,
    FormParseError,
    WebhookClientThrottle,
    amocrm_to_records,
    bitrix24_to_records,
    parse_php_form,
)

pytestmark = pytest.mark.django_db

B24_URL = "/api/v1/webhooks/bitrix24/"
AMO_URL = "/api/v1/webhooks/amocrm/"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def _fresh_throttle_history():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def post_form(api: APIClient, url: str, pairs: list[tuple[str, str]]):
    return api.post(url, data=urlencode(pairs), content_type=FORM)


def b24_auth(token: str) -> list[tuple[str, str]]:
    return [
        ("ts", "1717000000"),
        ("auth[domain]", "shop.bitrix24.ru"),
        ("auth[client_endpoint]", "https://shop.bitrix24.ru/rest/"),
        ("auth[member_id]", "a1b2c3"),
        ("auth[application_token]", token),
    ]


def b24_contact_form(token: str, contact_id: str = "101") -> list[tuple[str, str]]:
    return [
        ("event", "ONCRMCONTACTADD"),
        ("data[FIELDS][ID]", contact_id),
        ("data[FIELDS][NAME]", "Анна"),
        ("data[FIELDS][LAST_NAME]", "Смирнова"),
        ("data[FIELDS][EMAIL][0][VALUE]", "  Anna.Smirnova@Example.RU "),
        ("data[FIELDS][EMAIL][0][VALUE_TYPE]", "WORK"),
        ("data[FIELDS][PHONE][0][VALUE]", "8 (916) 123-45-67"),
        ("data[FIELDS][PHONE][0][VALUE_TYPE]", "MOBILE"),
        ("data[FIELDS][ADDRESS_CITY]", "Казань"),
        ("data[FIELDS][DATE_CREATE]", "2024-05-20T10:00:00+03:00"),
        *b24_auth(token),
    ]


def b24_deal_json(token: str, stage: str = "WON", deal_id: str = "555") -> dict:
    return {
        "event": "ONCRMDEALUPDATE",
        "data": {
            "FIELDS": {
                "ID": deal_id,
                "CONTACT_ID": "101",
                "STAGE_ID": stage,
                "OPPORTUNITY": "15000.50",
                "CURRENCY_ID": "RUB",
                "DATE_CREATE": "2024-05-20T10:00:00+03:00",
                "CLOSEDATE": "2024-05-31T00:00:00+03:00",
            }
        },
        "ts": "1717000000",
        "auth": {"domain": "shop.bitrix24.ru", "application_token": token},
    }


def webhook_audit_entries():
    return AuditLogEntry.objects.filter(source="webhook")


# --------------------------------------------------------------------------------------------
# The parser


def test_parse_php_form_builds_nested_dicts_and_lists_like_php():
    form = MultiValueDict(
        {
            "event": ["ONCRMCONTACTADD"],
            "data[FIELDS][ID]": ["7"],
            "data[FIELDS][EMAIL][0][VALUE]": ["a@example.ru"],
            "data[FIELDS][EMAIL][1][VALUE]": ["b@example.ru"],
            "contacts[add][0][linked_leads_id][35144366][ID]": ["35144366"],
            "tags[]": ["vip", "b2b"],
            "repeated": ["first", "last"],
            "weird[key": ["kept"],
        }
    )

    assert parse_php_form(form) == {
        "event": "ONCRMCONTACTADD",
        "data": {
            "FIELDS": {"ID": "7", "EMAIL": [{"VALUE": "a@example.ru"}, {"VALUE": "b@example.ru"}]}
        },
        # Object keyed by ids, not 0..n-1: stays an object.
        "contacts": {"add": [{"linked_leads_id": {"35144366": {"ID": "35144366"}}}]},
        "tags": ["vip", "b2b"],
        "repeated": "last",  # PHP: the last value of a repeated key wins
        "weird[key": "kept",
    }


def test_parse_php_form_later_key_replaces_a_value_it_nests_into():
    form = MultiValueDict({"a": ["scalar"], "a[b]": ["nested"]})
    assert parse_php_form(form) == {"a": {"b": "nested"}}


def test_parse_php_form_passes_json_objects_through_and_expands_bracketed_keys():
    body = {"auth": {"application_token": "t"}, "data[FIELDS][ID]": "5", "list": [1, 2]}
    assert parse_php_form(body) == {
        "auth": {"application_token": "t"},
        "data": {"FIELDS": {"ID": "5"}},
        "list": [1, 2],
    }


def test_parse_php_form_refuses_absurd_nesting():
    key = "a" + "[x]" * MAX_KEY_DEPTH
    with pytest.raises(FormParseError):
        parse_php_form(MultiValueDict({key: ["1"]}))


# --------------------------------------------------------------------------------------------
# Pure mappings


@pytest.mark.parametrize(
    ("fields", "expected_status"),
    [
        ({"STAGE_ID": "WON"}, "paid"),
        ({"STAGE_ID": "C3:WON"}, "paid"),
        ({"STAGE_ID": "LOSE"}, "cancelled"),
        ({"STAGE_ID": "C3:APOLOGY"}, "cancelled"),
        ({"STAGE_ID": "C3:7", "STAGE_SEMANTIC_ID": "S"}, "paid"),
        ({"STAGE_ID": "C3:8", "STAGE_SEMANTIC_ID": "F"}, "cancelled"),
    ],
)
def test_bitrix24_closed_stages_map_to_order_status(fields, expected_status):
    payload = {
        "event": "ONCRMDEALUPDATE",
        "data": {"FIELDS": {"ID": "9", "CONTACT_ID": "4", "OPPORTUNITY": "10", **fields}},
    }
    records = bitrix24_to_records(payload)
    assert [o["status"] for o in records["orders"]] == [expected_status]
    assert records["orders"][0]["customer_external_id"] == "b24-4"


@pytest.mark.parametrize(
    ("fields", "reason_part"),
    [
        ({"STAGE_ID": "PREPARATION"}, "не закрыта"),
        ({"STAGE_ID": "WON", "CURRENCY_ID": "USD"}, "USD"),
        ({"STAGE_ID": "WON", "CONTACT_ID": "0"}, "нет контакта"),
        ({}, "только ID"),
    ],
)
def test_bitrix24_deals_that_are_not_orders_are_skipped_with_reason(fields, reason_part):
    base = {"ID": "9", "CONTACT_ID": "4", "OPPORTUNITY": "10"}
    records = bitrix24_to_records({"event": "ONCRMDEALADD", "data": {"FIELDS": {**base, **fields}}})
    assert records["orders"] == []
    assert len(records["skipped"]) == 1
    assert records["skipped"][0]["id"] == "9"
    assert reason_part in records["skipped"][0]["reason"]


def test_amocrm_company_is_not_a_customer_and_open_lead_is_not_an_order():
    payload = {
        "contacts": {"add": [{"id": "1", "name": "ООО Ромашка", "type": "company"}]},
        "leads": {"status": [{"id": "2", "status_id": "31771723", "price": "100"}]},
    }
    records = amocrm_to_records(payload)
    assert records["customers"] == []
    assert records["orders"] == []
    assert [(s["entity"], s["id"]) for s in records["skipped"]] == [("company", "1"), ("lead", "2")]


# --------------------------------------------------------------------------------------------
# Bitrix24 endpoint


def test_bitrix24_contact_add_form_creates_customer_with_normalised_phone_and_email(api, client_a):
    response = post_form(
        api, f"{B24_URL}?client={client_a.slug}", b24_contact_form(client_a.webhook_secret)
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["customers"] == {"created": 1, "updated": 0, "rejected": 0, "errors": []}
    assert body["orders"]["created"] == 0
    customer = Customer.objects.for_client(client_a).get(external_id="b24-101")
    assert customer.phone == "+79161234567"
    assert customer.email == "anna.smirnova@example.ru"
    assert (customer.first_name, customer.last_name, customer.city) == (
        "Анна",
        "Смирнова",
        "Казань",
    )
    assert customer.source == "bitrix24"
    entry = webhook_audit_entries().get()
    assert entry.actor_label == "bitrix24"
    assert entry.client_id == client_a.pk
    assert entry.details["event"] == "ONCRMCONTACTADD"
    assert entry.details["customers"] == {"created": 1, "updated": 0, "rejected": 0}


def test_bitrix24_deal_won_json_body_creates_paid_order_linked_to_contact(api, client_a):
    url = f"{B24_URL}?client={client_a.slug}"
    post_form(api, url, b24_contact_form(client_a.webhook_secret))

    response = api.post(url, data=b24_deal_json(client_a.webhook_secret), format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["orders"]["created"] == 1
    order = Order.objects.for_client(client_a).select_related("customer").get(external_id="b24-555")
    assert order.status == Order.Status.PAID
    assert order.amount == Decimal("15000.50")
    assert order.customer.external_id == "b24-101"
    assert order.channel == "bitrix24"
    assert order.placed_at == datetime(2024, 5, 30, 21, 0, tzinfo=UTC)  # CLOSEDATE


def test_bitrix24_deal_still_open_is_skipped_and_writes_no_order(api, client_a):
    url = f"{B24_URL}?client={client_a.slug}"
    post_form(api, url, b24_contact_form(client_a.webhook_secret))

    response = api.post(
        url, data=b24_deal_json(client_a.webhook_secret, stage="EXECUTING"), format="json"
    )

    assert response.status_code == 200
    assert response.json()["skipped"] == [
        {
            "entity": "deal",
            "id": "555",
            "reason": "сделка не закрыта (стадия EXECUTING): ещё не заказ",
        }
    ]
    assert not Order.objects.for_client(client_a).exists()


def test_bitrix24_replay_of_same_payload_is_idempotent(api, client_a):
    url = f"{B24_URL}?client={client_a.slug}"
    token = client_a.webhook_secret
    for _ in range(2):
        contact = post_form(api, url, b24_contact_form(token))
        deal = api.post(url, data=b24_deal_json(token), format="json")

    assert contact.json()["customers"]["created"] == 0
    assert contact.json()["customers"]["updated"] == 1
    assert deal.json()["orders"]["created"] == 0
    assert Customer.objects.for_client(client_a).count() == 1
    assert Order.objects.for_client(client_a).count() == 1
    assert webhook_audit_entries().count() == 4


def test_bitrix24_documented_id_only_event_is_skipped_not_guessed(api, client_a):
    pairs = [
        ("event", "ONCRMCONTACTADD"),
        ("data[FIELDS][ID]", "77"),
        *b24_auth(client_a.webhook_secret),
    ]

    response = post_form(api, f"{B24_URL}?client={client_a.slug}", pairs)

    assert response.status_code == 200
    assert response.json()["skipped"][0]["id"] == "77"
    assert "только ID" in response.json()["skipped"][0]["reason"]
    assert not Customer.objects.for_client(client_a).exists()


def test_bitrix24_rejected_row_is_listed_and_not_written(api, client_a):
    bad_email = {"data[FIELDS][EMAIL][0][VALUE]": "not-an-email"}
    pairs = [(k, bad_email.get(k, v)) for k, v in b24_contact_form(client_a.webhook_secret)]

    response = post_form(api, f"{B24_URL}?client={client_a.slug}", pairs)

    assert response.status_code == 200
    customers = response.json()["customers"]
    assert customers["created"] == 0
    assert customers["rejected"] == 1
    assert customers["errors"][0]["external_id"] == "b24-101"
    assert customers["errors"][0]["field"] == "email"
    assert not Customer.objects.for_client(client_a).exists()


@pytest.mark.parametrize("token", ["wrong-token", "", None])
def test_bitrix24_wrong_or_missing_token_is_403_and_writes_nothing(api, client_a, token):
    pairs = b24_contact_form(client_a.webhook_secret)
    pairs = [(k, v) for k, v in pairs if k != "auth[application_token]"]
    if token is not None:
        pairs.append(("auth[application_token]", token))

    response = post_form(api, f"{B24_URL}?client={client_a.slug}", pairs)

    assert response.status_code == 403
    assert response.json()["code"] == "invalid_webhook_secret"
    assert not Customer.objects.for_client(client_a).exists()
    assert not webhook_audit_entries().exists()


def test_bitrix24_unknown_slug_gets_the_same_reply_as_a_wrong_token(api, client_a):
    wrong_token = post_form(api, f"{B24_URL}?client={client_a.slug}", b24_contact_form("nope"))
    unknown = post_form(api, f"{B24_URL}?client=no-such-client", b24_contact_form("nope"))
    no_slug = post_form(api, B24_URL, b24_contact_form(client_a.webhook_secret))

    assert unknown.status_code == wrong_token.status_code == no_slug.status_code == 403
    assert unknown.json() == wrong_token.json() == no_slug.json()


def test_bitrix24_other_clients_slug_with_this_clients_token_is_403(api, client_a, client_b):
    url = f"{B24_URL}?client={client_b.slug}"

    contact = post_form(api, url, b24_contact_form(client_a.webhook_secret))
    deal = api.post(url, data=b24_deal_json(client_a.webhook_secret), format="json")

    assert contact.status_code == deal.status_code == 403
    assert contact.json()["code"] == "invalid_webhook_secret"
    assert not Customer.objects.for_client(client_a).exists()
    assert not Customer.objects.for_client(client_b).exists()
    assert not Order.objects.for_client(client_b).exists()
    assert not webhook_audit_entries().exists()


def test_bitrix24_inactive_client_is_refused(api, client_a):
    client_a.is_active = False
    client_a.save(update_fields=["is_active"])

    response = post_form(
        api, f"{B24_URL}?client={client_a.slug}", b24_contact_form(client_a.webhook_secret)
    )

    assert response.status_code == 403
    assert not Customer.objects.for_client(client_a).exists()


def test_webhooks_are_throttled_per_verified_client(api, client_a, client_b, monkeypatch):
    monkeypatch.setattr(WebhookClientThrottle, "rate", "2/minute", raising=False)
    url_a = f"{B24_URL}?client={client_a.slug}"
    # Forged requests are refused before they count against the client's quota.
    for _ in range(3):
        assert post_form(api, url_a, b24_contact_form("forged")).status_code == 403

    statuses = [
        post_form(api, url_a, b24_contact_form(client_a.webhook_secret)).status_code
        for _ in range(3)
    ]
    other = post_form(
        api, f"{B24_URL}?client={client_b.slug}", b24_contact_form(client_b.webhook_secret)
    )

    assert statuses == [200, 200, 429]
    assert other.status_code == 200
    assert webhook_audit_entries().filter(client_id=client_a.pk).count() == 2


# --------------------------------------------------------------------------------------------
# amoCRM endpoint


def amo_url(client, secret: str | None = None) -> str:
    return (
        f"{AMO_URL}?{urlencode({'client': client.slug, 'secret': secret or client.webhook_secret})}"
    )


AMO_CONTACT_AND_WON_LEAD = [
    ("contacts[add][0][id]", "501"),
    ("contacts[add][0][name]", "Иван Петров"),
    ("contacts[add][0][responsible_user_id]", "8744098"),
    ("contacts[add][0][date_create]", "1716000000"),
    ("contacts[add][0][last_modified]", "1716000000"),
    ("contacts[add][0][type]", "contact"),
    ("contacts[add][0][custom_fields][0][id]", "2031462"),
    ("contacts[add][0][custom_fields][0][name]", "Телефон"),
    ("contacts[add][0][custom_fields][0][code]", "PHONE"),
    ("contacts[add][0][custom_fields][0][values][0][value]", "+7 (903) 555-12-34"),
    ("contacts[add][0][custom_fields][0][values][0][enum]", "1364056"),
    ("contacts[add][0][custom_fields][1][id]", "2031464"),
    ("contacts[add][0][custom_fields][1][name]", "Email"),
    ("contacts[add][0][custom_fields][1][code]", "EMAIL"),
    ("contacts[add][0][custom_fields][1][values][0][value]", "Ivan@Example.com"),
    ("contacts[add][0][linked_leads_id][9001][ID]", "9001"),
    ("leads[status][0][id]", "9001"),
    ("leads[status][0][name]", "Заказ с сайта"),
    ("leads[status][0][status_id]", "142"),
    ("leads[status][0][old_status_id]", "41893093"),
    ("leads[status][0][price]", "25000"),
    ("leads[status][0][date_create]", "1717000000"),
    ("leads[status][0][last_modified]", "1717100000"),
    ("leads[status][0][pipeline_id]", "4542166"),
    ("account[subdomain]", "shop"),
    ("account[id]", "29638927"),
]


def test_amocrm_contact_add_and_lead_status_142_create_customer_and_paid_order(api, client_a):
    response = post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["customers"]["created"] == 1
    assert body["orders"]["created"] == 1  # ingested after the customer of the same payload
    customer = Customer.objects.for_client(client_a).get(external_id="amo-501")
    assert customer.phone == "+79035551234"
    assert customer.email == "ivan@example.com"
    assert customer.first_name == "Иван Петров"
    assert customer.source == "amocrm"
    order = Order.objects.for_client(client_a).get(external_id="amo-9001")
    assert order.customer_id == customer.pk
    assert order.status == Order.Status.PAID
    assert order.amount == Decimal("25000")
    assert order.placed_at == datetime(2024, 5, 29, 16, 26, 40, tzinfo=UTC)  # date_create
    entry = webhook_audit_entries().get()
    assert (entry.actor_label, entry.client_id) == ("amocrm", client_a.pk)
    assert entry.details["orders"]["created"] == 1


def test_amocrm_replay_is_idempotent(api, client_a):
    post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)
    again = post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)

    assert again.json()["customers"]["created"] == again.json()["orders"]["created"] == 0
    assert Customer.objects.for_client(client_a).count() == 1
    assert Order.objects.for_client(client_a).count() == 1


def test_amocrm_lead_143_json_body_with_main_contact_becomes_cancelled_order(api, client_a):
    post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)
    body = {
        "leads": {
            "status": [
                {
                    "id": "9002",
                    "status_id": "143",
                    "price": "990",
                    "date_create": "1717000000",
                    "main_contact_id": "501",
                }
            ]
        },
        "account": {"subdomain": "shop"},
    }

    response = api.post(amo_url(client_a), data=body, format="json")

    assert response.status_code == 200, response.json()
    order = Order.objects.for_client(client_a).get(external_id="amo-9002")
    assert order.status == Order.Status.CANCELLED
    assert order.customer.external_id == "amo-501"


def test_amocrm_won_lead_without_linked_contact_is_skipped(api, client_a):
    pairs = [(k, v) for k, v in AMO_CONTACT_AND_WON_LEAD if k.startswith(("leads", "account"))]

    response = post_form(api, amo_url(client_a), pairs)

    assert response.status_code == 200
    assert response.json()["skipped"][0]["id"] == "9001"
    assert "нет связанного контакта" in response.json()["skipped"][0]["reason"]
    assert not Order.objects.for_client(client_a).exists()


def test_amocrm_batch_keeps_good_contacts_and_lists_the_bad_one(api, client_a):
    pairs = [
        ("contacts[update][0][id]", "601"),
        ("contacts[update][0][name]", "Ольга"),
        ("contacts[update][0][custom_fields][0][code]", "PHONE"),
        ("contacts[update][0][custom_fields][0][values][0][value]", "+7 903 555-00-01"),
        ("contacts[update][1][id]", "602"),
        ("contacts[update][1][name]", "Пётр"),
        ("contacts[update][1][custom_fields][0][code]", "PHONE"),
        ("contacts[update][1][custom_fields][0][values][0][value]", "12"),
    ]

    response = post_form(api, amo_url(client_a), pairs)

    assert response.status_code == 200
    customers = response.json()["customers"]
    assert customers["created"] == 1
    assert customers["rejected"] == 1
    assert [(e["external_id"], e["field"]) for e in customers["errors"]] == [("amo-602", "phone")]
    stored = Customer.objects.for_client(client_a).values_list("external_id", flat=True)
    assert list(stored) == ["amo-601"]


def test_amocrm_wrong_or_foreign_secret_is_403_and_writes_nothing(api, client_a, client_b):
    wrong = post_form(api, amo_url(client_a, secret="guess"), AMO_CONTACT_AND_WON_LEAD)
    foreign = post_form(
        api, amo_url(client_b, secret=client_a.webhook_secret), AMO_CONTACT_AND_WON_LEAD
    )
    missing = post_form(api, f"{AMO_URL}?client={client_a.slug}", AMO_CONTACT_AND_WON_LEAD)

    for response in (wrong, foreign, missing):
        assert response.status_code == 403
        assert response.json()["code"] == "invalid_webhook_secret"
    assert not Customer.objects.for_client(client_a).exists()
    assert not Customer.objects.for_client(client_b).exists()
    assert not webhook_audit_entries().exists()


def test_webhook_refuses_a_body_that_is_not_an_object(api, client_a):
    response = api.post(amo_url(client_a), data=[1, 2], format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"
