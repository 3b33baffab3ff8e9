"""Bad input on every batch endpoint (customers, orders, events, consents): a JSON value nested
1,000 levels deep, a NUL character in a text field and inside a JSON attribute, a lone
surrogate, an amount or a time in non-ASCII digits, an impossible date, a UTC offset beyond
±15:59. Each is a row error (index, field, code) -- never a 500: all or nothing, nothing is
written; with ?partial=true the good rows land and the bad one is listed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clients.ingest import ingest_records
from clients.models import Customer, Event, Order
from consent.models import ConsentRecord
from tests.consent.conftest import publish_texts

pytestmark = pytest.mark.django_db


def _deep(depth: int = 1000) -> Any:
    """A value nested ``depth`` levels, built without recursion (json.dumps would overflow)."""
    return _Raw("[" * depth + "]" * depth)


class _Raw:
    """JSON text spliced into a body as it is (for values json.dumps cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _body(records: list[dict[str, Any]]) -> str:
    """The records as JSON text: ASCII escapes (so a lone surrogate travels as \\ud800) and
    _Raw values spliced in."""
    raws: list[str] = []

    def default(value: Any) -> str:
        raws.append(value.text)
        return f"@@RAW{len(raws) - 1}@@"

    text = json.dumps(records, default=default, ensure_ascii=True)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


def _customer(i: int) -> dict[str, Any]:
    return {"external_id": f"n{i}", "email": f"n{i}@example.ru", "first_name": "Ольга"}


def _order(i: int) -> dict[str, Any]:
    return {
        "external_id": f"o{i}",
        "customer_external_id": "g0",
        "placed_at": "2025-03-01T12:00:00+03:00",
        "amount": "1500.00",
        "channel": "web",
        "items": [{"sku": "A1", "qty": 1, "price": 1500}],
    }


def _event(i: int) -> dict[str, Any]:
    return {
        "external_id": f"e{i}",
        "customer_external_id": "g0",
        "type": "cart",
        "occurred_at": "2025-03-01T12:00:00+03:00",
        "properties": {"sku": "A1"},
        "utm_source": "yandex",
    }


def _consent(i: int) -> dict[str, Any]:
    return {
        "customer_external_id": "g0",
        "purpose": "email_marketing",
        "action": "granted",
        "at": f"2025-03-0{i + 1}T12:00:00+03:00",
        "evidence": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "form_id": "f"},
    }


# kind -> (good record, url, {bad case: (field set on the record, value, expected field
# prefix, expected code)})
CASES: dict[str, tuple[Any, str, dict[str, tuple[str, Any, str, str]]]] = {
    "customers": (
        _customer,
        "/api/v1/customers/bulk/",
        {
            "deep": ("attributes", {"a": _deep()}, "attributes.a", "too_deep"),
            "nul_text": ("first_name", "Ол\x00ьга", "first_name", "nul_character"),
            "nul_json": ("attributes", {"note": "a\x00b"}, "attributes.note", "nul_character"),
            "surrogate": ("city", "Моск\ud800ва", "city", "lone_surrogate"),
            "digits": ("first_seen", "٢٠٢٤-٠١-٠١T00:00:00", "first_seen", "invalid_time"),
            "month_13": ("first_seen", "2026-13-01T00:00:00", "first_seen", "invalid_time"),
            "offset": ("first_seen", "2024-01-01T00:00:00+16:00", "first_seen", "invalid_time"),
        },
    ),
    "orders": (
        _order,
        "/api/v1/orders/bulk/",
        {
            "deep": ("items", _deep(), "items", "too_deep"),
            "nul_text": ("channel", "w\x00eb", "channel", "nul_character"),
            "nul_json": ("items", [{"sku": "A\x001", "qty": 1}], "items[0].sku", "nul_character"),
            "surrogate": ("channel", "\ud800", "channel", "lone_surrogate"),
            "digits": ("amount", "١٢٣", "amount", "invalid_amount"),
            "month_13": ("placed_at", "2026-13-01T00:00:00", "placed_at", "invalid_time"),
            "offset": ("placed_at", "2025-01-01T00:00:00-16:30", "placed_at", "invalid_time"),
            "too_big": ("amount", "9999999999999.99", "amount", "invalid_amount"),
        },
    ),
    "events": (
        _event,
        "/api/v1/events/bulk/",
        {
            "deep": ("properties", {"p": _deep()}, "properties.p", "too_deep"),
            "nul_text": ("utm_source", "ya\x00", "utm_source", "nul_character"),
            "nul_json": ("properties", {"k": "\x00"}, "properties.k", "nul_character"),
            "surrogate": ("utm_source", "\udfff", "utm_source", "lone_surrogate"),
            "digits": ("occurred_at", "٢٠٢٥-٠٣-٠١", "occurred_at", "invalid_time"),
            "month_13": ("occurred_at", "2025-13-01T00:00:00", "occurred_at", "invalid_time"),
            "offset": ("occurred_at", "2025-01-01T00:00:00+99:00", "occurred_at", "invalid_time"),
        },
    ),
    "consents": (
        _consent,
        "/api/v1/consents/",
        {
            "deep": ("evidence", {"url": _deep()}, "evidence.url", "too_deep"),
            "nul_text": ("subject_id", "abc\x00def", "subject_id", "nul_character"),
            "nul_json": (
                "evidence",
                {"user_agent": "M\x00"},
                "evidence.user_agent",
                "nul_character",
            ),
            "surrogate": ("purpose", "\ud800", "purpose", "lone_surrogate"),
            "digits": ("at", "٢٠٢٥-٠٣-٠١T12:00:00", "at", "invalid_time"),
            "month_13": ("at", "2025-13-01T12:00:00", "at", "invalid_time"),
            "offset": ("at", "2025-03-01T12:00:00+16:00", "at", "invalid_time"),
        },
    ),
}

