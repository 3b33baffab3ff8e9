"""An audience's results: its segment's members while the test ran, split by the audience's
holdout hash, their orders in the period; hand-made data with every exclusion the rule makes
(orders before the test, before joining, after the period, cancelled; a stay that ended before
the test), the geo split by whole regions, and the API's shape and refusals."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
import zoneinfo
from decimal import Decimal

import pytest

from agency.arms import is_held_out, sample_ratio_p_value
from audiences.models import Audience
from audiences.services import audience_create, destination_create
from clients.models import Customer, Order
from clients.services import client_create
from reports.audience_results import AudienceResultsError, audience_results
from reports.uplift import conversion_uplift, enough_data
from segments.models import Segment, SegmentMembership

pytestmark = pytest.mark.django_db

MSK = zoneinfo.ZoneInfo("Europe/Moscow")
START = dt.datetime(2026, 1, 1, 10, 0, tzinfo=MSK)  # the test started
JOINED = dt.datetime(2025, 12, 1, tzinfo=MSK)
ORDER_IDS = itertools.count()


def at(day: int, month: int = 1, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=MSK)


def make_audience(client, *, percent=30, unit="person", name="Ретаргетинг"):
    segment = Segment.objects.create(client=client, name=f"С {name}", kind="rule", definition={})
    destination = destination_create(
        client=client, name=f"Я {name}", platform="yandex_audiences", credentials={"token": "t"}
    )
    audience = audience_create(
        client=client,
        name=name,
        segment=segment,
        destination=destination,
        holdout_percent=percent,
        holdout_unit=unit,
    )
    Audience.objects.for_client(client).filter(pk=audience.pk).update(holdout_started_at=START)
    audience.refresh_from_db()
    return audience, segment


def member(client, segment, ext, *, entered=JOINED, left=None, city=""):
    customer = Customer.objects.create(client=client, external_id=ext, first_seen=JOINED, city=city)
    SegmentMembership.objects.create(
        client=client, segment=segment, customer=customer, entered_at=entered, left_at=left
    )
    return customer


def order(client, customer, placed_at, amount, status=Order.Status.PAID):
    Order.objects.create(
        client=client,
        customer=customer,
        external_id=f"o{next(ORDER_IDS)}",
        placed_at=placed_at,
        amount=Decimal(amount),
        status=status,
    )


@pytest.fixture
def measured(client_a):
    """300 members; every third buys in the period (the held-out ones less: every fifth), some
    twice; plus the orders and people the rule must leave out."""
    audience, segment = make_audience(client_a)
    expected = {"treatment": [], "holdout": []}  # revenue per measured person
    for i in range(300):
        customer = member(client_a, segment, f"m{i}")
        held = is_held_out(client_a.pk, audience.pk, customer.pk, 30)
        # Counted within the arm, so the rates are a third and a fifth whatever ids (and so
        # arms) the database hands out.
        k = len(expected["holdout" if held else "treatment"])
        revenue = Decimal(0)
        if k % (5 if held else 3) == 0:
            order(client_a, customer, at(5), "1000.50")
            revenue += Decimal("1000.50")
            if k % 2 == 0:
                order(client_a, customer, at(20), "499.50")
                revenue += Decimal("499.50")
        # Never counted: before the test's start, after the period, cancelled.
        order(client_a, customer, at(1, hour=9), "700")
        order(client_a, customer, at(1, month=2, hour=0), "800")
        order(client_a, customer, at(10), "900", status=Order.Status.CANCELLED)
        expected["holdout" if held else "treatment"].append(revenue)
    # Joined during the test: only the order after joining counts.
    late = member(client_a, segment, "late", entered=at(15))
    order(client_a, late, at(10), "300")
    order(client_a, late, at(16), "200")
    held = is_held_out(client_a.pk, audience.pk, late.pk, 30)
    expected["holdout" if held else "treatment"].append(Decimal(200))
    # Left the segment before the test: not measured.
    gone = member(client_a, segment, "gone", left=dt.datetime(2025, 12, 20, tzinfo=MSK))
    order(client_a, gone, at(5), "5000")
    # Another segment's member: not measured.
    other = Segment.objects.create(client=client_a, name="Другой", kind="rule", definition={})
    outsider = member(client_a, other, "outsider")
    order(client_a, outsider, at(5), "5000")
    return audience, expected


def test_results_on_hand_made_data(measured):
    audience, expected = measured
    result = audience_results(
        audience=audience, date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 1, 31)
    )
    arms = {name: result[name] for name in ("treatment", "holdout")}
    for name in ("treatment", "holdout"):
        revenues = expected[name]
        assert arms[name]["n"] == len(revenues)
        assert arms[name]["conversions"] == sum(1 for r in revenues if r > 0)
        assert arms[name]["revenue"] == sum(revenues)
    t, c = arms["treatment"], arms["holdout"]
    assert t["n"] + c["n"] == 301
    assert 60 < c["n"] < 120
    reference = conversion_uplift(t["conversions"], t["n"], c["conversions"], c["n"])
    uplift = result["uplift"]
    assert uplift["absolute"] == pytest.approx(reference.absolute)
    assert uplift["absolute_ci"] == pytest.approx(reference.absolute_ci)
    assert uplift["relative_ci"] == pytest.approx(reference.relative_ci)
    assert uplift["p_value"] == pytest.approx(reference.p_value)
    assert uplift["absolute"] > 0.1  # a third against a fifth
    # Revenue per person, zeros included: Welch's normal interval by hand.
    rt = [float(r) for r in expected["treatment"]]
    rc = [float(r) for r in expected["holdout"]]
    difference = statistics.fmean(rt) - statistics.fmean(rc)
    se = math.sqrt(statistics.variance(rt) / len(rt) + statistics.variance(rc) / len(rc))
    assert uplift["revenue_per_person"] == pytest.approx(difference)
    assert uplift["revenue_per_person_ci"] == pytest.approx(
        (difference - 1.959963984540054 * se, difference + 1.959963984540054 * se)
    )
    assert uplift["incremental_revenue"] == pytest.approx(difference * len(rt))
    assert uplift["incremental_conversions"] == pytest.approx(reference.absolute * len(rt))
    assert result["srm_p_value"] == pytest.approx(sample_ratio_p_value(c["n"], t["n"], 30))
    assert result["enough_data"] is enough_data(t["conversions"], t["n"], c["conversions"], c["n"])
    assert result["enough_data"] is True
    assert result["clustered"] is False


def test_period_bounds_are_the_clients_days(client_a, measured):
    audience, expected = measured
    edge = member(client_a, audience.segment, "edge")
    order(client_a, edge, dt.datetime(2026, 1, 20, 23, 30, tzinfo=MSK), "11")  # 20:30 UTC
    order(client_a, edge, dt.datetime(2026, 1, 21, 0, 30, tzinfo=MSK), "13")  # 20 Jan in UTC
    # Only 20 January: the second orders of the even buyers, and the edge's first.
    result = audience_results(
        audience=audience, date_from=dt.date(2026, 1, 20), date_to=dt.date(2026, 1, 20)
    )
    revenue = result["treatment"]["revenue"] + result["holdout"]["revenue"]
    seconds = sum(1 for arm in expected.values() for r in arm if r == Decimal("1500.00"))
    assert revenue == Decimal("499.50") * seconds + Decimal("11.00")
    # Too few conversions: the guard says so.
    small = audience_results(
        audience=audience, date_from=dt.date(2026, 1, 31), date_to=dt.date(2026, 1, 31)
    )
    assert small["treatment"]["conversions"] == 0
    assert small["enough_data"] is False


def test_refusals(client_a, measured):
    audience, _expected = measured
    with pytest.raises(AudienceResultsError) as reversed_period:
        audience_results(
            audience=audience, date_from=dt.date(2026, 2, 1), date_to=dt.date(2026, 1, 1)
        )
    assert reversed_period.value.code == "invalid_period"
    plain, _segment = make_audience(client_a, percent=0, name="Без теста")
    with pytest.raises(AudienceResultsError) as none:
        audience_results(
            audience=plain, date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 1, 31)
        )
    assert none.value.code == "no_holdout"


def test_geo_results_split_by_whole_regions():
    client = client_create(name="Гео", tier_code="enterprise")
    audience, segment = make_audience(client, percent=50, unit="region")
    cities = ["Москва", "Казань", "Омск", "Пермь", "Самара", "Томск"]
    held_cities = {c for c in cities if is_held_out(client.pk, audience.pk, c.lower(), 50)}
    for i in range(120):
        customer = member(client, segment, f"g{i}", city=cities[i % 6])
        order(client, customer, at(5), "100")
    member(client, segment, "nocity")  # not in the test
    result = audience_results(
        audience=audience, date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 1, 31)
    )
    assert result["holdout"]["n"] == 20 * len(held_cities)
    assert result["treatment"]["n"] == 20 * (6 - len(held_cities))
    assert result["srm_p_value"] is None
    assert result["clustered"] is True


# -------------------------------------------------------------------------------------------
# API


def test_api_shape(api_a, measured):
    audience, expected = measured
    response = api_a.get(f"/api/v1/audiences/{audience.pk}/results/?from=2026-01-01&to=2026-01-31")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {
        "treatment",
        "holdout",
        "uplift",
        "srm_p_value",
        "enough_data",
        "from",
        "to",
    }
    for name in ("treatment", "holdout"):
        assert set(body[name]) >= {"n", "conversions", "revenue"}
        assert body[name]["n"] == len(expected[name])
        assert Decimal(body[name]["revenue"]) == sum(expected[name])
    assert set(body["uplift"]) >= {
        "absolute",
        "absolute_ci",
        "relative",
        "relative_ci",
        "p_value",
        "incremental_conversions",
        "incremental_revenue",
    }
    assert len(body["uplift"]["absolute_ci"]) == 2
    assert body["from"] == "2026-01-01"


def test_api_other_client_404_and_bad_dates_400(api_a, api_b, measured):
    audience, _expected = measured
    url = f"/api/v1/audiences/{audience.pk}/results/"
    assert api_b.get(f"{url}?from=2026-01-01&to=2026-01-31").status_code == 404
    assert (
        api_a.get("/api/v1/audiences/999999/results/?from=2026-01-01&to=2026-01-31").status_code
        == 404
    )
    bad = api_a.get(f"{url}?from=2026-13-01&to=2026-01-31")
    assert bad.status_code == 400
    assert "from" in bad.json()["errors"]
    missing = api_a.get(f"{url}?from=2026-01-01")
    assert missing.status_code == 400
    assert "to" in missing.json()["errors"]
    reversed_period = api_a.get(f"{url}?from=2026-02-01&to=2026-01-01")
    assert reversed_period.status_code == 400
    assert reversed_period.json()["code"] == "invalid_period"


# -------------------------------------------------------------------------------------------
# Portal


def test_portal_shows_the_test_and_its_guards(client, client_a, portal_owner_a, measured):
    from django.urls import reverse

    audience, expected = measured
    # The page's period runs from the test's start to today: the February orders count there.
    Order.objects.for_client(client_a).filter(placed_at__gte=at(1, month=2, hour=0)).delete()
    client.force_login(portal_owner_a)
    page = client.get(reverse("portal:audiences", args=[client_a.slug])).content.decode()
    assert f'id="holdout-{audience.pk}"' in page
    assert "Тест с контрольной группой" in page
    assert f'<td class="num">{len(expected["holdout"])}</td>' in page
    assert "Прирост конверсии" in page  # enough data by now (the period runs to today)
    assert "Недостаточно данных" not in page

    # A fresh test: the guard, not a verdict.
    fresh, segment = make_audience(client_a, percent=20, name="Новый тест")
    member(client_a, segment, "fresh-1")
    page = client.get(reverse("portal:audiences", args=[client_a.slug])).content.decode()
    assert f'id="holdout-{fresh.pk}"' in page
    assert "Недостаточно данных" in page
