"""reports.results: a chain's results and the month roll-up from rows in the database, with the
figures computed by hand (the data: tests/reports/results_data.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from campaigns.models import Enrollment
from reports.models import ChainTestPlan, ReportSettings
from reports.results import chain_results, client_month_rollup

from .results_data import ENROLLED, build_results_data, enrol, make_chain, make_people, order


@pytest.fixture
def results_chain(client_a):
    return build_results_data(client_a)


MARCH = {"date_from": dt.date(2026, 3, 1), "date_to": dt.date(2026, 3, 31)}
AFTER = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def test_arms_uplift_and_costs_by_hand(results_chain):
    r = chain_results(chain=results_chain, now=AFTER, **MARCH)
    assert r["treatment"] == {
        "n": 20,
        "conversions": 10,
        "conversion_rate": 0.5,
        "revenue": "1550.00",
        "revenue_per_person": "77.50",
    }
    assert r["holdout"] == {
        "n": 20,
        "conversions": 5,
        "conversion_rate": 0.25,
        "revenue": "500.00",
        "revenue_per_person": "25.00",
    }
    u = r["uplift"]
    # d = .5 − .25 = .25; se = √(.25/20 + .1875/20) = .147902; ± 1.959964·se = ± .289883.
    assert u["absolute"] == pytest.approx(0.25)
    assert u["absolute_ci"] == pytest.approx([-0.039883, 0.539883], abs=1e-6)
    assert u["relative"] == pytest.approx(1.0)
    # Pooled .375: se0 = √(.375·.625·.1) = .153093, z = 1.632993, p = .102470.
    assert u["p_value"] == pytest.approx(0.102470, abs=1e-6)
    assert u["incremental_conversions"] == pytest.approx(5)
    # Revenue per person 77.50 − 25.00 = 52.50, × 20 treated = 1,050.
    assert u["revenue_per_person_difference"] == "52.50"
    assert u["incremental_revenue"] == "1050.00"
    assert u["revenue_interval"] == "welch"
    low, high = (Decimal(v) for v in u["revenue_per_person_difference_ci"])
    assert low < Decimal("52.50") < high
    # Messages sent to the treated: 20 emails × 0.10 + 10 SMS × 3.50 = 37.00 ₽;
    # ROI (1,050 − 37) / 37 = 27.378.
    assert u["messages_sent"] == {"email": 20, "sms": 10}
    assert u["message_costs"] == "37.00"
    assert u["roi"] == pytest.approx(1013 / 37)
    assert r["enough_data"] is True
    assert r["srm_p_value"] is None  # 40 assignments: too few to test
    assert r["horizon"] == {"source": "window", "date": "2026-04-09", "reached": True}
    assert r["verdict"]["code"] == "no_difference"


def test_steps_and_months(results_chain):
    r = chain_results(chain=results_chain, now=AFTER)
    first, second = r["steps"]
    assert (first["position"], first["channel"]) == (1, "email")
    assert (first["treatment"]["n"], first["holdout"]["n"]) == (20, 20)
    assert (second["treatment"]["n"], second["holdout"]["n"]) == (10, 10)
    assert (second["treatment"]["conversions"], second["holdout"]["conversions"]) == (10, 5)
    assert second["treatment"]["revenue"] == "1550.00"
    assert second["uplift"]["absolute"] == pytest.approx(0.5)
    # Without a period: the February person (no orders) is in, as a month of their own.
    assert r["treatment"]["n"] == 21
    assert [(m["month"], m["treatment"]["n"], m["holdout"]["n"]) for m in r["months"]] == [
        ("2026-02", 1, 0),
        ("2026-03", 20, 20),
    ]
    assert r["months"][1]["treatment"]["revenue"] == "1550.00"


def test_period_is_in_client_days(client_a):
    # 10.03 21:30 UTC is 11.03 00:30 in Moscow: a person of the day 11.03, not 10.03.
    chain = make_chain(client_a)
    late = dt.datetime(2026, 3, 10, 21, 30, tzinfo=dt.UTC)
    enrol(chain, make_people(client_a, "t", 1), Enrollment.Arm.TREATMENT, at=late)
    day_10, day_11 = dt.date(2026, 3, 10), dt.date(2026, 3, 11)
    assert chain_results(chain=chain, date_from=day_10, date_to=day_10)["treatment"]["n"] == 0
    assert chain_results(chain=chain, date_from=day_11, date_to=day_11)["treatment"]["n"] == 1


def test_no_verdict_before_the_horizon(results_chain):
    before = chain_results(chain=results_chain, now=dt.datetime(2026, 4, 1, tzinfo=dt.UTC), **MARCH)
    assert before["horizon"]["reached"] is False
    assert before["verdict"] == {"code": "running", "text": "тест идёт, вывод после 09.04.2026"}
    ChainTestPlan.objects.create(
        client_id=results_chain.client_id,
        chain=results_chain,
        planned_end=dt.date(2026, 6, 1),
        planned_treatment_n=100,
        planned_control_n=100,
    )
    planned = chain_results(chain=results_chain, now=AFTER, **MARCH)
    assert planned["horizon"]["source"] == "plan"
    assert planned["horizon"]["reached"] is False
    assert planned["horizon"]["planned_sample_reached"] is False
    assert planned["verdict"]["code"] == "running"
    assert "01.06.2026" in planned["verdict"]["text"]


def test_not_enough_data_and_the_sample_ratio_guard(client_a):
    chain = make_chain(client_a, holdout_percent=10)
    treated = make_people(client_a, "t", 60)
    held = make_people(client_a, "h", 60)
    enrol(chain, treated, Enrollment.Arm.TREATMENT)
    enrol(chain, held, Enrollment.Arm.HOLDOUT)
    for person in treated[:10] + held[:4]:  # four conversions in the holdout
        order(client_a, person, "100", ENROLLED + dt.timedelta(days=1))
    r = chain_results(chain=chain, now=AFTER)
    assert r["enough_data"] is False
    # 60 of 120 held out where 10 % were planned: chi-square p far below 0.01.
    assert r["srm_p_value"] < 1e-10
    assert r["srm_warning"] is True
    assert r["verdict"]["code"] == "sample_ratio_mismatch"
    chain.holdout_percent = 50
    chain.save(update_fields=["holdout_percent"])
    r = chain_results(chain=chain, now=AFTER)
    assert r["srm_warning"] is False
    assert r["verdict"] == {"code": "not_enough_data", "text": "недостаточно данных"}


def test_bootstrap_when_the_client_chose_it(results_chain):
    ReportSettings.objects.create(
        client_id=results_chain.client_id,
        revenue_interval=ReportSettings.RevenueInterval.BOOTSTRAP,
    )
    r = chain_results(chain=results_chain, now=AFTER, **MARCH)
    assert r["uplift"]["revenue_interval"] == "bootstrap"
    assert r["uplift"]["revenue_per_person_difference"] == "52.50"
    low, high = (Decimal(v) for v in r["uplift"]["revenue_per_person_difference_ci"])
    assert low < Decimal("52.50") < high
    assert r == chain_results(chain=results_chain, now=AFTER, **MARCH)  # seeded


def test_event_goal_counts_goal_events(client_a):
    from clients.models import Event

    chain = make_chain(client_a)
    chain.goal = "event"
    chain.goal_event_type = "signup"
    chain.save(update_fields=["goal", "goal_event_type"])
    treated = make_people(client_a, "t", 3)
    enrol(chain, treated, Enrollment.Arm.TREATMENT)
    for i, (kind, days) in enumerate([("signup", 1), ("view", 1), ("signup", 40)]):
        Event.objects.create(
            client=client_a,
            customer=treated[i],
            external_id=f"e{i}",
            type=kind,
            occurred_at=ENROLLED + dt.timedelta(days=days),
        )
    assert chain_results(chain=chain)["treatment"]["conversions"] == 1


def test_month_rollup(results_chain, client_a, client_b):
    other = make_chain(client_b, name="Чужая")
    stranger = make_people(client_b, "x", 1)
    enrol(other, stranger, Enrollment.Arm.TREATMENT)
    order(client_b, stranger[0], "7777", ENROLLED + dt.timedelta(days=1))
    r = client_month_rollup(client=client_a, month=dt.date(2026, 3, 15))
    # March's paid orders: 1,500 (treated; t5's 50 ₽ is placed on 08.04) + 500 (held out)
    # + 5,000 (another chain's person); client B's order is not client A's.
    assert r["month"] == "2026-03"
    assert r["revenue"] == "7000.00"
    # After a message sent to the treated, within 30 days: the treated's 1,500 only.
    assert r["triggered_revenue"] == "1500.00"
    assert r["triggered_share"] == pytest.approx(1500 / 7000)
    assert r["triggered_share_percent"] == 21.43
    april = client_month_rollup(client=client_a, month=dt.date(2026, 4, 1))
    # April: t5's 50 ₽ (day 29 after the message: triggered) and t10's 999 ₽ (day 31: not).
    assert (april["revenue"], april["triggered_revenue"]) == ("1049.00", "50.00")
    assert r["benchmark_percent"] == 22.4
    assert r["incremental_revenue"] == "1050.00"
    names = {c["name"]: c for c in r["chains"]}
    assert names["Брошенная корзина"]["incremental_revenue"] == "1050.00"
    assert "Чужая" not in names
    empty = client_month_rollup(client=client_a, month=dt.date(2026, 1, 1))
    assert (empty["revenue"], empty["triggered_share"], empty["chains"]) == ("0.00", None, [])
