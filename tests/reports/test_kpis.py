"""KPIs per client per month (reports.kpis): figures computed by hand on a small client, the
time zone's month boundary, zero denominators as null, recomputation replacing, tier hiding,
the API (shape, bad input, other client), the admin action and the portal page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from clients.models import Customer, Order
from clients.services import client_create
from reports.kpis import kpi_months, kpis_compute
from reports.models import KpiMonth, SpendDay
from segments.models import CustomerScore

pytestmark = pytest.mark.django_db

MSK = ZoneInfo("Europe/Moscow")
NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=MSK)
D = Decimal


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=MSK)


def customer(client, name, predicted=None):
    c = Customer.objects.create(client=client, external_id=name)
    if predicted is not None:
        CustomerScore.objects.create(
            customer=c, client=client, predicted_clv=D(predicted), computed_at=NOW
        )
    return c


def order(client, who, when, amount, status=Order.Status.PAID):
    n = Order.objects.for_client(client).count()
    return Order.objects.create(
        client=client,
        customer=who,
        external_id=f"o{n}",
        placed_at=when,
        amount=D(amount),
        status=status,
    )


def spend(client, day, cost, source=SpendDay.Source.DIRECT, campaign="c1"):
    SpendDay.objects.create(client=client, source=source, day=day, campaign=campaign, cost=D(cost))


def build(client):
    """The hand-computed client (Moscow):

    - D: one order 2025-02-14 (800): active Feb 2025 … Jan 2026, churned in Feb 2026;
    - E: 2025-03-20 (400) and 2026-02-10 (600): bought again within 12 months, never churned;
    - A: 2026-01-10 (1000), 2026-01-31 23:30 Moscow (500, still January: 20:30 UTC),
      2026-03-05 (1500);
    - B: 2026-02-01 00:30 Moscow (2000: February, though 31 January in UTC), and a cancelled
      order of 9999 (not counted);
    - C: 2026-03-10 (300), no predicted CLV;
    - predicted CLV: A 3000, B 1000, D 200, E 500;
    - spend: January 3000 (Direct) + 1500 (CSV), February one row of 0, March none.
    """
    a = customer(client, "A", 3000)
    b = customer(client, "B", 1000)
    c = customer(client, "C")
    d = customer(client, "D", 200)
    e = customer(client, "E", 500)
    order(client, d, at(2025, 2, 14, 12), 800)
    order(client, e, at(2025, 3, 20, 12), 400)
    order(client, e, at(2026, 2, 10, 12), 600)
    order(client, a, at(2026, 1, 10, 12), 1000)
    order(client, a, at(2026, 1, 31, 23, 30), 500)
    order(client, a, at(2026, 3, 5, 12), 1500)
    order(client, b, at(2026, 2, 1, 0, 30), 2000)
    order(client, b, at(2026, 2, 20, 12), 9999, status=Order.Status.CANCELLED)
    order(client, c, at(2026, 3, 10, 12), 300)
    spend(client, dt.date(2026, 1, 15), 3000)
    spend(client, dt.date(2026, 1, 31), 1500, source=SpendDay.Source.CSV)
    spend(client, dt.date(2026, 2, 3), 0)
    return a, b, c, d, e


@pytest.fixture
def shop(db):
    client = client_create(name="Гамма", tier_code="advanced")
    build(client)
    return client


def months(client) -> dict[str, KpiMonth]:
    return {f"{r.month:%Y-%m}": r for r in KpiMonth.objects.for_client(client)}


EXPECTED = {
    "2026-01": {
        "revenue": D("1500.00"),
        "orders": 2,
        "buyers": 1,
        "new_customers": 1,
        "active_customers": 3,  # D, E, A
        "active_at_start": 2,  # D, E
        "churned_customers": 0,
        "repeat_buyers": 1,
        "customers_to_date": 3,
        "spend": D("4500.00"),
        "repeat_purchase_rate": D("1.0000"),
        "retention_rate": D("1.0000"),
        "churn_rate": D("0.0000"),
        "arpu": D("500.00"),  # 1500 / 3
        "aov": D("750.00"),
        "purchase_frequency": D("2.0000"),
        "historical_clv": D("900.00"),  # (800 + 400 + 1500) / 3
        "predicted_clv": D("1233.33"),  # (200 + 500 + 3000) / 3
        "cac": D("4500.00"),
        "ltv_cac": D("0.2000"),  # 900 / 4500
        "roas": D("0.3333"),  # 1500 / 4500
        "clv_roas": D("0.6667"),  # A's 3000 / 4500
        "cohort_clv": D("3000.00"),  # A: 1000 + 500 + 1500
    },
    "2026-02": {
        "revenue": D("2600.00"),
        "orders": 2,
        "buyers": 2,
        "new_customers": 1,
        "active_customers": 3,  # E, A, B (D's last order is 12 months old)
        "active_at_start": 3,
        "churned_customers": 1,  # D
        "repeat_buyers": 1,  # E
        "customers_to_date": 4,
        "spend": D("0.00"),
        "repeat_purchase_rate": D("0.5000"),
        "retention_rate": D("0.6667"),
        "churn_rate": D("0.3333"),
        "arpu": D("866.67"),
        "aov": D("1300.00"),
        "purchase_frequency": D("1.0000"),
        "historical_clv": D("1325.00"),  # 5300 / 4
        "predicted_clv": D("1175.00"),  # 4700 / 4
        "cac": D("0.00"),  # a real zero: spend imported, 0
        "ltv_cac": None,  # CAC 0
        "roas": None,  # spend 0
        "clv_roas": None,
        "cohort_clv": D("2000.00"),
    },
    "2026-03": {
        "revenue": D("1800.00"),
        "orders": 2,
        "buyers": 2,
        "new_customers": 1,
        "active_customers": 4,  # E (Feb 2026), A, B, C
        "active_at_start": 3,
        "churned_customers": 0,
        "repeat_buyers": 1,  # A
        "customers_to_date": 5,
        "spend": None,  # nothing imported: unknown, not zero
        "repeat_purchase_rate": D("0.5000"),
        "retention_rate": D("1.0000"),
        "churn_rate": D("0.0000"),
        "arpu": D("450.00"),
        "aov": D("900.00"),
        "purchase_frequency": D("1.0000"),
        "historical_clv": D("1420.00"),  # 7100 / 5
        "predicted_clv": D("1175.00"),  # C has no score
        "cac": None,
        "ltv_cac": None,
        "roas": None,
        "clv_roas": None,
        "cohort_clv": D("300.00"),
    },
}


def test_figures_by_hand(shop):
    written = kpis_compute(client=shop, now=NOW)
    rows = months(shop)
    assert written == 14 == len(rows)  # February 2025 … March 2026
    for month, expected in EXPECTED.items():
        got = {name: getattr(rows[month], name) for name in expected}
        assert got == expected, month


def test_empty_months_have_nulls_not_zeros(shop):
    kpis_compute(client=shop, now=NOW)
    rows = months(shop)
    first, quiet = rows["2025-02"], rows["2025-06"]
    assert (first.active_at_start, first.retention_rate, first.churn_rate) == (0, None, None)
    assert first.cohort_clv == D("800.00")
    assert (quiet.orders, quiet.buyers, quiet.new_customers) == (0, 0, 0)
    assert quiet.aov is None
    assert quiet.purchase_frequency is None
    assert quiet.repeat_purchase_rate is None
    assert quiet.cohort_clv is None
    assert quiet.cac is None
    assert quiet.arpu == D("0.00")  # no revenue over 2 active customers: a real 0
    assert (quiet.active_customers, quiet.retention_rate) == (2, D("1.0000"))


def test_month_boundary_is_the_clients_time_zone(db):
    client = client_create(name="Дельта", tier_code="advanced")
    buyer = customer(client, "x")
    order(client, buyer, at(2026, 1, 31, 23, 30), 100)  # 20:30 UTC
    order(client, buyer, dt.datetime(2026, 1, 31, 21, 30, tzinfo=dt.UTC), 50)  # 1 Feb Moscow
    kpis_compute(client=client, now=NOW)
    rows = months(client)
    assert (rows["2026-01"].revenue, rows["2026-02"].revenue) == (D("100.00"), D("50.00"))

    client.time_zone = "UTC"
    client.save(update_fields=["time_zone"])
    kpis_compute(client=client, now=NOW)
    rows = months(client)
    assert (rows["2026-01"].revenue, rows["2026-02"].revenue) == (D("150.00"), D("0.00"))


def test_recomputation_replaces(shop):
    kpis_compute(client=shop, now=NOW)
    first = {m: r.pk for m, r in months(shop).items()}
    a = Customer.objects.for_client(shop).get(external_id="A")
    order(shop, a, at(2026, 3, 14, 10), 200)
    assert kpis_compute(client=shop, now=NOW) == 14
    rows = months(shop)
    assert len(rows) == 14
    assert rows["2026-03"].revenue == D("2000.00")
    assert rows["2026-03"].orders == 3
    assert set(first) == set(rows)

    # Only the last month: older months are kept as they were written.
    KpiMonth.objects.for_client(shop).filter(month=dt.date(2026, 1, 1)).update(orders=99)
    order(shop, a, at(2026, 3, 14, 11), 100)
    assert kpis_compute(client=shop, months=1, now=NOW) == 1
    rows = months(shop)
    assert rows["2026-03"].revenue == D("2100.00")
    assert rows["2026-01"].orders == 99
    assert len(rows) == 14

    # Orders gone: the months go too.
    Order.objects.for_client(shop).delete()
    SpendDay.objects.for_client(shop).delete()
    assert kpis_compute(client=shop, now=NOW) == 0
    assert not KpiMonth.objects.for_client(shop).exists()


def test_other_clients_data_is_not_counted(shop):
    other = client_create(name="Чужой", tier_code="advanced")
    build(other)
    kpis_compute(client=shop, now=NOW)
    assert months(shop)["2026-01"].revenue == D("1500.00")
    assert not KpiMonth.objects.for_client(other).exists()


def test_tier_hides_predictive_and_cohort_figures(db):
    client = client_create(name="Эпсилон", tier_code="foundation")
    build(client)
    kpis_compute(client=client, now=NOW)
    rows, hidden = kpi_months(client=client, since=dt.date(2026, 1, 1))
    assert [r["month"] for r in rows] == ["2026-01", "2026-02", "2026-03"]
    assert set(hidden) == {"predicted_clv", "clv_roas", "cohort_clv"}
    assert "Advanced CVM" in hidden["predicted_clv"]
    assert rows[0]["predicted_clv"] is None
    assert rows[0]["clv_roas"] is None
    assert rows[0]["cohort_clv"] is None
    assert rows[0]["historical_clv"] == D("900.00")


def test_months_must_be_positive(shop):
    with pytest.raises(ValueError, match="months"):
        kpis_compute(client=shop, months=0)
