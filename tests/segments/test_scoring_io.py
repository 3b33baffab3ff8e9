"""The scoring pipeline's PostgreSQL input and output: split reads in one snapshot, binary COPY."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.db import connection

from clients.ingest import ingest_records
from clients.models import Customer
from clients.services import client_create
from segments import services
from segments.models import CustomerScore, ScoringRun

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL COPY paths")


def _committed_client(name: str):
    """A client in a transactional test. Tiers come from a data migration, which an earlier
    transactional test's flush removes: seeded again when missing (as in test_celery_worker)."""
    from importlib import import_module

    from django.apps import apps

    from clients.models import Tier

    if not Tier.objects.exists():
        import_module("clients.migrations.0002_seed_tiers").seed_tiers(apps, None)
    return client_create(name=name, tier_code="enterprise")


def _seed(client, customers: int = 30) -> None:
    ingest_records(
        client=client,
        kind="customers",
        records=[{"external_id": f"c{i}"} for i in range(customers)],
    )
    orders = [
        {
            "external_id": f"o{i}-{k}",
            "customer_external_id": f"c{i}",
            "placed_at": f"2026-0{1 + k}-{10 + i % 15}T23:30:00+03:00",
            "amount": f"{1000 + 100 * i + k}.{(i * 7 + k) % 100:02d}",
            "status": "refunded" if (i + k) % 11 == 0 else "paid",
        }
        for i in range(customers)
        for k in range(i % 4 + 1)
    ]
    ingest_records(client=client, kind="orders", records=orders)


@pytest.mark.django_db(transaction=True)
def test_split_reads_see_every_paid_order_once(monkeypatch):
    client = _committed_client("Split")
    other = _committed_client("Other")
    _seed(client)
    _seed(other, customers=7)
    whole = services._paid_orders_and_customers_pg(client)  # small table: one read
    monkeypatch.setattr(services, "_SPLIT_MIN_BLOCKS", 0)
    monkeypatch.setattr(services, "_SPLIT_PARTS", 3)
    split = services._paid_orders_and_customers_pg(client)
    key = ["customer_id", "placed_at", "amount"]
    pd.testing.assert_frame_equal(
        whole[0].sort_values(key).reset_index(drop=True),
        split[0].sort_values(key).reset_index(drop=True),
    )
    assert (whole[1] == split[1]).all()
    expected = sum(1 for i in range(30) for k in range(i % 4 + 1) if (i + k) % 11)
    assert len(split[0]) == expected
    assert split[0]["placed_at"].min() == dt.datetime(2026, 1, 10, 23, 30)
    # The whole run outside a transaction: reads and writes on helper connections.
    run = services.scoring_run_execute(
        run=services.scoring_run_request(client=client, source="admin"), as_of=dt.date(2026, 7, 1)
    )
    assert run.status == ScoringRun.Status.SUCCEEDED, run.error
    assert run.orders == expected
    assert CustomerScore.objects.for_client(client).count() == 30
    again = services.scoring_run_execute(
        run=services.scoring_run_request(client=client, source="admin"), as_of=dt.date(2026, 8, 1)
    )
    assert again.status == ScoringRun.Status.SUCCEEDED, again.error
    buyers = split[0]["customer_id"].nunique()  # c0's only order was refunded
    assert buyers == 29
    assert sum(n for row in again.rfm_transitions.values() for n in row.values()) == buyers
    assert set(CustomerScore.objects.for_client(client).values_list("run_id", flat=True)) == {
        again.pk
    }


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_keeps_the_previous_scores(monkeypatch):
    """The helper connection deletes the old rows early: a failure must roll that back."""
    client = _committed_client("Keep")
    _seed(client)
    first = services.scoring_run_execute(
        run=services.scoring_run_request(client=client, source="admin"), as_of=dt.date(2026, 7, 1)
    )
    assert first.status == ScoringRun.Status.SUCCEEDED, first.error

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "compute_scores", broken)
    with pytest.raises(RuntimeError):
        services.scoring_run_execute(
            run=services.scoring_run_request(client=client, source="admin"),
            as_of=dt.date(2026, 8, 1),
        )
    kept = CustomerScore.objects.for_client(client)
    assert kept.count() == 30
    assert set(kept.values_list("run_id", flat=True)) == {first.pk}


