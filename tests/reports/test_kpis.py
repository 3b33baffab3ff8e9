"""KPIs per client per month (reports.kpis): figures computed by hand on a small client, the
time zone's month boundary, zero denominators as null, recomputation replacing, tier hiding,
the API (shape, bad input, other client), the admin action and the portal page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

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


# ---------------------------------------------------------------------------------------------
# The nightly task


def test_nightly_task_recomputes_the_last_months_and_waits_for_scoring(shop, monkeypatch):
    from agency.jobs import RUNNING
    from reports import tasks
    from segments.models import ScoringRun

    kpis_compute(client=shop, now=NOW)
    KpiMonth.objects.for_client(shop).update(orders=77)
    run = ScoringRun.objects.create(client=shop, status=RUNNING)
    later = []
    monkeypatch.setattr(
        tasks.kpis_client_task, "apply_async", lambda args, countdown: later.append(args)
    )
    assert tasks.kpis_client_task(shop.pk) is None
    assert later == [(shop.pk, 1)]
    assert set(KpiMonth.objects.for_client(shop).values_list("orders", flat=True)) == {77}

    ScoringRun.objects.for_client(shop).filter(pk=run.pk).update(status="succeeded")
    current = timezone.localdate(timezone=shop.tzinfo).replace(day=1)
    written = tasks.kpis_client_task(shop.pk, 1)
    assert written == KpiMonth.objects.for_client(shop).count() > 14  # up to this month
    assert not KpiMonth.objects.for_client(shop).filter(orders=77).exists()
    assert KpiMonth.objects.for_client(shop).get(month=dt.date(2026, 1, 1)).orders == 2
    assert KpiMonth.objects.for_client(shop).filter(month=current).get().orders == 0


def test_nightly_fan_out_is_on_beat(shop, monkeypatch):
    from config.schedules import PERIODIC_TASKS
    from reports import tasks

    sent = []
    monkeypatch.setattr(tasks.kpis_client_task, "delay", sent.append)
    assert shop.pk in tasks.kpis_daily_task()
    assert shop.pk in sent
    entry = next(t for t in PERIODIC_TASKS if t["task"] == "reports.tasks.kpis_daily_task")
    scoring = next(t for t in PERIODIC_TASKS if t["task"] == "segments.tasks.scoring_daily_task")
    assert int(entry["crontab"]["hour"]) > int(scoring["crontab"]["hour"])


# ---------------------------------------------------------------------------------------------
# API


def test_api_shape_and_hidden_figures(client_a, api_a):
    build(client_a)
    kpis_compute(client=client_a, now=NOW)
    response = api_a.get("/api/v1/kpis/", {"from": "2026-01", "to": "2026-02"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"], body["to"], body["currency"]) == ("2026-01", "2026-02", "RUB")
    assert [m["month"] for m in body["months"]] == ["2026-01", "2026-02"]
    january = body["months"][0]
    assert january["revenue"] == "1500.00"
    assert january["active_customers"] == 3
    assert january["retention_rate"] == "1.0000"
    assert january["roas"] == "0.3333"
    assert january["predicted_clv"] is None  # Foundation: hidden
    assert january["cohort_clv"] is None
    assert body["months"][1]["roas"] is None  # spend 0
    assert set(body["hidden"]) == {"predicted_clv", "clv_roas", "cohort_clv"}


def test_api_shows_predictive_figures_on_advanced(client_b, api_b):
    build(client_b)
    kpis_compute(client=client_b, now=NOW)
    body = api_b.get("/api/v1/kpis/?from=2026-01&to=2026-01").json()
    assert body["hidden"] == {}
    assert body["months"][0]["predicted_clv"] == "1233.33"
    assert body["months"][0]["cohort_clv"] == "3000.00"


def test_api_other_client_sees_nothing_of_it(client_a, client_b, api_b):
    build(client_a)
    kpis_compute(client=client_a, now=NOW)
    body = api_b.get("/api/v1/kpis/?from=2025-01&to=2026-12").json()
    assert body["months"] == []
    assert KpiMonth.objects.for_client(client_a).count() == 14


def test_api_default_range_ends_this_month(api_a, client_a):
    body = api_a.get("/api/v1/kpis/").json()
    current = timezone.localdate(timezone=client_a.tzinfo)
    assert body["to"] == f"{current:%Y-%m}"
    assert body["months"] == []


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"from": "2026-13"}, "invalid_month", "from"),
        ({"from": "2026-1"}, "invalid_month", "from"),
        ({"to": "января"}, "invalid_month", "to"),
        ({"from": "0000-01"}, "invalid_month", "from"),
        ({"from": "2026-03", "to": "2026-01"}, "invalid_range", "from"),
    ],
)
def test_api_bad_months_are_400(api_a, query, code, field):
    response = api_a.get("/api/v1/kpis/", query)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["field"] == field


def test_api_needs_a_key(client):
    assert client.get("/api/v1/kpis/").status_code in (401, 403)


def test_schema_documents_the_endpoint(api_a):
    schema = api_a.get("/api/schema/", {"format": "json"}).json()
    assert "/api/v1/kpis/" in schema["paths"]
    assert "months" in schema["components"]["schemas"]["KpiResponse"]["properties"]


# ---------------------------------------------------------------------------------------------
# Admin and portal


def test_admin_lists_read_only_and_recomputes(client, agency_admin, shop):
    from django.urls import reverse

    from agency.models import AuditLogEntry

    kpis_compute(client=shop, now=NOW)
    KpiMonth.objects.for_client(shop).update(orders=55)
    client.force_login(agency_admin)
    url = reverse("admin:reports_kpimonth_changelist")
    page = client.get(url)
    assert page.status_code == 200
    assert "2026" in page.content.decode()
    row = KpiMonth.objects.for_client(shop).first()
    assert client.get(reverse("admin:reports_kpimonth_add")).status_code == 403
    response = client.post(url, {"action": "recompute", "_selected_action": [row.pk]})
    assert response.status_code == 302
    # Every month of the client again (up to this month), from the orders.
    jan = KpiMonth.objects.for_client(shop).get(month=dt.date(2026, 1, 1))
    assert jan.orders == 2
    assert not KpiMonth.objects.for_client(shop).filter(orders=55).exists()
    assert AuditLogEntry.objects.filter(action="kpis.recomputed", client=shop).exists()


def test_analyst_cannot_recompute(client, analyst, shop):
    from django.urls import reverse

    kpis_compute(client=shop, now=NOW)
    KpiMonth.objects.for_client(shop).update(orders=55)
    client.force_login(analyst)
    row = KpiMonth.objects.for_client(shop).first()
    url = reverse("admin:reports_kpimonth_changelist")
    client.post(url, {"action": "recompute", "_selected_action": [row.pk]})
    assert set(KpiMonth.objects.for_client(shop).values_list("orders", flat=True)) == {55}


def test_portal_page(client, portal_owner_a, client_a, client_b):
    from django.urls import reverse

    build(client_a)
    kpis_compute(client=client_a, months=24)
    client.force_login(portal_owner_a)
    page = client.get(reverse("portal:kpis", args=[client_a.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="kpi-table"' in html
    assert 'id="kpi-data"' in html
    assert "portal/kpis.js" in html
    assert "<script>" not in html  # CSP: no inline script
    assert 'id="kpi-hidden"' in html  # Foundation: predictive and cohort figures hidden
    assert "Прогноз CLV, ₽: Доступно с тарифа Advanced CVM" in html
    assert reverse("portal:kpis", args=[client_a.slug]) in html  # in the nav
    assert page.context["rows"][-1]["predicted_clv"] is None
    assert client.get(reverse("portal:kpis", args=[client_b.slug])).status_code == 404


# ---------------------------------------------------------------------------------------------
# The pandas path (SQLite, the benchmark's check) gives the same figures


def test_pandas_path_matches_the_sql_statement(shop):
    from reports.kpi_frames import kpi_rows, month_index
    from reports.kpis import FIGURES, kpi_frames_load

    kpis_compute(client=shop, now=NOW)
    stored = list(KpiMonth.objects.for_client(shop).order_by("month").values("month", *FIGURES))
    orders, scores, spend = kpi_frames_load(client=shop)
    rows = kpi_rows(orders, scores, spend, current_month=month_index(dt.date(2026, 3, 1)))
    assert rows == stored
    march = rows[-1]
    assert {k: march[k] for k in EXPECTED["2026-03"]} == EXPECTED["2026-03"]


def test_non_postgresql_database_takes_the_pandas_path(shop, monkeypatch):
    from django.db import connection

    monkeypatch.setattr(connection, "vendor", "sqlite")
    assert kpis_compute(client=shop, now=NOW) == 14
    rows = months(shop)
    for month, expected in EXPECTED.items():
        assert {name: getattr(rows[month], name) for name in expected} == expected, month
    assert kpis_compute(client=shop, months=1, now=NOW) == 1
    assert len(months(shop)) == 14


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_twelve_month_window_edges(db, monkeypatch, vendor):
    """P buys in January 2025 and January 2026 (12 months apart: active throughout); Q in
    January 2025 and February 2026 (13 months: churned in January 2026, back in February)."""
    from django.db import connection

    monkeypatch.setattr(connection, "vendor", vendor)
    client = client_create(name="Окно", tier_code="advanced")
    p, q = customer(client, "P"), customer(client, "Q")
    order(client, p, at(2025, 1, 10, 12), 100)
    order(client, q, at(2025, 1, 11, 12), 100)
    order(client, p, at(2026, 1, 10, 12), 100)
    order(client, q, at(2026, 2, 11, 12), 100)
    kpis_compute(client=client, now=NOW)
    rows = months(client)
    figures = ("active_at_start", "churned_customers", "active_customers", "retention_rate")
    assert [getattr(rows["2025-12"], f) for f in figures] == [2, 0, 2, D("1.0000")]
    assert [getattr(rows["2026-01"], f) for f in figures] == [2, 1, 1, D("0.5000")]
    assert [getattr(rows["2026-02"], f) for f in figures] == [1, 0, 2, D("1.0000")]
    assert [getattr(rows["2026-03"], f) for f in figures] == [2, 0, 2, D("1.0000")]
    assert (rows["2026-02"].new_customers, rows["2026-02"].repeat_buyers) == (0, 1)