PARAMS = [(kind, case) for kind, (_good, _url, cases) in CASES.items() for case in cases]


@pytest.fixture
def base_a(client_a):
    """The customer the orders, events and consents refer to, and published consent texts."""
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "g0"}])
    publish_texts(client_a)
    return client_a


def _stored(kind: str, client) -> set[str]:
    if kind == "customers":
        return set(Customer.objects.for_client(client).values_list("external_id", flat=True))
    if kind == "orders":
        return set(Order.objects.for_client(client).values_list("external_id", flat=True))
    if kind == "events":
        return set(Event.objects.for_client(client).values_list("external_id", flat=True))
    return {str(at) for at in ConsentRecord.objects.for_client(client).values_list("at", flat=True)}


@pytest.mark.parametrize("partial", [False, True], ids=["all_or_nothing", "partial"])
@pytest.mark.parametrize(("kind", "case"), PARAMS)
def test_bad_row_is_a_row_error_never_a_500(api_a, base_a, kind, case, partial):
    make, url, cases = CASES[kind]
    field, value, expected_field, expected_code = cases[case]
    records = [make(0), make(1), make(2)]
    records[1][field] = value
    before = _stored(kind, base_a)

    response = api_a.post(
        url + ("?partial=true" if partial else ""),
        data=_body(records),
        content_type="application/json",
    )

    body = response.json()
    assert response.status_code == (200 if partial else 422), body
    assert body["total"] == 3
    assert body["rejected"] == 1
    assert {e["index"] for e in body["errors"]} == {1}, body["errors"]
    error = body["errors"][0]
    assert error["field"].startswith(expected_field), error
    assert error["code"] == expected_code, error
    assert error["message"]
    after = _stored(kind, base_a)
    if partial:
        assert body["committed"] is True
        assert body["created"] == 2
        assert len(after - before) == 2  # both good rows, nothing of the bad one
        if kind != "consents":
            assert after - before == {make(0)["external_id"], make(2)["external_id"]}
    else:
        assert body["committed"] is False
        assert body["created"] == 0
        assert after == before  # nothing written


def test_a_lone_bad_value_outside_a_batch_is_a_400_naming_the_json_path(api_a, base_a):
    """The same faults outside a batch (one consent; a segment) answer 400 with the path."""
    one = _consent(0)
    one["evidence"]["url"] = "https://shop.example.ru/\x00"
    response = api_a.post(
        "/api/v1/consents/", data=_body([one])[1:-1], content_type="application/json"
    )
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid_json_value"
    assert response.json()["field"] == "$.evidence.url"
    assert ConsentRecord.objects.for_client(base_a).count() == 0

    deep = '{"name": "x", "kind": "rule", "definition": ' + "[" * 5000 + "]" * 5000 + "}"
    response = api_a.post("/api/v1/segments/", data=deep, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_json_value"
    assert response.json()["field"].startswith("$.definition[0][0]")

    response = api_a.post(
        "/api/v1/segments/", data='{"name": "\\ud800"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "$.name"
    assert list(response.json()["errors"]) == ["$.name"]
    assert "суррогат" in response.json()["errors"]["$.name"][0]

    response = api_a.post("/api/v1/segments/", data='{"a": 1e400}', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"$.a": ["число вне диапазона"]}


def test_a_body_nested_100_000_deep_is_a_4xx(api_a, base_a):
    """An array of arrays: its first record is too deep (a row error); an object: a 400."""
    response = api_a.post(
        "/api/v1/customers/bulk/",
        data="[" * 100_000 + "]" * 100_000,
        content_type="application/json",
    )
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["index"] == 0
    assert response.json()["errors"][0]["code"] == "too_deep"
    response = api_a.post(
        "/api/v1/customers/bulk/",
        data='{"a": ' * 100_000 + "1" + "}" * 100_000,
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_json_value"
    assert Customer.objects.for_client(base_a).count() == 1


@pytest.mark.parametrize(
    ("url", "params", "name"),
    [
        ("/api/v1/customers/", {"updated_since": "2026-13-01T00:00:00"}, "updated_since"),
        ("/api/v1/orders/", {"updated_since": "2026-01-01T00:00:00+16:00"}, "updated_since"),
        ("/api/v1/events/", {"updated_since": "2026-01-01T00:00:00-23:59"}, "updated_since"),
        ("/api/v1/customers/", {"updated_since": "٢٠٢٤-٠١-٠١"}, "updated_since"),
        ("/api/v1/customers/", {"external_id": "a\x00"}, "external_id"),
        ("/api/v1/customers/", {"email": "\x00@x.ru"}, "email"),
        ("/api/v1/orders/", {"customer_external_id": "\x00"}, "customer_external_id"),
        ("/api/v1/segments/", {"x\x00": "1"}, "x\\u0000"),
    ],
)
def test_bad_filters_answer_400_naming_the_parameter(api_a, client_a, url, params, name):
    response = api_a.get(url, params)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == name
    assert response.json()["message"]


def test_updated_since_reads_offsets_and_the_clients_zone(api_a, client_a):
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "c1"}])
    for since, found in [
        ("2000-01-01", 1),
        ("2000-01-01T00:00:00+15:59", 1),
        ("2100-01-01T00:00:00-15:59", 0),
    ]:
        response = api_a.get("/api/v1/customers/", {"updated_since": since})
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == found


def test_nul_in_query_strings_is_a_400_on_pages_too(client, client_a):
    """Not only the API: a page's query parameter with a NUL never reaches PostgreSQL."""
    response = client.get("/consent/banner.js", {"site": "a\x00"})
    assert response.status_code == 400
    response = client.post(
        "/consent/api/banner/?site=%00", data="{}", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "site"
