"""The KPIs per month of ``reports.kpis`` computed with pandas from plain frames (no Django).

The same definitions as ``reports.kpis`` (see its docstring), for where its one SQL statement
cannot run (SQLite, the embedded first run) and as the benchmark's side-by-side check. Money is
carried as integer kopecks (exact sums); the few per-month divisions are done in ``Decimal`` and
rounded half up, like PostgreSQL's ``round(numeric)``.

Inputs:

- ``orders``: paid orders, columns ``customer_id`` (int), ``month`` (int: year * 12 + month - 1
  of the client's local month) and ``amount_kop`` (int);
- ``scores``: ``customer_id``, ``predicted_kop`` (int, customers without a prediction absent);
- ``spend``: ``month`` (as above), ``spend_kop`` (int), one row per month with spend rows.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd

CENT = Decimal("0.01")
RATE = Decimal("0.0001")


def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def month_date(index: int) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, 1)


def _div(numerator: Decimal | int | None, denominator: Decimal | int | None, places: Decimal):
    if numerator is None or denominator is None or denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(places, rounding=ROUND_HALF_UP)


def _money(kopecks: int | None) -> Decimal | None:
    return None if kopecks is None else (Decimal(int(kopecks)) / 100).quantize(CENT)


def kpi_rows(
    orders: pd.DataFrame,
    scores: pd.DataFrame,
    spend: pd.DataFrame,
    *,
    current_month: int,
    since_month: int | None = None,
) -> list[dict[str, Any]]:
    """One dict per month (``month`` a first day, then every figure of ``reports.kpis``) from
    the first order or spend month to ``current_month``, keeping those from ``since_month``."""
    customer = orders["customer_id"].to_numpy(dtype=np.int64)
    month = orders["month"].to_numpy(dtype=np.int64)
    amount = orders["amount_kop"].to_numpy(dtype=np.int64)
    spend_by_month = dict(
        zip(
            spend["month"].to_numpy(dtype=np.int64).tolist(),
            spend["spend_kop"].to_numpy(dtype=np.int64).tolist(),
            strict=True,
        )
    )
    starts = [m for m in (month.min() if len(month) else None, min(spend_by_month, default=None))]
    starts = [int(m) for m in starts if m is not None]
    if not starts:
        return []
    first = min(starts)

    # Customer-months, sorted by customer then month.
    cm = (
        pd.DataFrame({"c": customer, "m": month, "a": amount})
        .groupby(["c", "m"], sort=True)["a"]
        .agg(["size", "sum"])
        .reset_index()
    )
    c = cm["c"].to_numpy()
    m = cm["m"].to_numpy()
    n = cm["size"].to_numpy(dtype=np.int64)
    revenue = cm["sum"].to_numpy(dtype=np.int64)
    same_prev = np.r_[False, c[1:] == c[:-1]]
    same_next = np.r_[c[1:] == c[:-1], False]
    prev = np.where(same_prev, np.r_[0, m[:-1]], -(10**9))
    nxt = np.where(same_next, np.r_[m[1:], 0], 10**9)
    new = ~same_prev
    # Orders to date per customer: a running sum restarted at each customer's first month.
    running = np.cumsum(n)
    base = np.where(new, running - n, 0)
    base = np.maximum.accumulate(base)
    to_date = running - base
    activation = new | (prev < m - 12)
    churn_at = m[(~same_next) | (nxt > m + 12)] + 12

    per_month = (
        pd.DataFrame(
            {
                "m": m,
                "buyers": 1,
                "orders": n,
                "revenue": revenue,
                "new": new.astype(np.int64),
                "repeat": (to_date >= 2).astype(np.int64),
                "activations": activation.astype(np.int64),
            }
        )
        .groupby("m")
        .sum()
    )
    churns = pd.Series(churn_at).value_counts()

    # Customers: first month, revenue to date, predicted CLV.
    first_month = m[new]
    totals = np.add.reduceat(revenue, np.flatnonzero(new)) if len(revenue) else revenue
    people = pd.DataFrame({"c": c[new], "first": first_month, "revenue": totals})
    people = people.merge(
        scores.rename(columns={"customer_id": "c"})[["c", "predicted_kop"]], on="c", how="left"
    )
    cohorts = people.groupby("first").agg(
        revenue=("revenue", "sum"),
        predicted_sum=("predicted_kop", "sum"),
        predicted_n=("predicted_kop", "count"),
    )

    def get(frame: pd.DataFrame, key: int, column: str) -> int:
        return int(frame.at[key, column]) if key in frame.index else 0

    rows = []
    active = revenue_cum = customers_cum = predicted_sum_cum = predicted_n_cum = 0
    for index in range(first, current_month + 1):
        at_start = active
        churned = int(churns.get(index, 0))
        active += get(per_month, index, "activations") - churned
        month_revenue = get(per_month, index, "revenue")
        orders_n = get(per_month, index, "orders")
        buyers = get(per_month, index, "buyers")
        new_n = get(per_month, index, "new")
        repeat = get(per_month, index, "repeat")
        revenue_cum += month_revenue
        customers_cum += new_n
        predicted_sum_cum += get(cohorts, index, "predicted_sum")
        predicted_n_cum += get(cohorts, index, "predicted_n")
        spend_kop = spend_by_month.get(index)
        revenue_rub = _money(month_revenue)
        spend_rub = _money(spend_kop)
        hist = _div(Decimal(revenue_cum) / 100, customers_cum, Decimal("1e-20"))
        cac = _div(spend_rub, new_n, Decimal("1e-20"))
        in_cohort = index in cohorts.index
        cohort_predicted = _money(get(cohorts, index, "predicted_sum")) if in_cohort else None
        if in_cohort and get(cohorts, index, "predicted_n") == 0:
            cohort_predicted = None  # no prediction for anyone acquired that month
        if index < (since_month if since_month is not None else first):
            continue
        rows.append(
            {
                "month": month_date(index),
                "revenue": revenue_rub,
                "orders": orders_n,
                "buyers": buyers,
                "new_customers": new_n,
                "active_customers": active,
                "active_at_start": at_start,
                "churned_customers": churned,
                "repeat_buyers": repeat,
                "customers_to_date": customers_cum,
                "spend": spend_rub,
                "repeat_purchase_rate": _div(repeat, buyers, RATE),
                "retention_rate": _div(at_start - churned, at_start, RATE),
                "churn_rate": _div(churned, at_start, RATE),
                "arpu": _div(revenue_rub, active, CENT),
                "aov": _div(revenue_rub, orders_n, CENT),
                "purchase_frequency": _div(orders_n, buyers, RATE),
                "historical_clv": None if hist is None else hist.quantize(CENT, ROUND_HALF_UP),
                "predicted_clv": _div(Decimal(predicted_sum_cum) / 100, predicted_n_cum, CENT),
                "cac": None if cac is None else cac.quantize(CENT, ROUND_HALF_UP),
                "ltv_cac": _div(hist, cac, RATE),
                "roas": _div(revenue_rub, spend_rub, RATE),
                "clv_roas": _div(cohort_predicted, spend_rub, RATE),
                "cohort_clv": _div(
                    _money(get(cohorts, index, "revenue")) if in_cohort else None, new_n, CENT
                ),
            }
        )
    return rows
