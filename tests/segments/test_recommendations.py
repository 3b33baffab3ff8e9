"""Recommendations in the scoring run (real PostgreSQL): written for the client's customers,
read back in one query by the selector campaigns call, in the access archive, gone on erasure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from clients.ingest import ingest_records
from clients.models import Customer
from consent.requests import access_archive_sections, customer_erase
from segments.models import CustomerRecommendation, ScoringRun, ScoringSettings
from segments.selectors import recommendations_for
from segments.services import (
    load_order_lines,
    recommendations_compute,
    scoring_run_execute,
    scoring_run_request,
    scoring_settings_save,
    write_recommendations,
)

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 6, 30)


def item(sku: str, name: str | None = None, qty: int = 1, price: str = "100") -> dict:
    found = {"sku": sku, "qty": qty, "price": price}
    if name is not None:
        found["name"] = name
    return found


@pytest.fixture
def shop(client_a):
    return _shop_orders(client_a)


def _shop_orders(client_a):
    """Orders (customer: products): c1 A B; c2 A B(x2); c3 A C; c4 B C; c5 D refunded only;
    c6 nothing. Pairs: A-B 2 orders, A-C 1, B-C 1. Quantities sold: B 4, A 3, C 2."""
    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": f"c{i}"} for i in range(1, 7)],
    )
    orders = [
        ("o1", "c1", "2026-06-01T12:00:00+03:00", [item("A", "Кофе", price="450.5"), item("B")]),
        ("o2", "c2", "2026-06-02T12:00:00+03:00", [item("A", "Кофе"), item("B", "Фильтры", 2)]),
        ("o3", "c3", "2026-06-03T12:00:00+03:00", [item("A"), item("C", "Кружка", price="300")]),
        (
            "o4",
            "c4",
            "2026-06-04T12:00:00+03:00",
            [item("B", "Фильтры"), item("C", "Кружка 300 мл", price="350.00")],
        ),
    ]
    records = [
        {
            "external_id": external_id,
            "customer_external_id": customer,
            "placed_at": placed_at,
            "amount": "1000",
            "items": items,
        }
        for external_id, customer, placed_at, items in orders
    ]
    records.append(
        {
            "external_id": "o5",
            "customer_external_id": "c5",
            "placed_at": "2026-06-05T12:00:00+03:00",
            "amount": "500",
            "status": "refunded",
            "items": [item("D", "Возврат", qty=10)],
        }
    )
    ingest_records(client=client_a, kind="orders", records=records)
    return client_a


def run(client) -> ScoringRun:
    return scoring_run_execute(run=scoring_run_request(client=client, source="cli"), as_of=AS_OF)


def ids(client) -> dict[str, int]:
    return dict(Customer.objects.for_client(client).values_list("external_id", "pk"))


def products(client, external_id: str) -> list[str]:
    found = recommendations_for(client=client, customer_ids=[ids(client)[external_id]])
    return [p["id"] for p in found[ids(client)[external_id]]]


def test_order_lines_are_read_from_paid_orders_items(shop):
    lines, catalog = load_order_lines(shop)
    assert sorted(lines["product"]) == ["A", "A", "A", "B", "B", "B", "C", "C"]  # no D
    assert lines.loc[lines["product"] == "B", "qty"].sum() == 4
    c = ids(shop)
    assert sorted(zip(lines["customer_id"], lines["product"], strict=True)) == sorted(
        [(c["c1"], "A"), (c["c1"], "B"), (c["c2"], "A"), (c["c2"], "B")]
        + [(c["c3"], "A"), (c["c3"], "C"), (c["c4"], "B"), (c["c4"], "C")]
    )
    assert lines["placed_at"].min() == pd.Timestamp("2026-06-01 09:00")  # UTC
    # The last name and price seen (o4 renamed the mug; B was named only from o2 on).
    assert catalog.to_dict("index") == {
        "A": {"name": "Кофе", "price": 100.0},
        "B": {"name": "Фильтры", "price": 100.0},
        "C": {"name": "Кружка 300 мл", "price": 350.0},
    }


def test_odd_items_are_skipped_or_read_safely(client_a):
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "x"}])
    Customer.objects.for_client(client_a).get()
    from clients.models import Order

    customer = Customer.objects.for_client(client_a).get()
    Order.objects.create(
        client=client_a,
        customer=customer,
        external_id="odd",
        placed_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        amount=1,
        items=[
            "not an object",
            {"name": "no sku"},
            {"sku": "  "},
            {"sku": 42, "qty": "2.0", "price": "abc", "name": "  "},
            {"sku": "Q", "qty": "many"},
            {"sku": "Q", "name": "Альфа", "price": 10, "qty": 3},
            {"sku": "Q", "name": "Бета", "price": "9.50"},
            {"sku": "R", "price": -5, "qty": 0},
        ],
    )
    Order.objects.create(
        client=client_a,
        customer=customer,
        external_id="not-a-list",
        placed_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        amount=1,
        items={"sku": "X"},
    )
    lines, catalog = load_order_lines(client_a)
    assert sorted(zip(lines["product"], lines["qty"], strict=True)) == [
        ("42", 2),
        ("Q", 1),
        ("Q", 1),
        ("Q", 3),
        ("R", 1),
    ]
    assert catalog.loc["42", "name"] is None
    assert pd.isna(catalog.loc["42", "price"])
    assert pd.isna(catalog.loc["R", "price"])
    # The same SKU twice in one order: the greater name, the greater price (as numbers).
    assert (catalog.loc["Q", "name"], catalog.loc["Q", "price"]) == ("Бета", 10.0)
    # The embedded path (SQLite: the ORM and segments.recommend.product_catalog) agrees.
    from django.db import connection

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection, "vendor", "sqlite")
        orm_lines, orm_catalog = load_order_lines(client_a)
    assert sorted(zip(orm_lines["product"], orm_lines["qty"], strict=True)) == sorted(
        zip(lines["product"], lines["qty"], strict=True)
    )
    assert orm_catalog.fillna(-1).to_dict("index") == catalog.fillna(-1).to_dict("index")


def test_the_scoring_run_writes_every_customers_recommendations(shop):
    done = run(shop)
    assert done.status == ScoringRun.Status.SUCCEEDED
    assert done.parameters["recommendations"] == {
        "per_customer": 5,
        "order_lines": 8,
        "products": 3,
        "customers": 6,
        "customers_with_co_purchase": 4,
        "co_purchase": 4,
        "best_seller": 6,
    }
    assert {"recommend_extract", "recommend", "recommend_write"} <= set(done.stage_seconds)
    # c1 owns A B: C (A-C 1 + B-C 1); nothing else is left to sell.
    assert products(shop, "c1") == ["C"]
    # c3 owns A C: B (A-B 2 + B-C 1).
    assert products(shop, "c3") == ["B"]
    # c4 owns B C: A (A-B 2 + A-C 1).
    assert products(shop, "c4") == ["A"]
    # c5 bought nothing paid (a refund), c6 nothing: best sellers by quantity, B 4, A 3, C 2.
    assert products(shop, "c5") == products(shop, "c6") == ["B", "A", "C"]
    rows = CustomerRecommendation.objects.for_client(shop)
    assert rows.count() == 6
    assert set(rows.values_list("run_id", flat=True)) == {done.pk}

    # The next run replaces them (no duplicates), with the client's N.
    scoring_settings_save(
        client=shop, values={"recommendations_count": 1}, source="admin", actor=None
    )
    again = run(shop)
    assert CustomerRecommendation.objects.for_client(shop).count() == 6
    assert set(rows.values_list("run_id", flat=True)) == {again.pk}
    assert products(shop, "c6") == ["B"]


def test_the_selector_shape_in_one_query(shop, client_b, django_assert_num_queries):
    run(shop)
    ingest_records(client=client_b, kind="customers", records=[{"external_id": "b1"}])
    other = Customer.objects.for_client(client_b).get().pk
    c = ids(shop)
    with django_assert_num_queries(1):
        found = recommendations_for(client=shop, customer_ids=[c["c1"], c["c5"], other])
    assert found == {
        # The latest name and price seen in the orders (o4 renamed the mug).
        c["c1"]: [{"id": "C", "name": "Кружка 300 мл", "price": Decimal("350.00")}],
        c["c5"]: [
            {"id": "B", "name": "Фильтры", "price": Decimal("100.00")},
            {"id": "A", "name": "Кофе", "price": Decimal("100.00")},
            {"id": "C", "name": "Кружка 300 мл", "price": Decimal("350.00")},
        ],
        other: [],  # another client's customer: nothing
    }
    assert recommendations_for(client=shop, customer_ids=[]) == {}


def test_a_product_never_named_is_shown_by_its_sku(client_a):
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "x"}])
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            {
                "external_id": "o",
                "customer_external_id": "x",
                "placed_at": "2026-06-01T12:00:00+03:00",
                "amount": "1",
                "items": [{"sku": " Z-1 ", "qty": 1, "price": "1"}],
            }
        ],
    )
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "y"}])
    run(client_a)
    y = ids(client_a)["y"]
    assert recommendations_for(client=client_a, customer_ids=[y]) == {
        y: [{"id": "Z-1", "name": "Z-1", "price": Decimal("1.00")}]
    }


def test_access_archive_lists_them_and_erasure_deletes_them(shop):
    done = run(shop)
    c1 = Customer.objects.for_client(shop).get(external_id="c1")
    sections = dict(access_archive_sections(customer=c1))
    assert sections["recommendations"] == [
        {
            "rank": 1,
            "product_id": "C",
            "name": "Кружка 300 мл",
            "price": "350.00",
            "why": "куплено вместе с покупками покупателя",
            "computed_at": sections["recommendations"][0]["computed_at"],
            "scoring_run_id": done.pk,
        }
    ]
    others = CustomerRecommendation.objects.for_client(shop).exclude(customer=c1).count()

    customer_erase(customer=c1)

    assert not CustomerRecommendation.objects.for_client(shop).filter(customer=c1).exists()
    assert CustomerRecommendation.objects.for_client(shop).count() == others
    assert dict(access_archive_sections(customer=c1))["recommendations"] == []
    # A later run gives the erased person nothing, while their order still counts as a basket.
    run(shop)
    assert recommendations_for(client=shop, customer_ids=[c1.pk]) == {c1.pk: []}
    assert products(shop, "c3") == ["B"]


def test_the_setting_is_checked(client_a, api_a):
    from segments.services import ScoringSettingsError

    with pytest.raises(ScoringSettingsError) as refused:
        scoring_settings_save(client=client_a, values={"recommendations_count": 0}, source="api")
    assert refused.value.field == "recommendations_count"
    assert not ScoringSettings.objects.for_client(client_a).exists()
    url = "/api/v1/scoring/settings/"
    assert api_a.get(url).json()["recommendations_count"] == 5
    too_many = api_a.patch(url, {"recommendations_count": 21}, format="json")
    assert too_many.status_code == 400
    assert too_many.json()["field"] == "recommendations_count"
    assert api_a.patch(url, {"recommendations_count": 3}, format="json").status_code == 200
    assert ScoringSettings.objects.for_client(client_a).get().recommendations_count == 3


def test_the_admin_form_keeps_the_count_when_a_form_leaves_it_out(
    client, account_manager, client_a
):
    from django.urls import reverse

    client.force_login(account_manager)
    form = {
        "client": client_a.pk,
        "onboarding_days": 30,
        "at_risk_after_days": 30,
        "win_back_after_days": 60,
        "clv_months": 12,
        "monthly_discount_rate": "0.01",
        "gross_margin": "0.35",
        "holdout_days": 90,
    }
    assert client.post(reverse("admin:segments_scoringsettings_add"), form).status_code == 302
    saved = ScoringSettings.objects.for_client(client_a).get()
    assert saved.recommendations_count == 5
    form["recommendations_count"] = 8
    url = reverse("admin:segments_scoringsettings_change", args=[saved.pk])
    assert client.post(url, form).status_code == 302
    saved.refresh_from_db()
    assert saved.recommendations_count == 8
    form["recommendations_count"] = 30
    assert client.post(url, form).status_code == 200  # refused at the field
    saved.refresh_from_db()
    assert saved.recommendations_count == 8


def test_the_embedded_path_reads_the_same_lines_and_catalogue(shop, monkeypatch):
    """SQLite (the embedded first run) reads items through the ORM and the pure catalogue:
    the same lines and the same names and prices as the PostgreSQL query."""
    lines, catalog = load_order_lines(shop)
    from django.db import connection

    monkeypatch.setattr(connection, "vendor", "sqlite")
    orm_lines, orm_catalog = load_order_lines(shop)
    key = ["order_id", "product"]
    pd.testing.assert_frame_equal(
        lines.sort_values(key).reset_index(drop=True),
        orm_lines.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    assert orm_catalog.to_dict("index") == catalog.to_dict("index")
    # And the rows written through the ORM read back the same.
    written, _, _ = recommendations_compute(
        client=shop, customers=np.array(sorted(ids(shop).values())), as_of=AS_OF, n=5
    )
    bench_run = ScoringRun.objects.create(client=shop, source="cli")
    write_recommendations(client=shop, run=bench_run, products=written)
    monkeypatch.undo()
    assert products(shop, "c5") == ["B", "A", "C"]
    assert products(shop, "c3") == ["B"]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_items_are_read_on_a_helper_connection(monkeypatch):
    """The nightly run (no caller's transaction): the lines are read on a helper thread while the
    scores are computed, and the recommendations land as in a transaction."""
    import threading

    from segments import services
    from tests.segments.test_scoring_io import _committed_client

    client = _committed_client("Рекомендации")
    _shop_orders(client)
    threads = []
    read = services._order_lines_on_own_connection

    def watched(client):
        threads.append(threading.current_thread().name)
        return read(client)

    monkeypatch.setattr(services, "_order_lines_on_own_connection", watched)
    done = run(client)
    assert done.status == ScoringRun.Status.SUCCEEDED, done.error
    assert threads
    assert threads[0].startswith("scoring-order-lines")
    assert products(client, "c3") == ["B"]
    assert products(client, "c6") == ["B", "A", "C"]
