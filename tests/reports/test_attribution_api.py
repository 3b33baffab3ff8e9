"""Attribution through the database and the API: touchpoints read from events (utm tags, message
clicks tied to their chain, yclid ad clicks), paid orders only, predicted CLV from the scores,
one client's data only; ``GET /api/v1/attribution/`` with its 400s, 403 and 404, and the CSV."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import TriggerChain
from clients.models import Customer, Event, Order
from clients.services import api_key_create
from reports.attribution import DIRECT
from reports.models import ReportSettings
from reports.touchpoints import attribution_report, orders_load, touchpoints_load
from segments.models import CustomerScore

URL = "/api/v1/attribution/"
MSK = dt.timezone(dt.timedelta(hours=3))
ORDER_AT = dt.datetime(2026, 3, 15, 12, 0, tzinfo=MSK)
PERIOD = {"from": "2026-03-01", "to": "2026-03-31"}


def _customer(client, external_id):
    return Customer.objects.create(client=client, external_id=external_id)


def _event(client, customer, at, type_="visit", properties=None, **utm):
    return Event.objects.create(
        client=client,
        customer=customer,
        external_id=f"e{Event.objects.unscoped().count()}",
        type=type_,
        occurred_at=at,
        properties=properties or {},
        **utm,
    )


def _order(client, customer, at, amount, status=Order.Status.PAID):
    return Order.objects.create(
        client=client,
        customer=customer,
        external_id=f"o{Order.objects.unscoped().count()}",
        placed_at=at,
        amount=Decimal(amount),
        status=status,
    )


@pytest.fixture
def journeys(client_a, client_b):
    """Client A: Anna (google/cpc 10 days before, an email click of a chain 1 day before, 1000 ₽),
    Boris (a Direct click with yclid 3 days before, 500 ₽), Vera (a plain visit only, 200 ₽;
    a refund and an order in April that do not count). Client B: its own journeys, and an event
    written with Anna's id under client B, which must never count for A."""
    chain = TriggerChain.objects.create(
        client=client_a, name="Брошенная корзина", trigger=TriggerChain.Trigger.REGISTRATION
    )
    anna, boris, vera = (_customer(client_a, x) for x in ("anna", "boris", "vera"))
    day = dt.timedelta(days=1)
    _event(
        client_a,
        anna,
        ORDER_AT - 10 * day,
        utm_source="Google",
        utm_medium="CPC",
        utm_campaign="spring",
    )
    _event(
        client_a,
        anna,
        ORDER_AT - day,
        "email_click",
        {"message_id": 1, "chain_id": chain.pk, "step_id": 1},
    )
    _order(client_a, anna, ORDER_AT, "1000.00")
    _event(client_a, boris, ORDER_AT - 3 * day, "visit", {"yclid": "8213479123"})
    _order(client_a, boris, ORDER_AT, "500.00")
    _event(client_a, vera, ORDER_AT - day, "visit")
    _order(client_a, vera, ORDER_AT, "200.00")
    _order(client_a, vera, ORDER_AT + day, "999.00", status=Order.Status.REFUNDED)
    _order(client_a, vera, dt.datetime(2026, 4, 2, tzinfo=MSK), "777.00")
    CustomerScore.objects.create(
        customer=anna, client=client_a, predicted_clv=Decimal("5000.00"), computed_at=ORDER_AT
    )
    other = _customer(client_b, "anna")
    _event(client_b, other, ORDER_AT - day, utm_source="vk", utm_medium="cpc")
    _order(client_b, other, ORDER_AT, "300.00")
    # A foreign row pointing at Anna: client B's, so never A's touch.
    Event.objects.create(
        client=client_b,
        customer_id=anna.pk,
        external_id="foreign",
        type="visit",
        occurred_at=ORDER_AT - dt.timedelta(hours=1),
        utm_source="mailru",
        utm_medium="cpc",
    )
    return {"chain": chain, "anna": anna, "boris": boris, "vera": vera}


def _by_key(rows):
    return {row["key"]: row for row in rows}


