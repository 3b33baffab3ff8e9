"""The admin's test calculator and chain results pages (reports.admin.design)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from clients.models import Tier
from reports.models import ChainTestPlan

from .results_data import build_results_data, make_chain

pytestmark = pytest.mark.django_db

DESIGN = "admin:reports_chaintestplan_design"


def _design(client, **fields):
    body = {"baseline_rate": 0.05, "alpha": 0.05, "power": 0.8, "treatment_share": 0.5, **fields}
    return client.post(reverse(DESIGN), body)


def test_calculator_without_a_chain(client, account_manager):
    client.force_login(account_manager)
    assert client.get(reverse(DESIGN)).status_code == 200
    even = _design(client, mde_absolute=0.01)
    assert even.context["design"]["total_n"] == 16316
    skewed = _design(client, mde_absolute=0.01, treatment_share=0.9)
    assert skewed.context["design"]["total_n"] == 46506  # 2.85 × 16,316
    assert "46" in skewed.content.decode()
    bad = _design(client, mde_absolute=0.99)
    assert bad.context["design"] is None
    assert "mde_absolute" in bad.context["form"].errors


def test_calculator_with_a_chain_follows_the_tier_and_saves_the_plan(
    client, account_manager, client_a
):
    client.force_login(account_manager)
    chain = make_chain(client_a)
    refused = _design(client, mde_absolute=0.01, chain=chain.pk, eligible_per_day=100)
    assert refused.context["design"] is None
    assert "Enterprise" in str(refused.context["form"].non_field_errors())
    client_a.tier = Tier.objects.get(code="enterprise")
    client_a.save(update_fields=["tier"])
    saved = _design(client, mde_absolute=0.01, chain=chain.pk, eligible_per_day=100, save_plan="on")
    assert saved.context["design"]["days"] == 164
    assert ChainTestPlan.objects.for_client(client_a).get(chain=chain).planned_control_n == 8158


def test_results_pages(client, account_manager, client_a, client_b):
    client.force_login(account_manager)
    chain = build_results_data(client_a)
    foreign = make_chain(client_b, name="Чужая")
    index = client.get(reverse("admin:reports_chaintestplan_results"))
    assert chain.name in index.content.decode()
    assert "Чужая" not in index.content.decode()
    url = reverse("admin:reports_chaintestplan_chain_results", args=[chain.pk])
    page = client.get(url, {"date_from": "2026-03-01", "date_to": "2026-03-31"})
    assert page.status_code == 200
    body = page.content.decode()
    assert "+25.00 п.п." in body  # 50 % against 25 %
    assert "1050.00" in body
    bad = client.get(url, {"date_from": "2026-03-31", "date_to": "2026-03-01"})
    assert bad.status_code == 200
    assert bad.context["results"] is None
    foreign_url = reverse("admin:reports_chaintestplan_chain_results", args=[foreign.pk])
    assert client.get(foreign_url).status_code == 404