@pytest.mark.django_db
def test_binary_copy_writes_exact_values_and_nulls(client_a):
    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": f"c{i}"} for i in range(6)],
    )
    ids = np.sort(np.array(Customer.objects.for_client(client_a).values_list("pk", flat=True)))
    run = ScoringRun.objects.create(client=client_a)
    money = [0.0, 0.005, 0.015, 1234567890.125, 999999999999.99, np.nan]
    scores = pd.DataFrame(
        {
            "recency_days": [0, 5, np.nan, 400, 1, np.nan],
            "frequency": [1, 2, 0, 9, 3, 0],
            "monetary": [12.345, 0.0, 0.0, 999999999999.99, 7.5, 0.0],
            "r_score": [5, 4, np.nan, 1, 3, np.nan],
            "f_score": [1, 2, np.nan, 5, 3, np.nan],
            "m_score": [2, 2, np.nan, 5, 1, np.nan],
            "rfm_segment": ["Champions", "Can't Lose Them", np.nan, "Lost", "Новый", np.nan],
            "lifecycle_stage": pd.Categorical(
                ["Retention", "Win-back", "Awareness", "Win-back", "Onboarding", "Awareness"]
            ),
            "at_risk": [False, True, False, True, False, False],
            "p_alive": [0.5, 1e-300, np.nan, 1.0, 0.25, np.nan],
            "churn_probability": [0.5, 1.0, np.nan, 0.0, 0.75, np.nan],
            "expected_purchases_90d": [0.1, 2.5, np.nan, 0.0, 1e-9, np.nan],
            "expected_order_value": money,
            "predicted_clv": [-5.555, 1.0, np.nan, 3.0, -0.004, np.nan],
            "clv_percentile": pd.array([1, 100, None, 50, 2, None], dtype="Int16"),
        },
        index=pd.Index(ids, name="customer_id"),
    )
    services.write_scores(client=client_a, run=run, scores=scores)
    rows = {
        row.customer_id: row
        for row in CustomerScore.objects.for_client(client_a).order_by("customer_id")
    }
    assert list(rows) == list(ids)

    def decimal(value: float) -> Decimal | None:
        return None if np.isnan(value) else Decimal(f"{np.round(value, 2):.2f}")

    for k, customer in enumerate(ids):
        row, want = rows[customer], scores.iloc[k]
        assert row.client_id == client_a.pk
        assert row.run_id == run.pk
        assert row.frequency == want["frequency"]
        assert row.recency_days == (
            None if np.isnan(want["recency_days"]) else want["recency_days"]
        )
        assert row.r_score == (None if np.isnan(want["r_score"]) else want["r_score"])
        assert row.monetary == decimal(want["monetary"])
        assert row.expected_order_value == decimal(want["expected_order_value"])
        assert row.predicted_clv == decimal(want["predicted_clv"])
        assert row.rfm_segment == ("" if pd.isna(want["rfm_segment"]) else want["rfm_segment"])
        assert row.lifecycle_stage == want["lifecycle_stage"]
        assert row.at_risk == want["at_risk"]
        assert row.p_alive == (None if np.isnan(want["p_alive"]) else want["p_alive"])
        clv_percentile = want["clv_percentile"]
        assert row.clv_percentile == (None if pd.isna(clv_percentile) else clv_percentile)
        assert abs(row.computed_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)

    # numeric(18, 2) holds sums of the biggest orders; beyond it a run bounds the values first
    # (segments.services._bound_money), the writer itself refuses.
    too_big = scores.assign(predicted_clv=[1e16, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="numeric"):
        services.write_scores(client=client_a, run=run, scores=too_big)


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        ("Europe/Moscow", "2023-01-01", "2026-02-01"),  # one offset: shifted in place
        ("Europe/Moscow", "2010-06-01", "2015-01-01"),  # DST until 2011, +4 until 2014
        ("Europe/Berlin", "2024-01-01", "2026-01-01"),
        ("America/St_Johns", "2025-03-01", "2025-12-01"),  # half-hour offset and DST
        ("UTC", "2020-01-01", "2020-01-02"),
    ],
)
def test_wall_time_matches_pandas(zone, start, end):
    rng = np.random.default_rng(7)
    lo, hi = (pd.Timestamp(v, tz="UTC").value // 1000 for v in (start, end))
    micros = np.sort(rng.integers(lo, hi, 50_000))
    expected = (
        pd.DatetimeIndex(micros.view("datetime64[us]"))
        .tz_localize("UTC")
        .tz_convert(zone)
        .tz_localize(None)
        .to_numpy()
    )
    assert (services._wall_time(micros.copy(), zone) == expected).all()
    assert len(services._wall_time(np.empty(0, dtype=np.int64), zone)) == 0
