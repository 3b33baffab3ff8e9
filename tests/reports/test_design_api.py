"""POST /api/v1/experiments/design/: the calculator through the API (tier incrementality),
field errors, a chain's observed flow and the saved plan."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.models import Enrollment
from clients.services import api_key_create, client_create
from reports.models import ChainTestPlan
from reports.results import chain_results

from .results_data import enrol, make_chain, make_people

pytestmark = pytest.mark.django_db

URL = "/api/v1/experiments/design/"


@pytest.fixture
def enterprise(db):
    return client_create(name="Гамма Холдинг", tier_code="enterprise")


@pytest.fixture
def api_e(enterprise, make_api):
    _key, raw = api_key_create(client=enterprise, name="test")
    return make_api(raw)


def test_even_and_skewed_splits(api_e):
    even = api_e.post(URL, {"baseline_rate": 0.05, "mde_absolute": 0.01}, format="json")
    assert even.status_code == 200
    assert (even.json()["treatment_n"], even.json()["control_n"]) == (8158, 8158)
    assert even.json()["total_n"] == 16316
    assert even.json()["days"] is None
    skewed = api_e.post(
        URL,
        {"baseline_rate": 0.05, "mde_absolute": 0.01, "treatment_share": 0.9},
        format="json",
    ).json()
    assert skewed["total_n"] / even.json()["total_n"] == pytest.approx(2.85, abs=0.05)
    relative = api_e.post(
        URL,
        {"baseline_rate": 0.05, "mde_relative": 0.2, "eligible_per_day": 500},
        format="json",
    ).json()
    assert (relative["total_n"], relative["days"]) == (16316, 33)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mde_absolute": 0.01}, "baseline_rate"),
        ({"baseline_rate": "x", "mde_absolute": 0.01}, "baseline_rate"),
        ({"baseline_rate": 0.05}, "mde_absolute"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "mde_relative": 0.2}, "mde_absolute"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "treatment_share": 1.5}, "treatment_share"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "power": -1}, "power"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "save_plan": True}, "chain"),
    ],
)
def test_shape_errors_name_the_field(api_e, body, field):
    response = api_e.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"baseline_rate": 0, "mde_absolute": 0.01}, "baseline_rate"),
        ({"baseline_rate": 0.95, "mde_absolute": 0.1}, "mde_absolute"),
        ({"baseline_rate": 0.5, "mde_relative": 1.2}, "mde_relative"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "treatment_share": 0}, "treatment_share"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "eligible_per_day": 0}, "eligible_per_day"),
    ],
)
def test_nonsense_is_refused_with_the_field(api_e, body, field):
    response = api_e.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_design"
    assert response.json()["field"] == field


def test_tier_without_incrementality_is_refused(api_a):
    response = api_a.post(URL, {"baseline_rate": 0.05, "mde_absolute": 0.01}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "tier_feature_incrementality"


def test_chain_flow_and_saved_plan(api_e, enterprise, client_a):
    chain = make_chain(enterprise)
    now = timezone.now()
    # 560 people over the last 28 days (and 100 older ones, not counted): 20 a day.
    people = make_people(enterprise, "p", 660)
    for i, person in enumerate(people[:560]):
        at = now - dt.timedelta(days=i % 27, hours=1)
        enrol(chain, [person], "treatment" if i % 2 else "holdout", at=at)
    enrol(chain, people[560:], Enrollment.Arm.TREATMENT, at=now - dt.timedelta(days=40))
    body = {"baseline_rate": 0.05, "mde_absolute": 0.01, "chain": chain.pk, "save_plan": True}
    response = api_e.post(URL, body, format="json")
    assert response.status_code == 200, response.json()
    design = response.json()
    assert design["eligible_per_day"] == pytest.approx(20)
    assert design["eligible_per_day_source"] == "chain"
    assert design["days"] == 816  # 16,316 / 20, rounded up
    plan = ChainTestPlan.objects.for_client(enterprise).get(chain=chain)
    today = timezone.localdate(timezone=enterprise.tzinfo)
    assert plan.planned_end == today + dt.timedelta(days=816 + 30)
    assert design["planned_end"] == plan.planned_end.isoformat()
    assert (plan.planned_treatment_n, plan.planned_control_n) == (8158, 8158)
    results = chain_results(chain=chain)
    assert results["horizon"]["source"] == "plan"
    assert results["verdict"]["code"] == "running"
    # Another client's chain id is not found, and no plan is written.
    foreign = make_chain(client_a)
    response = api_e.post(URL, {**body, "chain": foreign.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "chain_not_found"
    assert not ChainTestPlan.objects.unscoped().filter(chain=foreign).exists()
