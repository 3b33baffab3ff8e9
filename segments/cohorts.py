"""Monthly acquisition cohorts: retention, revenue and cumulative revenue per customer (CLV).

Pure numpy/pandas: no Django import (STYLE §2).

A customer's cohort is the calendar month of their first purchase; ``month`` is the number of
calendar months since that month (0 = the acquisition month itself, so a purchase on 31 January
by a customer acquired on 30 January is month 0, and one on 1 February is month 1). For every
cohort and every month from 0 up to the last month of the data (or of ``as_of``):

- ``customers``: the cohort's size (customers acquired that month);
- ``active``: customers of the cohort with at least one purchase in that month;
- ``retention_pct``: 100 · active / customers (month 0 is always 100);
- ``revenue``: the cohort's total amount in that month (month 0 includes the first purchases);
- ``cumulative_revenue_per_customer``: the cohort's revenue from month 0 to this month, divided
  by its size: the realised CLV of the cohort at that age.

Months without any purchase of the cohort are present with zeros, so each cohort has a full
row of the triangle.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from segments.rfm import customer_codes

_MAX_MARK_CELLS = 200_000_000  # bytes of the customer x month bitmap before falling back to hashing

COLUMNS = (
    "cohort",
    "month",
    "customers",
    "active",
    "retention_pct",
    "revenue",
    "cumulative_revenue_per_customer",
)


def _wall_clock(values: pd.Series) -> np.ndarray:
    """datetime64 wall-clock values (tz-aware columns keep their local date and time)."""
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        values = pd.to_datetime(values)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_localize(None)
    out = values.to_numpy()
    if np.isnat(out).any():
        raise ValueError("placed_at has empty values")
    return out


def cohort_table(
    transactions: pd.DataFrame,
    *,
    as_of: dt.date | dt.datetime | str | None = None,
    customer_col: str = "customer_id",
    date_col: str = "placed_at",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """One row per (cohort, month) with the columns in :data:`COLUMNS`.

    ``cohort`` is the acquisition month as ``YYYY-MM``. Transactions after ``as_of`` are
    ignored, and the triangle runs to as_of's month (default: the last month of the data).
    """
    day = _wall_clock(transactions[date_col]).astype("datetime64[D]").astype(np.int64)
    amount = transactions[amount_col].to_numpy(dtype=float)
    ids = transactions[customer_col]
    if as_of is not None:
        as_of_day = np.datetime64(pd.Timestamp(as_of).date(), "D")
        keep = day <= as_of_day.astype(np.int64)
        day, amount, ids = day[keep], amount[keep], ids[keep]
        last_month = int(as_of_day.astype("datetime64[M]").astype(np.int64))
    if not len(day):
        return pd.DataFrame({name: [] for name in COLUMNS})
    # Calendar months through a per-day table: datetime64[M] conversion of every row is slow.
    day_lo = int(day.min())
    month_of_day = np.arange(day_lo, int(day.max()) + 1).astype("datetime64[D]")
    month = month_of_day.astype("datetime64[M]").astype(np.int64)[day - day_lo]
    if as_of is None:
        last_month = int(month.max())

    codes, uniques = customer_codes(ids)
    n = len(uniques)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, month)
    lo = int(first.min())
    n_cohorts = last_month - lo + 1
    width = n_cohorts  # month offsets 0 .. n_cohorts - 1
    first_of_row = first[codes]
    offset = month - first_of_row
    cell = (first_of_row - lo) * width + offset
    revenue = np.bincount(cell, weights=amount, minlength=n_cohorts * width)
    # Active customers: distinct (customer, month) pairs, counted per cell.
    pair_keys = codes.astype(np.int64) * width + offset
    if n * width <= _MAX_MARK_CELLS:
        # A customer x month bitmap: marking is one scatter, cheaper than hashing 10M keys.
        marks = np.zeros(n * width, dtype=bool)
        marks[pair_keys] = True
        pair_cells = np.flatnonzero(marks)
    else:
        pair_cells = pd.unique(pair_keys)
    pair_customers, pair_offsets = np.divmod(pair_cells, width)
    active = np.bincount(
        (first[pair_customers] - lo) * width + pair_offsets, minlength=n_cohorts * width
    )
    size = np.bincount(first - lo, minlength=n_cohorts)

    cohort_idx, month_idx = np.divmod(np.arange(n_cohorts * width), width)
    valid = (cohort_idx + month_idx <= n_cohorts - 1) & (size[cohort_idx] > 0)
    revenue = revenue.reshape(n_cohorts, width)
    cumulative = np.cumsum(revenue, axis=1).ravel()
    revenue = revenue.ravel()
    sizes = size[cohort_idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        retention = 100.0 * active / sizes
        per_customer = cumulative / sizes
    labels = pd.period_range(
        start=pd.Period(np.datetime64(lo, "M"), freq="M"), periods=n_cohorts, freq="M"
    ).strftime("%Y-%m")
    return pd.DataFrame(
        {
            "cohort": np.asarray(labels)[cohort_idx[valid]],
            "month": month_idx[valid],
            "customers": sizes[valid],
            "active": active[valid],
            "retention_pct": retention[valid],
            "revenue": revenue[valid],
            "cumulative_revenue_per_customer": per_customer[valid],
        }
    ).reset_index(drop=True)


def cohort_triangle(table: pd.DataFrame, value: str = "retention_pct") -> pd.DataFrame:
    """The triangle of one column of :func:`cohort_table`: cohorts as rows, months as columns."""
    return table.pivot(index="cohort", columns="month", values=value)
