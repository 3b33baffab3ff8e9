"""RFM and lifecycle from the purchase-day table equal the same from the orders."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from segments import clv, lifecycle, rfm


def _orders(ids) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 5_000
    placed = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 400 * 86_400, n), "s")
    return pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n),
            "placed_at": placed,
            "amount": rng.integers(1, 50, n) * 100.0,  # whole roubles: sums are exact
        }
    )


@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("as_of", [dt.date(2026, 2, 5), dt.date(2025, 9, 1)])
def test_same_tables_as_from_orders(kind, as_of):
    ids = np.arange(100, 700) if kind == "int" else np.array([f"c{i}" for i in range(600)])
    orders = _orders(ids)
    customers = pd.Index(np.sort(np.r_[ids, ids[:1]][1:]))  # every customer, some never buy
    events = pd.DataFrame(
        {
            "customer_id": ids[:50],
            "occurred_at": pd.Timestamp(as_of) - pd.to_timedelta(np.arange(50), "D"),
            "type": ["cart", "visit"] * 25,
        }
    )
    days = clv.purchase_days(orders)
    pd.testing.assert_frame_equal(
        rfm.rfm_from_purchase_days(days, as_of=as_of), rfm.rfm_table(orders, as_of=as_of)
    )
    for kwargs in ({}, {"events": events, "customers": customers}):
        pd.testing.assert_frame_equal(
            lifecycle.lifecycle_from_purchase_days(days, as_of=as_of, **kwargs),
            lifecycle.lifecycle_stages(orders=orders, as_of=as_of, **kwargs),
        )
    shuffled = days.sample(frac=1.0, random_state=3)  # any row order
    pd.testing.assert_frame_equal(
        rfm.rfm_from_purchase_days(shuffled, as_of=as_of), rfm.rfm_table(orders, as_of=as_of)
    )


def test_no_purchases():
    days = clv.purchase_days(_orders(np.arange(5)).iloc[:0])
    assert rfm.rfm_from_purchase_days(days, as_of=dt.date(2026, 1, 1)).empty
    stages = lifecycle.lifecycle_from_purchase_days(
        days, as_of=dt.date(2026, 1, 1), customers=[3, 1]
    )
    assert list(stages.index) == [1, 3]
    assert set(stages["stage"]) == {lifecycle.AWARENESS}