def test_report_credits_channels_from_events(client_a, journeys):
    report = attribution_report(
        client=client_a, date_from=dt.date(2026, 3, 1), date_to=dt.date(2026, 3, 31)
    )
    assert report["totals"]["orders"] == 3
    assert report["totals"]["revenue"] == Decimal("1700.00")
    rows = _by_key(report["by_channel"])
    assert set(rows) == {"google/cpc", "email", "yandex/cpc", DIRECT}
    last = {k: r["models"]["last_click"]["revenue"] for k, r in rows.items()}
    first = {k: r["models"]["first_click"]["revenue"] for k, r in rows.items()}
    assert last == {
        "google/cpc": Decimal("0.00"),
        "email": Decimal("1000.00"),
        "yandex/cpc": Decimal("500.00"),
        DIRECT: Decimal("200.00"),
    }
    assert first["google/cpc"] == Decimal("1000.00")
    assert first["email"] == Decimal("0.00")
    # Time decay, half-life 7: 2^(−10/7) and 2^(−1/7) → 29.0864 % and 70.9136 % of 1000 ₽.
    w = np.array([2 ** (-10 / 7), 2 ** (-1 / 7)])
    share = w / w.sum()
    assert rows["google/cpc"]["models"]["time_decay"]["revenue"] == Decimal(
        f"{share[0] * 1000:.2f}"
    )
    for model in report["models"]:
        assert sum(r["models"][model]["revenue"] for r in rows.values()) == Decimal("1700.00")
    campaigns = _by_key(report["by_campaign"])
    chain_key = f"chain:{journeys['chain'].pk}"
    assert campaigns[chain_key]["label"] == "Брошенная корзина"
    assert campaigns[chain_key]["models"]["last_click"]["revenue"] == Decimal("1000.00")
    assert campaigns["spring"]["models"]["first_click"]["revenue"] == Decimal("1000.00")
    assert campaigns["(not set)"]["models"]["linear"]["revenue"] == Decimal("500.00")
    clv = _by_key(report["clv"]["by_channel"])
    assert clv["google/cpc"]["customers"] == 1
    assert clv["google/cpc"]["predicted_clv"] == Decimal("5000.00")
    assert clv["yandex/cpc"]["customers_with_clv"] == 0
    assert clv[DIRECT]["first_order_revenue"] == Decimal("200.00")


def test_half_life_comes_from_the_clients_settings(client_a, journeys):
    ReportSettings.objects.create(client=client_a, attribution_half_life_days=1)
    report = attribution_report(
        client=client_a, date_from=dt.date(2026, 3, 1), date_to=dt.date(2026, 3, 31)
    )
    assert report["settings"]["half_life_days"] == 1
    w = np.array([2.0**-10, 2.0**-1])
    expected = Decimal(f"{w[0] / w.sum() * 1000:.2f}")
    rows = _by_key(report["by_channel"])
    assert rows["google/cpc"]["models"]["time_decay"]["revenue"] == expected


def test_a_previous_order_outside_the_period_cuts_the_journey(client_a, journeys):
    # Anna also bought on 10 March, before the period (12 March on): the google click of 5 March
    # is that order's, and her first order is no longer in the period (not acquired now).
    _order(client_a, journeys["anna"], ORDER_AT - dt.timedelta(days=5), "50.00")
    report = attribution_report(
        client=client_a, date_from=dt.date(2026, 3, 12), date_to=dt.date(2026, 3, 31)
    )
    rows = _by_key(report["by_channel"])
    assert "google/cpc" not in rows
    assert rows["email"]["models"]["first_click"]["revenue"] == Decimal("1000.00")
    assert "google/cpc" not in _by_key(report["clv"]["by_channel"])
    assert report["totals"]["revenue"] == Decimal("1700.00")


def test_orm_path_reads_the_same_as_the_sql_path(client_a, journeys, monkeypatch):
    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    until = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert connection.vendor == "postgresql"
    touches_sql = touchpoints_load(client=client_a, since=since, until=until)
    orders_sql = orders_load(client=client_a, since=since, start=start, until=until)
    monkeypatch.setattr(connection, "vendor", "sqlite")
    touches_orm = touchpoints_load(client=client_a, since=since, until=until)
    orders_orm = orders_load(client=client_a, since=since, start=start, until=until)

    def normal(frame):
        frame = frame.astype({"channel": str, "campaign": str}) if "channel" in frame else frame
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)

    assert normal(touches_sql).equals(normal(touches_orm))
    assert sorted(touches_sql["channel"].astype(str)) == [
        "email",
        "google/cpc",
        "yandex/cpc",
    ]
    assert normal(orders_sql).equals(normal(orders_orm))
    assert orders_sql["amount"].sum() == pytest.approx(1700 + 777)


# --------------------------------------------------------------------------------------------
# API


