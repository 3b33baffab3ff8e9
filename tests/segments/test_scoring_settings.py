"""Scoring settings that make no sense are refused (service, admin, API); a run whose CLV comes
out empty fails with the reason; sums beyond one order's size never fail a client's run."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from django.urls import reverse

from agency.models import AuditLogEntry
from clients.ingest import ingest_records
from segments import scoring
from segments.models import CustomerScore, ScoringRun, ScoringSettings
from segments.services import (
    ScoringSettingsError,
    scoring_run_execute,
    scoring_run_request,
    scoring_settings_save,
)

from .test_scoring_ops import AS_OF, _base

pytestmark = pytest.mark.django_db

NONSENSE = [
    ({"monthly_discount_rate": Decimal("-0.01")}, "monthly_discount_rate"),
    ({"monthly_discount_rate": Decimal("0.9")}, "monthly_discount_rate"),
    ({"gross_margin": Decimal("1.5")}, "gross_margin"),
    ({"gross_margin": Decimal("-0.2")}, "gross_margin"),
    ({"gross_margin": Decimal("0")}, "gross_margin"),
    ({"clv_months": 0}, "clv_months"),
    ({"holdout_days": 0}, "holdout_days"),
    ({"at_risk_after_days": 0}, "at_risk_after_days"),
    ({"at_risk_after_days": 90, "win_back_after_days": 60}, "win_back_after_days"),
]


@pytest.mark.parametrize(("values", "field"), NONSENSE)
def test_the_service_refuses_settings_that_make_no_sense(client_a, values, field):
    with pytest.raises(ScoringSettingsError) as refused:
        scoring_settings_save(client=client_a, values=values, source="api")
    assert refused.value.field == field
    assert refused.value.message
    assert not ScoringSettings.objects.for_client(client_a).exists()


def test_sensible_settings_are_saved_and_audited(client_a):
    saved = scoring_settings_save(
        client=client_a,
        values={"monthly_discount_rate": Decimal("0.02"), "gross_margin": Decimal("0.4")},
        source="api",
    )
    assert (saved.monthly_discount_rate, saved.gross_margin) == (Decimal("0.02"), Decimal("0.4"))
    again = scoring_settings_save(client=client_a, values={"clv_months": 24}, source="api")
    assert again.pk == saved.pk
    assert (again.clv_months, again.gross_margin) == (24, Decimal("0.4"))
    assert AuditLogEntry.objects.filter(action="scoring_settings_changed").count() == 2


@pytest.mark.parametrize(("values", "field"), NONSENSE[:3])
def test_the_api_shows_the_refusal_with_its_field(api_a, client_a, values, field):
    url = "/api/v1/scoring/settings/"
    response = api_a.patch(url, {k: str(v) for k, v in values.items()}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid_scoring_settings"
    assert response.json()["field"] == field
    assert not ScoringSettings.objects.for_client(client_a).exists()
    ok = api_a.patch(url, {"gross_margin": "0.5"}, format="json")
    assert ok.status_code == 200, ok.json()
    assert api_a.get(url).json()["gross_margin"] == "0.5000"


def test_the_admin_form_shows_the_refusal_at_the_field(client, account_manager, client_a):
    client.force_login(account_manager)
    form = {
        "client": client_a.pk,
        "onboarding_days": 30,
        "at_risk_after_days": 30,
        "win_back_after_days": 60,
        "clv_months": 12,
        "monthly_discount_rate": "-0.05",
        "gross_margin": "0.35",
        "holdout_days": 90,
    }
    response = client.post(reverse("admin:segments_scoringsettings_add"), form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "monthly_discount_rate" in errors
    assert not ScoringSettings.objects.for_client(client_a).exists()
    form["monthly_discount_rate"] = "0.01"
    assert client.post(reverse("admin:segments_scoringsettings_add"), form).status_code == 302
    assert ScoringSettings.objects.for_client(client_a).get().monthly_discount_rate == Decimal(
        "0.01"
    )


def test_a_run_with_stored_nonsense_settings_fails_naming_the_setting(client_a):
    _base(client_a)
    ScoringSettings.objects.create(client=client_a, gross_margin=Decimal("7.5"))
    run = scoring_run_request(client=client_a, source="api", enqueue=False)
    run = scoring_run_execute(run=run, as_of=AS_OF)
    assert run.status == ScoringRun.Status.FAILED
    assert "маржа" in run.error
    assert not CustomerScore.objects.for_client(client_a).exists()


def test_a_run_whose_clv_comes_out_empty_fails_and_keeps_the_previous_scores(client_a, monkeypatch):
    _base(client_a)
    first = scoring_run_execute(
        run=scoring_run_request(client=client_a, source="api", enqueue=False), as_of=AS_OF
    )
    assert first.status == ScoringRun.Status.SUCCEEDED
    kept = dict(CustomerScore.objects.for_client(client_a).values_list("pk", "predicted_clv"))
    assert any(v is not None for v in kept.values())

    monkeypatch.setattr(
        scoring.clv,
        "customer_lifetime_value",
        lambda *args, **kwargs: np.full(len(args[2]), np.nan),
    )
    second = scoring_run_execute(
        run=scoring_run_request(client=client_a, source="api", enqueue=False), as_of=AS_OF
    )
    assert second.status == ScoringRun.Status.FAILED
    assert "CLV пуст" in second.error
    after = dict(CustomerScore.objects.for_client(client_a).values_list("pk", "predicted_clv"))
    assert after == kept


def test_orders_summing_beyond_one_orders_size_are_scored(client_a):
    """Two orders of 999,999,999,999.99 RUB (the most one order may be): the customer's sum is
    1,999,999,999,999.98, scored like anyone else's; the run succeeds for the whole client."""
    _base(client_a)
    ingest_records(client=client_a, kind="customers", records=[{"external_id": "whale"}])
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            {
                "external_id": f"w{k}",
                "customer_external_id": "whale",
                "placed_at": f"2026-0{k + 2}-01T12:00:00+03:00",
                "amount": "999999999999.99",
            }
            for k in range(2)
        ],
    )
    run = scoring_run_execute(
        run=scoring_run_request(client=client_a, source="api", enqueue=False), as_of=AS_OF
    )
    assert run.status == ScoringRun.Status.SUCCEEDED, run.error
    whale = CustomerScore.objects.for_client(client_a).get(customer__external_id="whale")
    assert whale.monetary == Decimal("1999999999999.98")
    assert whale.frequency == 2
    assert CustomerScore.objects.for_client(client_a).count() == 41
    assert isinstance(run.as_of, dt.date)


def test_money_beyond_the_score_columns_is_bounded_not_a_failed_run():
    import pandas as pd

    from segments.services import _bound_money

    scores = pd.DataFrame(
        {
            "monetary": [1e17, 10.0, 5.0],
            "expected_order_value": [np.inf, 3.0, np.nan],
            "predicted_clv": [2e16, -1e18, 7.0],
        }
    )
    assert _bound_money(scores) == {
        "monetary": 1,
        "expected_order_value": 1,
        "predicted_clv": 2,
    }
    assert scores["monetary"].tolist() == [1e16 - 1, 10.0, 5.0]
    assert scores["expected_order_value"].isna().tolist() == [True, False, True]
    assert scores["predicted_clv"].isna().tolist() == [True, True, False]
