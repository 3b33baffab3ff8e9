"""What a new user tripped over in ingestion: first_seen taken from the customer's own history,
replays counted as unchanged, not as updated."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from clients.ingest import ingest_records
from clients.models import Customer
from clients.services import csv_import

pytestmark = pytest.mark.django_db


def _first_seen(client, external_id: str = "c1") -> datetime:
    return Customer.objects.for_client(client).get(external_id=external_id).first_seen


def _order(external_id: str, placed_at: str, customer: str = "c1") -> dict:
    return {
        "external_id": external_id,
        "customer_external_id": customer,
        "placed_at": placed_at,
        "amount": "100",
    }


def test_first_seen_comes_from_the_earliest_order_or_event(client_a):
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "c1"}])
    created = Customer.objects.for_client(client_a).get()
    assert timezone.now() - created.first_seen < timedelta(minutes=5)  # no history yet: now

    ingest_records(
        client=client_a, kind="orders", records=[_order("o1", "2021-06-01T10:00:00+00:00")]
    )
    assert _first_seen(client_a) == datetime(2021, 6, 1, 10, tzinfo=UTC)
    moved = Customer.objects.for_client(client_a).get()
    assert moved.updated_at > created.updated_at  # a change the API's updated_since shows

    # An older order arriving later moves it earlier again; a newer one never moves it later.
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            _order("o2", "2020-02-01T00:00:00+00:00"),
            _order("o3", "2024-01-01T00:00:00+00:00"),
        ],
    )
    assert _first_seen(client_a) == datetime(2020, 2, 1, tzinfo=UTC)

    ingest_records(
        client=client_a,
        kind="events",
        records=[
            {
                "customer_external_id": "c1",
                "type": "page_view",
                "occurred_at": "2019-12-31T21:00:00+00:00",
            }
        ],
    )
    assert _first_seen(client_a) == datetime(2019, 12, 31, 21, tzinfo=UTC)


def test_first_seen_given_earlier_than_the_orders_is_kept(client_a):
    ingest_records(
        client=client_a,
        kind="customers",
        records=[
            {"external_id": "c1", "first_seen": "2018-01-01T00:00:00+00:00"},
            {"external_id": "c2"},
        ],
    )
    ingest_records(
        client=client_a,
        kind="orders",
        records=[_order("o1", "2021-06-01T00:00:00+00:00"), _order("o2", "2022-01-01", "c2")],
    )
    assert _first_seen(client_a) == datetime(2018, 1, 1, tzinfo=UTC)
    assert _first_seen(client_a, "c2") == datetime(2021, 12, 31, 21, tzinfo=UTC)  # Moscow


def test_first_seen_from_a_csv_of_orders(client_a):
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "c1"}])
    text = "external_id,customer_external_id,placed_at,amount\no1,c1,15.03.2019 12:00,10\n"
    csv_import(client=client_a, kind="orders", file=io.BytesIO(text.encode()))
    assert _first_seen(client_a) == datetime(2019, 3, 15, 9, tzinfo=UTC)


def _customers(n: int) -> list[dict]:
    return [
        {"external_id": f"c{i}", "email": f"c{i}@example.ru", "attributes": {"n": i}}
        for i in range(n)
    ]


def test_a_replayed_bulk_counts_unchanged_rows_as_unchanged(api_a, client_a):
    records = _customers(5000)
    first = api_a.post("/api/v1/customers/bulk/", records, format="json").json()
    assert (first["created"], first["updated"], first["unchanged"]) == (5000, 0, 0)

    replay = api_a.post("/api/v1/customers/bulk/", records, format="json").json()
    assert (replay["created"], replay["updated"], replay["unchanged"]) == (0, 0, 5000)

    records[7]["attributes"] = {"n": "changed"}
    records[8]["email"] = "C8@EXAMPLE.RU"  # the same address once normalised: no change
    changed = api_a.post("/api/v1/customers/bulk/", records, format="json").json()
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 4999)


def test_a_replayed_csv_counts_unchanged_rows(client_a):
    ingest_records(client=client_a, kind="customers", records=_customers(3))
    text = "external_id,customer_external_id,placed_at,amount\n" + "".join(
        f"o{i},c{i % 3},2025-01-0{i + 1} 10:00,{i}0\n" for i in range(6)
    )
    first = csv_import(client=client_a, kind="orders", file=io.BytesIO(text.encode()))
    replay = csv_import(client=client_a, kind="orders", file=io.BytesIO(text.encode()))
    assert (first.created, first.updated, first.unchanged) == (6, 0, 0)
    assert (replay.created, replay.updated, replay.unchanged) == (0, 0, 6)
    changed = text.replace("o5,c2,2025-01-06 10:00,50", "o5,c2,2025-01-06 10:00,55")
    again = csv_import(client=client_a, kind="orders", file=io.BytesIO(changed.encode()))
    assert (again.created, again.updated, again.unchanged) == (0, 1, 5)