def test_api_by_channel_and_by_campaign(api_a, journeys):
    response = api_a.get(URL, PERIOD)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["by"] == "channel"
    assert body["totals"]["revenue"] == "1700.00"
    rows = _by_key(body["rows"])
    assert rows["email"]["models"]["last_click"] == {"orders": 1.0, "revenue": "1000.00"}
    assert rows[DIRECT]["models"]["position_based"]["revenue"] == "200.00"
    assert "mailru/cpc" not in rows
    assert "vk/cpc" not in rows
    assert _by_key(body["clv"])["google/cpc"]["predicted_clv"] == "5000.00"

    body = api_a.get(URL, {**PERIOD, "by": "campaign", "half_life_days": 3}).json()
    assert body["settings"]["half_life_days"] == 3
    assert f"chain:{journeys['chain'].pk}" in _by_key(body["rows"])


def test_api_never_counts_another_clients_events(api_b, journeys):
    body = api_b.get(URL, PERIOD).json()
    rows = _by_key(body["rows"])
    assert set(rows) == {"vk/cpc"}
    assert body["totals"]["revenue"] == "300.00"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "2026-03-31"}, "from"),
        ({"from": "2026-13-01", "to": "2026-03-31"}, "from"),
        ({"from": "2026-03-31", "to": "2026-03-01"}, "to"),
        ({**PERIOD, "by": "weather"}, "by"),
        ({**PERIOD, "half_life_days": "0"}, "half_life_days"),
        ({**PERIOD, "half_life_days": "seven"}, "half_life_days"),
        ({**PERIOD, "lookback_days": "9999"}, "lookback_days"),
        ({"from": "2020-01-01", "to": "2026-03-31"}, "to"),
        ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
        ({"from": "2026-03-01", "to": "9999-12-31"}, "to"),
    ],
)
def test_api_bad_input_is_a_400_naming_the_field(api_a, params, field):
    response = api_a.get(URL, params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"]


def test_api_csv_download(api_a, journeys):
    response = api_a.get(URL, {**PERIOD, "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attribution-channel-" in response["Content-Disposition"]
    text = response.content.decode("utf-8-sig")
    header, *lines = text.strip().splitlines()
    assert header.startswith('"key","label","last_click_orders","last_click_revenue"')
    assert any(line.startswith('"email"') and ",1000.00," in line for line in lines)
    bad = api_a.get(URL, {"format": "csv"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid"


def test_api_key_without_read_scope_is_403(client_a, make_api, journeys):
    _key, raw = api_key_create(client=client_a, name="writer", scopes=["write"])
    response = make_api(raw).get(URL, PERIOD)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_anonymous_is_refused(client, journeys):
    assert client.get(URL, PERIOD).status_code in (401, 403)


def test_session_user_of_another_client_gets_404(client, portal_owner_a, client_b, journeys):
    client.force_login(portal_owner_a)
    assert client.get(URL, {**PERIOD, "client": client_b.slug}).status_code == 404
    assert client.get(URL, {**PERIOD, "client": "no-such-client"}).status_code == 404
    mine = client.get(URL, PERIOD)
    assert mine.status_code == 200
    assert mine.json()["totals"]["revenue"] == "1700.00"


def test_schema_documents_the_endpoint(client, agency_admin):
    client.force_login(agency_admin)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"][URL]["get"]
    assert operation["operationId"] == "attribution"
    names = {p["name"] for p in operation["parameters"]}
    assert {"from", "to", "by", "half_life_days"} <= names


def test_times_are_the_clients_days(client_a, journeys):
    # An order at 00:30 Moscow time on 1 March is in March for a Moscow client.
    vera = journeys["vera"]
    _order(client_a, vera, dt.datetime(2026, 3, 1, 0, 30, tzinfo=MSK), "10.00")
    report = attribution_report(
        client=client_a, date_from=dt.date(2026, 3, 1), date_to=dt.date(2026, 3, 1)
    )
    assert report["totals"]["revenue"] == Decimal("10.00")
    assert timezone.is_aware(ORDER_AT)


def test_a_customer_who_bought_long_before_is_not_acquired_in_the_period(client_a, journeys):
    # Anna's first order was in January, before the loaded frame (period − 30 days): her March
    # order is a repeat one, so no channel acquired her in March; Boris still counts.
    _order(client_a, journeys["anna"], dt.datetime(2026, 1, 5, tzinfo=MSK), "10.00")
    report = attribution_report(
        client=client_a, date_from=dt.date(2026, 3, 1), date_to=dt.date(2026, 3, 31)
    )
    clv = _by_key(report["clv"]["by_channel"])
    assert "google/cpc" not in clv
    assert clv["yandex/cpc"]["customers"] == 1
    assert report["totals"]["revenue"] == Decimal("1700.00")  # January is not credited
