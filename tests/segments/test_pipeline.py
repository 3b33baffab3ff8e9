"""The scoring pipeline on PostgreSQL: extract, score, write, record the run."""

from __future__ import annotations

import datetime as dt

import pytest

from clients.ingest import ingest_records
from clients.models import Customer
from segments.models import CustomerScore, ScoringRun
from segments.services import load_paid_orders, scoring_run_execute, scoring_run_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def base(client_a):
    customers = [{"external_id": f"c{i}"} for i in range(40)]
    ingest_records(client=client_a, kind="customers", records=customers)
    orders = []
    for i in range(40):
        for k in range(i % 5 + 1):
            orders.append(
                {
                    "external_id": f"o{i}-{k}",
                    "customer_external_id": f"c{i}",
                    # 23:30 Moscow = 20:30 UTC: the local calendar day must be kept.
                    "placed_at": f"2026-0{1 + k}-{10 + i % 15}T23:30:00+03:00",
                    "amount": str(1000 + 100 * i + (k * 731 + i * 17) % 450),
                }
            )
    orders.append(
        {
            "external_id": "refund",
            "customer_external_id": "c0",
            "placed_at": "2026-03-01",
            "amount": "99999",
            "status": "refunded",
        }
    )
    ingest_records(client=client_a, kind="orders", records=orders)
    return client_a


def test_extract_reads_local_days_and_paid_orders_only(base):
    orders = load_paid_orders(base)
    assert len(orders) == sum(i % 5 + 1 for i in range(40))
    assert 99999 not in set(orders["amount"])
    first = orders.sort_values(["customer_id", "placed_at"]).iloc[0]
    assert first["placed_at"] == dt.datetime(2026, 1, 10, 23, 30)


def test_run_writes_every_customer_and_records_the_models(base):
    run = scoring_run_request(client=base, source="cli")
    seen = []
    run = scoring_run_execute(
        run=run, as_of=dt.date(2026, 7, 1), on_progress=lambda p, s: seen.append(p)
    )
    assert run.status == ScoringRun.Status.SUCCEEDED
    assert seen[-1] == 100
    assert seen == sorted(seen)
    assert (run.customers, run.orders) == (40, sum(i % 5 + 1 for i in range(40)))
    assert set(run.parameters) == {"bgnbd", "gamma_gamma", "recommendations"}
    assert {"extract", "rfm", "fit", "write"} <= set(run.stage_seconds)
    scores = CustomerScore.objects.for_client(base)
    assert scores.count() == Customer.objects.for_client(base).count() == 40
    heavy = scores.get(customer__external_id="c39")  # 5 orders, the biggest amounts
    light = scores.get(customer__external_id="c0")  # 1 order
    assert (heavy.frequency, light.frequency) == (5, 1)
    assert heavy.m_score == 5
    assert heavy.predicted_clv > light.predicted_clv
    assert heavy.clv_percentile > light.clv_percentile
    assert 0 <= heavy.churn_probability <= 1
    assert heavy.rfm_segment
    assert heavy.lifecycle_stage


def test_second_run_replaces_rows_and_records_transitions(base):
    first = scoring_run_execute(
        run=scoring_run_request(client=base, source="admin"), as_of=dt.date(2026, 7, 1)
    )
    second = scoring_run_execute(
        run=scoring_run_request(client=base, source="admin"), as_of=dt.date(2027, 7, 1)
    )
    assert CustomerScore.objects.for_client(base).count() == 40
    assert set(CustomerScore.objects.for_client(base).values_list("run_id", flat=True)) == {
        second.pk
    }
    moved = sum(n for row in second.rfm_transitions.values() for n in row.values())
    assert moved == 40
    assert first.rfm_transitions == {}


def test_failed_run_is_recorded_not_silent(base, monkeypatch):
    from segments import services

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "compute_scores", broken)
    run = scoring_run_request(client=base, source="admin")
    with pytest.raises(RuntimeError):
        scoring_run_execute(run=run)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.FAILED
    assert "boom" in run.error
    assert CustomerScore.objects.for_client(base).count() == 0


def test_a_claimed_run_is_not_run_twice(base):
    run = scoring_run_request(client=base, source="admin")
    ScoringRun.objects.for_client(base).filter(pk=run.pk).update(status="running")
    assert scoring_run_execute(run=run).status == ScoringRun.Status.RUNNING
    assert CustomerScore.objects.for_client(base).count() == 0
