"""GET /api/v1/chains/{id}/results/ and /api/v1/reports/triggered-revenue/: the shape, another
client's chain, bad dates."""

from __future__ import annotations

import pytest

from .results_data import build_results_data

pytestmark = pytest.mark.django_db

URL = "/api/v1/chains/{}/results/"


@pytest.fixture
def chain_a(client_a):
    return build_results_data(client_a)


def test_results_shape(api_a, chain_a):
    response = api_a.get(URL.format(chain_a.pk), {"from": "2026-03-01", "to": "2026-03-31"})
    assert response.status_code == 200
    body = response.json()
    for arm in ("treatment", "holdout"):
        assert {"n", "conversions", "revenue"} <= set(body[arm])
    assert (body["treatment"]["n"], body["holdout"]["n"]) == (20, 20)
    assert body["treatment"]["revenue"] == "1550.00"  # money as a string
    assert set(body["uplift"]) >= {
        "absolute",
        "absolute_ci",
        "relative",
        "relative_ci",
        "p_value",
        "incremental_conversions",
        "incremental_revenue",
        "revenue_per_person_difference",
        "revenue_per_person_difference_ci",
        "roi",
        "message_costs",
    }
    assert len(body["uplift"]["absolute_ci"]) == 2
    assert body["uplift"]["incremental_revenue"] == "1050.00"
    assert body["srm_p_value"] is None
    assert body["enough_data"] is True
    assert {"horizon", "verdict", "steps", "months"} <= set(body)
    assert [s["position"] for s in body["steps"]] == [1, 2]


def test_another_clients_chain_is_not_found(api_b, chain_a):
    for url in (URL.format(chain_a.pk), URL.format(987654), URL.format("abc")):
        response = api_b.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert "1550" not in response.content.decode()


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"from": "2026-13-01"}, "invalid_date", "from"),
        ({"to": "вчера"}, "invalid_date", "to"),
        ({"from": "2026-03-31", "to": "2026-03-01"}, "invalid_period", "from"),
    ],
)
def test_bad_dates_are_400(api_a, chain_a, params, code, field):
    response = api_a.get(URL.format(chain_a.pk), params)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["field"] == field


def test_triggered_revenue_month(api_a, api_b, chain_a):
    response = api_a.get("/api/v1/reports/triggered-revenue/", {"month": "2026-03"})
    assert response.status_code == 200
    body = response.json()
    assert (body["month"], body["revenue"], body["triggered_revenue"]) == (
        "2026-03",
        "7000.00",
        "1500.00",
    )
    assert body["benchmark_percent"] == 22.4
    assert body["incremental_revenue"] == "1050.00"
    # Another client's key sees its own (empty) month.
    other = api_b.get("/api/v1/reports/triggered-revenue/", {"month": "2026-03"}).json()
    assert (other["revenue"], other["chains"]) == ("0.00", [])
    for bad in ("2026-3", "март", "2026-13"):
        response = api_a.get("/api/v1/reports/triggered-revenue/", {"month": bad})
        assert response.status_code == 400
        assert response.json()["field"] == "month"
