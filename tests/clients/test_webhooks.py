"""CRM webhooks: Bitrix24 and amoCRM events become customers and orders, verified per client."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from rest_framework.test import APIClient

from agency.models import AuditLogEntry
from clients.models import CrmDeal, Customer, Order
from clients.webhooks import WebhookClientThrottle
from integrations.amocrm.formats import amocrm_to_records
from integrations.bitrix24.formats import bitrix24_to_records
from integrations.crm.forms import MAX_KEY_DEPTH, FormParseError, parse_php_form

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
        ({"STAGE_ID": "WON"}, "won"),
        ({"STAGE_ID": "C3:WON"}, "won"),
        ({"STAGE_ID": "LOSE"}, "lost"),
        ({"STAGE_ID": "C3:APOLOGY"}, "lost"),
        ({"STAGE_ID": "C3:7", "STAGE_SEMANTIC_ID": "S"}, "won"),
        ({"STAGE_ID": "C3:8", "STAGE_SEMANTIC_ID": "F"}, "lost"),
        ({"STAGE_ID": "PREPARATION"}, "open"),
    ],
)
def test_bitrix24_deal_stages_map_to_deal_status(fields, expected_status):
    payload = {
        "event": "ONCRMDEALUPDATE",
        "data": {"FIELDS": {"ID": "9", "CONTACT_ID": "4", "OPPORTUNITY": "10", **fields}},
    }
    records = bitrix24_to_records(payload)
    assert [d["status"] for d in records["deals"]] == [expected_status]
    assert records["deals"][0]["contact_id"] == "4"
    assert records["deals"][0]["stage"] == fields["STAGE_ID"]
    assert records["customers"] == records["links"] == records["skipped"] == []


def test_bitrix24_deal_event_with_only_an_id_is_fetched_not_guessed():
    payload = {"event": "ONCRMDEALADD", "data": {"FIELDS": {"ID": "9", "OPPORTUNITY": "10"}}}
    records = bitrix24_to_records(payload)
    assert records["deals"] == []
    assert records["skipped"] == []
    assert records["fetch"] == [{"entity": "deal", "id": "9"}]  # crm.deal.get reads it


def test_amocrm_company_is_not_a_customer_and_lead_is_mapped_as_open_deal():
    payload = {
        "contacts": {
            "add": [
                {
                    "id": "1",
                    "name": "ООО Ромашка",
                    "type": "company",
                    "linked_leads_id": {"2": {"ID": "2"}},
                }
            ]
        },
        "leads": {"status": [{"id": "2", "status_id": "31771723", "price": "100"}]},
    }
    records = amocrm_to_records(payload)
    assert records["customers"] == []
    assert records["links"] == []  # a company's leads are not linked to a customer
    assert records["deals"] == [
        {"deal_id": "2", "stage": "31771723", "status": "open", "amount": "100"}
    ]
    assert [(s["entity"], s["id"]) for s in records["skipped"]] == [("company", "1")]


def test_amocrm_contact_links_and_lead_fields_are_mapped():
    payload = {
        "contacts": {
            "update": [{"id": "501", "name": "Иван", "linked_leads_id": {"9001": {"ID": "9001"}}}]
        },
        "leads": {
            "status": [
                {"id": "9001", "status_id": "142", "price": "25000", "date_create": "1717000000"}
            ]
        },
    }
    records = amocrm_to_records(payload)
    assert records["links"] == [{"deal_id": "9001", "contact_id": "501"}]
    assert records["deals"] == [
        {
            "deal_id": "9001",
            "stage": "142",
            "status": "won",
            "amount": "25000",
            "created_at": "2024-05-29T16:26:40+00:00",
        }
    ]


# --------------------------------------------------------------------------------------------
# Bitrix24 endpoint


def test_bitrix24_contact_add_form_creates_customer_with_normalised_phone_and_email(api, client_a):
    response = post_form(
        api, f"{B24_URL}?client={client_a.slug}", b24_contact_form(client_a.webhook_secret)
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["customers"] == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "errors": [],
    }
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


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"CURRENCY_ID": "USD"}, "валюта USD: суммы заказов хранятся в рублях"),
        (
            {"CONTACT_ID": "0"},
            "ждём контакт сделки: у сделки нет контакта (CONTACT_ID); заказ появится, когда "
            "сделка придёт с контактом",
        ),
        ({"OPPORTUNITY": "много"}, "нет суммы сделки (или она не читается)"),
        # Digits 0-9 only, as many as an order amount holds (Decimal reads "١٢٣" as 123).
        ({"OPPORTUNITY": "١٢٣"}, "нет суммы сделки (или она не читается)"),
        ({"OPPORTUNITY": "1000000000000"}, "нет суммы сделки (или она не читается)"),
        (
            {"DATE_CREATE": "2024-05-20T10:00:00+16:00", "CLOSEDATE": "2024-13-31"},
            "нет даты сделки: ни даты закрытия, ни даты создания (или они не читаются)",
        ),
    ],
)
def test_bitrix24_won_deal_that_cannot_be_an_order_is_remembered_with_reason(
    api, client_a, fields, reason
):
    url = f"{B24_URL}?client={client_a.slug}"
    post_form(api, url, b24_contact_form(client_a.webhook_secret))
    body = b24_deal_json(client_a.webhook_secret)
    body["data"]["FIELDS"].update(fields)

    response = api.post(url, data=body, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["skipped"] == [{"entity": "deal", "id": "555", "reason": reason}]
    assert response.json()["orders"]["created"] == 0
    assert not Order.objects.for_client(client_a).exists()
    deal = CrmDeal.objects.for_client(client_a).get()
    assert (deal.crm, deal.deal_id, deal.status) == ("bitrix24", "555", "won")
    assert deal.skipped_reason == reason
    assert deal.order_external_id is None


def test_bitrix24_replay_of_same_payload_is_idempotent(api, client_a):
    url = f"{B24_URL}?client={client_a.slug}"
    token = client_a.webhook_secret
    for _ in range(2):
        contact = post_form(api, url, b24_contact_form(token))
        deal = api.post(url, data=b24_deal_json(token), format="json")

    assert contact.json()["customers"]["created"] == 0
    assert contact.json()["customers"]["updated"] == 0
    assert contact.json()["customers"]["unchanged"] == 1
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
    return f"{AMO_URL}{client.slug}/{secret or client.webhook_secret}/"


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


def amo_lead_json(lead_id: str, status_id: str, **fields: str) -> dict:
    lead = {"id": lead_id, "status_id": status_id, "price": "990", "date_create": "1717000000"}
    return {"leads": {"status": [{**lead, **fields}]}, "account": {"subdomain": "shop"}}


def test_amocrm_lead_143_cancels_its_paid_order(api, client_a):
    post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)
    won = api.post(
        amo_url(client_a), data=amo_lead_json("9002", "142", main_contact_id="501"), format="json"
    )
    assert won.json()["orders"]["created"] == 1
    paid = Order.objects.for_client(client_a).get(external_id="amo-9002")

    response = api.post(
        amo_url(client_a), data=amo_lead_json("9002", "143", price="1200"), format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["orders"]["updated"] == 1
    assert response.json()["skipped"] == []
    order = Order.objects.for_client(client_a).get(external_id="amo-9002")
    assert order.status == Order.Status.CANCELLED
    assert order.customer.external_id == "amo-501"
    assert order.placed_at == paid.placed_at
    assert order.amount == Decimal("1200")
    deal = CrmDeal.objects.for_client(client_a).get(deal_id="9002")
    assert (deal.status, deal.order_external_id, deal.skipped_reason) == ("lost", "amo-9002", "")


def test_amocrm_lead_143_never_paid_is_no_order(api, client_a):
    post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)

    response = api.post(
        amo_url(client_a), data=amo_lead_json("9002", "143", main_contact_id="501"), format="json"
    )
    replay = api.post(
        amo_url(client_a), data=amo_lead_json("9002", "143", main_contact_id="501"), format="json"
    )

    reason = "сделка проиграна (status_id 143) и не была оплачена: не заказ"
    for reply in (response, replay):
        assert reply.status_code == 200, reply.json()
        assert reply.json()["orders"] == {
            "created": 0,
            "updated": 0,
            "unchanged": 0,
            "rejected": 0,
            "errors": [],
        }
        assert reply.json()["skipped"] == [{"entity": "lead", "id": "9002", "reason": reason}]
    assert not Order.objects.for_client(client_a).filter(external_id="amo-9002").exists()
    deal = CrmDeal.objects.for_client(client_a).get(deal_id="9002")
    assert (deal.status, deal.contact_id, deal.skipped_reason) == ("lost", "501", reason)


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
    unknown = post_form(
        api, f"{AMO_URL}nobody/{client_a.webhook_secret}/", AMO_CONTACT_AND_WON_LEAD
    )
    missing = post_form(api, f"{AMO_URL}{client_a.slug}/", AMO_CONTACT_AND_WON_LEAD)

    for response in (wrong, foreign, unknown):
        assert response.status_code == 403
        assert response.json()["code"] == "invalid_webhook_secret"
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert not Customer.objects.for_client(client_a).exists()
    assert not Customer.objects.for_client(client_b).exists()
    assert not webhook_audit_entries().exists()


def test_webhook_refuses_a_body_that_is_not_an_object(api, client_a):
    response = api.post(amo_url(client_a), data=[1, 2], format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"


# --------------------------------------------------------------------------------------------
# Deals whose contact comes in another hook

AMO_WON_LEAD_ALONE = [(k, v) for k, v in AMO_CONTACT_AND_WON_LEAD if not k.startswith("contacts")]
AMO_CONTACT_LINKING_LEAD = [
    (k.replace("contacts[add]", "contacts[update]"), v)
    for k, v in AMO_CONTACT_AND_WON_LEAD
    if not k.startswith("leads")
]
AMO_LEAD_DATE = datetime(2024, 5, 29, 16, 26, 40, tzinfo=UTC)  # date_create 1717000000


def test_amocrm_won_lead_alone_waits_then_contact_hook_makes_the_order(api, client_a):
    lead = post_form(api, amo_url(client_a), AMO_WON_LEAD_ALONE)

    assert lead.status_code == 200, lead.json()
    assert lead.json()["orders"]["created"] == 0
    [skip] = lead.json()["skipped"]
    assert (skip["entity"], skip["id"]) == ("lead", "9001")
    assert skip["reason"].startswith("ждём контакт сделки")
    assert not Order.objects.for_client(client_a).exists()
    deal = CrmDeal.objects.for_client(client_a).get()
    assert (deal.crm, deal.deal_id, deal.status, deal.stage) == ("amocrm", "9001", "won", "142")
    assert (deal.amount, deal.created_at, deal.contact_id) == (
        Decimal("25000"),
        AMO_LEAD_DATE,
        None,
    )
    assert deal.order_external_id is None
    assert deal.skipped_reason == skip["reason"]

    contact = post_form(api, amo_url(client_a), AMO_CONTACT_LINKING_LEAD)

    assert contact.status_code == 200, contact.json()
    assert contact.json()["customers"]["created"] == 1
    assert contact.json()["orders"]["created"] == 1
    assert contact.json()["skipped"] == []
    order = Order.objects.for_client(client_a).select_related("customer").get()
    assert order.external_id == "amo-9001"
    assert order.customer.external_id == "amo-501"
    assert (order.status, order.amount, order.placed_at) == (
        "paid",
        Decimal("25000"),
        AMO_LEAD_DATE,
    )
    assert order.channel == "amocrm"
    deal.refresh_from_db()
    assert (deal.contact_id, deal.order_external_id, deal.skipped_reason) == ("501", "amo-9001", "")
    assert webhook_audit_entries().filter(client_id=client_a.pk).count() == 2


def test_amocrm_contact_hook_first_then_won_lead_makes_the_order(api, client_a):
    contact = post_form(api, amo_url(client_a), AMO_CONTACT_LINKING_LEAD)

    assert contact.json()["customers"]["created"] == 1
    assert contact.json()["orders"]["created"] == 0
    assert [(s["entity"], s["id"]) for s in contact.json()["skipped"]] == [("lead", "9001")]
    assert contact.json()["skipped"][0]["reason"].startswith("ждём событие сделки")
    deal = CrmDeal.objects.for_client(client_a).get()
    assert (deal.deal_id, deal.contact_id, deal.status, deal.amount) == (
        "9001",
        "501",
        "open",
        None,
    )

    lead = post_form(api, amo_url(client_a), AMO_WON_LEAD_ALONE)

    assert lead.status_code == 200, lead.json()
    assert lead.json()["orders"]["created"] == 1
    assert lead.json()["skipped"] == []
    order = Order.objects.for_client(client_a).select_related("customer").get()
    assert (order.external_id, order.customer.external_id) == ("amo-9001", "amo-501")
    assert (order.status, order.amount, order.placed_at) == (
        "paid",
        Decimal("25000"),
        AMO_LEAD_DATE,
    )
    deal.refresh_from_db()
    assert (deal.status, deal.order_external_id, deal.skipped_reason) == ("won", "amo-9001", "")


def test_amocrm_replays_in_either_order_create_nothing_new(api, client_a):
    hooks = [AMO_WON_LEAD_ALONE, AMO_CONTACT_LINKING_LEAD]
    for pairs in hooks:
        post_form(api, amo_url(client_a), pairs)
    first_deal = CrmDeal.objects.for_client(client_a).values().get()
    first_order = Order.objects.for_client(client_a).values().get()

    replies = [post_form(api, amo_url(client_a), pairs).json() for pairs in hooks + hooks[::-1]]

    for reply in replies:
        assert reply["customers"]["created"] == reply["orders"]["created"] == 0
        assert reply["skipped"] == []
    assert Customer.objects.for_client(client_a).count() == 1
    assert Order.objects.for_client(client_a).values().get() == first_order  # not even touched
    deal = CrmDeal.objects.for_client(client_a).values().get()
    assert deal.pop("last_payload_at") > first_deal.pop("last_payload_at")
    assert deal == first_deal


def test_amocrm_won_lead_follows_the_crm_price_once_it_is_an_order(api, client_a):
    post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)
    repriced = [
        (k, "27500" if k == "leads[status][0][price]" else v) for k, v in AMO_WON_LEAD_ALONE
    ]

    response = post_form(api, amo_url(client_a), repriced)

    assert response.json()["orders"] == {
        "created": 0,
        "updated": 1,
        "unchanged": 0,
        "rejected": 0,
        "errors": [],
    }
    order = Order.objects.for_client(client_a).get()
    assert (order.amount, order.customer.external_id) == (Decimal("27500"), "amo-501")


def test_amocrm_other_clients_hooks_never_link_to_this_clients_deals(api, client_a, client_b):
    # A's won lead waits for its contact; B's CRM happens to use the same lead and contact ids.
    post_form(api, amo_url(client_a), AMO_WON_LEAD_ALONE)
    b_contact = post_form(api, amo_url(client_b), AMO_CONTACT_LINKING_LEAD)
    # And the other way round: B's won lead 9002 waits, A's contact links lead 9002.
    b_lead = api.post(amo_url(client_b), data=amo_lead_json("9002", "142"), format="json")
    a_contact = post_form(
        api,
        amo_url(client_a),
        [
            ("contacts[update][0][id]", "777"),
            ("contacts[update][0][name]", "Мария"),
            ("contacts[update][0][linked_leads_id][9002][ID]", "9002"),
        ],
    )

    for response in (b_contact, b_lead, a_contact):
        assert response.status_code == 200, response.json()
        assert response.json()["orders"]["created"] == 0
    assert not Order.objects.for_client(client_a).exists()
    assert not Order.objects.for_client(client_b).exists()
    a_deals = CrmDeal.objects.for_client(client_a).order_by("deal_id")
    assert [(d.deal_id, d.status, d.contact_id) for d in a_deals] == [
        ("9001", "won", None),
        ("9002", "open", "777"),
    ]
    b_deals = CrmDeal.objects.for_client(client_b).order_by("deal_id")
    assert [(d.deal_id, d.status, d.contact_id) for d in b_deals] == [
        ("9001", "open", "501"),
        ("9002", "won", None),
    ]


def test_bitrix24_won_deal_waits_for_its_contact_then_becomes_the_order(api, client_a):
    url = f"{B24_URL}?client={client_a.slug}"
    token = client_a.webhook_secret

    deal_reply = api.post(url, data=b24_deal_json(token), format="json")

    assert deal_reply.status_code == 200, deal_reply.json()
    assert deal_reply.json()["orders"]["created"] == 0
    assert deal_reply.json()["skipped"] == [
        {
            "entity": "deal",
            "id": "555",
            "reason": "ждём контакт сделки: контакта 101 ещё нет среди покупателей (b24-101); "
            "заказ появится с событием этого контакта",
        }
    ]
    assert not Order.objects.for_client(client_a).exists()
    deal = CrmDeal.objects.for_client(client_a).get()
    assert (deal.crm, deal.deal_id, deal.contact_id, deal.status) == (
        "bitrix24",
        "555",
        "101",
        "won",
    )
    assert (deal.amount, deal.currency) == (Decimal("15000.50"), "RUB")
    assert deal.closed_at == datetime(2024, 5, 30, 21, 0, tzinfo=UTC)

    contact_reply = post_form(api, url, b24_contact_form(token))

    assert contact_reply.json()["customers"]["created"] == 1
    assert contact_reply.json()["orders"]["created"] == 1
    assert contact_reply.json()["skipped"] == []
    order = Order.objects.for_client(client_a).select_related("customer").get()
    assert (order.external_id, order.customer.external_id) == ("b24-555", "b24-101")
    assert (order.status, order.amount) == ("paid", Decimal("15000.50"))
    assert order.placed_at == datetime(2024, 5, 30, 21, 0, tzinfo=UTC)  # CLOSEDATE
    deal.refresh_from_db()
    assert (deal.order_external_id, deal.skipped_reason) == ("b24-555", "")

    replay = post_form(api, url, b24_contact_form(token))

    assert replay.json()["orders"]["created"] == 0
    assert Order.objects.for_client(client_a).count() == 1
    assert CrmDeal.objects.for_client(client_a).count() == 1


def test_waiting_deal_becomes_order_when_its_customer_came_another_way(api, api_a, client_a):
    url = f"{B24_URL}?client={client_a.slug}"
    api.post(url, data=b24_deal_json(client_a.webhook_secret), format="json")
    api_a.post(
        "/api/v1/customers/bulk/",
        data=[{"external_id": "b24-101", "email": "anna@example.ru"}],
        format="json",
    )
    assert not Order.objects.for_client(client_a).exists()

    # The next hook of this client, about anything, finds the deal ready.
    response = post_form(api, url, b24_contact_form(client_a.webhook_secret, contact_id="202"))

    assert response.json()["orders"]["created"] == 1
    assert response.json()["skipped"] == []
    order = Order.objects.for_client(client_a).select_related("customer").get()
    assert (order.external_id, order.customer.external_id) == ("b24-555", "b24-101")


# --------------------------------------------------------------------------------------------
# The staff admin of CRM deals: read-only, scoped to the manager's clients


def test_crm_deal_admin_is_read_only_and_scoped_to_own_clients(
    api, client, account_manager, client_a, client_b
):
    post_form(api, amo_url(client_a), AMO_WON_LEAD_ALONE)
    api.post(amo_url(client_b), data=amo_lead_json("7777", "142"), format="json")
    deal_a = CrmDeal.objects.for_client(client_a).get()
    deal_b = CrmDeal.objects.for_client(client_b).get()
    client.force_login(account_manager)

    listing = client.get(reverse("admin:clients_crmdeal_changelist"))
    page_a = client.get(reverse("admin:clients_crmdeal_change", args=[deal_a.pk]))
    page_b = client.get(reverse("admin:clients_crmdeal_change", args=[deal_b.pk]))
    add = client.get(reverse("admin:clients_crmdeal_add"))

    assert listing.status_code == 200
    content = listing.content.decode()
    assert "9001" in content
    assert "ждём контакт сделки" in content
    assert "7777" not in content
    assert page_a.status_code == 200
    assert 'name="status"' not in page_a.content.decode()  # shown, not editable
    assert page_b.status_code == 302  # the same as a missing object
    assert add.status_code == 403


def test_a_failed_webhook_leaves_nothing_half_written(api, client_a, monkeypatch):
    def broken_audit(**kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr("clients.services.audit_log", broken_audit)

    with pytest.raises(RuntimeError):
        post_form(api, amo_url(client_a), AMO_CONTACT_AND_WON_LEAD)

    assert not Customer.objects.for_client(client_a).exists()
    assert not CrmDeal.objects.for_client(client_a).exists()
    assert not Order.objects.for_client(client_a).exists()


@pytest.mark.parametrize(
    "form",
    [
        [("event", "ONCRMCONTACTADD"), ("data[FIELDS][NAME]", "Ив\x00ан")],
        [("event\x00", "ONCRMCONTACTADD")],
    ],
)
def test_webhook_form_with_a_nul_character_is_a_400_naming_the_field(api, client_a, form):
    url = f"{B24_URL}?client={client_a.slug}"
    response = post_form(api, url, [*form, ("auth[application_token]", client_a.webhook_secret)])
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "nul_character"
    assert response.json()["field"]
    assert not Customer.objects.for_client(client_a).exists()


def test_webhook_json_nested_1000_deep_is_a_400(api, client_a):
    url = f"{B24_URL}?client={client_a.slug}"
    body = '{"event": "ONCRMCONTACTADD", "data": ' + "[" * 1000 + "]" * 1000 + "}"
    response = api.post(url, data=body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_json_value"


def test_webhook_form_without_field_names_is_a_400(api, client_a):
    """Found by the schema fuzzer: a form whose only key is empty (``=null``) nests as a list
    (PHP's ``a[]``), not as fields: 400, not a 500."""
    url = f"{B24_URL}?client={client_a.slug}"
    response = api.post(url, data="=null", content_type=FORM)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_body"
