"""Model check: fit on a calibration period, compare predicted and actual repeat purchases after it.

Pure numpy/pandas: no Django import (STYLE §2).

The transactions are split at ``calibration_end`` (inclusive): the BG/NBD model is fitted on the
calibration summary (:func:`segments.clv.summary_from_purchase_days`), and for each calibration
customer the expected number of repeat purchase days in the holdout (calibration_end,
observation_end] is compared with the actual number. Reported: the totals, the mean absolute
error per customer, and the same per calibration-frequency bucket (0, 1, ..., 6 and 7+, as in
Fader, Hardie & Lee 2005, fig. 4).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from segments import clv

BUCKETS = 7  # frequencies 0..BUCKETS-1 each get a bucket, the rest go into "BUCKETS+"


def holdout_duration(
    calibration_end: dt.date | str,
    observation_end: dt.date | str,
    time_unit: clv.TimeUnit = "week",
) -> float:
    """Length of the holdout period (calibration_end, observation_end] in ``time_unit``."""
    days = (pd.Timestamp(observation_end).date() - pd.Timestamp(calibration_end).date()).days
    if days < 0:
        raise ValueError("observation_end is before calibration_end")
    return days / clv.UNIT_DAYS[time_unit]


def frequency_bucket(frequency) -> np.ndarray:
    """Bucket labels: "0".."6" and "7+"."""
    x = np.asarray(frequency, dtype=np.int64)
    labels = np.array([str(k) for k in range(BUCKETS)] + [f"{BUCKETS}+"])
    return labels[np.minimum(x, BUCKETS)]


def holdout_report(
    params: clv.BGNBDParams,
    summary: pd.DataFrame,
    *,
    duration: float,
) -> dict[str, Any]:
    """Predicted vs actual repeat purchases in the holdout, overall and by frequency bucket.

    ``summary`` has the columns frequency, recency, T (calibration) and holdout_frequency
    (actual repeat purchase days in the holdout); ``duration`` is the holdout's length.
    """
    x = summary["frequency"].to_numpy(dtype=float)
    predicted = clv.expected_purchases(
        params, duration, x, summary["recency"].to_numpy(), summary["T"].to_numpy()
    )
    actual = summary["holdout_frequency"].to_numpy(dtype=float)
    error = np.abs(predicted - actual)
    frame = pd.DataFrame(
        {
            "bucket": frequency_bucket(x),
            "actual": actual,
            "predicted": predicted,
            "error": error,
        }
    )
    grouped = frame.groupby("bucket", sort=False).agg(
        customers=("actual", "size"),
        actual_mean=("actual", "mean"),
        predicted_mean=("predicted", "mean"),
        mae=("error", "mean"),
    )
    order = [label for label in frequency_bucket(np.arange(BUCKETS + 1)) if label in grouped.index]
    by_frequency = [
        {
            "frequency": label,
            "customers": int(grouped.at[label, "customers"]),
            "actual_mean": float(grouped.at[label, "actual_mean"]),
            "predicted_mean": float(grouped.at[label, "predicted_mean"]),
            "mae": float(grouped.at[label, "mae"]),
        }
        for label in order
    ]
    return {
        "duration": float(duration),
        "customers": len(frame),
        "actual": float(actual.sum()),
        "predicted": float(predicted.sum()),
        "mae": float(error.mean()) if len(frame) else float("nan"),
        "by_frequency": by_frequency,
    }


def clv_fit_report(
    transactions: pd.DataFrame,
    *,
    customer_col: str,
    date_col: str,
    amount_col: str | None,
    calibration_end: dt.date | str,
    time_unit: clv.TimeUnit = "week",
) -> dict[str, Any]:
    """Fit BG/NBD (and Gamma-Gamma when there are amounts) on the calibration period.

    Several rows of a customer on one calendar day make one purchase day (amounts summed).
    Returns ``{"bgnbd": {r, alpha, a, b, ll}, "gamma_gamma": {p, q, v, ll} or None,
    "customers", "repeat_customers", "holdout": {...} or None}``. The spend model is fitted on
    repeat customers with a positive mean repeat value; the holdout is reported when the data
    goes past calibration_end (observation_end = the last purchase day in the data).
    """
    days = clv.purchase_days(
        transactions, customer_col=customer_col, date_col=date_col, amount_col=amount_col
    )
    summary = clv.summary_from_purchase_days(
        days, calibration_end=calibration_end, time_unit=time_unit
    )
    x = summary["frequency"].to_numpy()
    bgnbd = clv.bgnbd_fit(x, summary["recency"].to_numpy(), summary["T"].to_numpy())
    gamma_gamma = None
    if amount_col is not None:
        m = summary["monetary_value"].to_numpy()
        spend = (x > 0) & (m > 0)
        gamma_gamma = clv.gamma_gamma_fit(x[spend], m[spend]).as_dict()
    holdout = None
    end = pd.Timestamp(calibration_end).date()
    last_day = pd.Timestamp(days["day"].max()).date() if len(days) else end
    if last_day > end:
        duration = holdout_duration(end, last_day, time_unit)
        holdout = {
            "calibration_end": end.isoformat(),
            "observation_end": last_day.isoformat(),
            "time_unit": time_unit,
            **holdout_report(bgnbd, summary, duration=duration),
        }
    return {
        "bgnbd": bgnbd.as_dict(),
        "gamma_gamma": gamma_gamma,
        "customers": len(summary),
        "repeat_customers": int((x > 0).sum()),
        "holdout": holdout,
    }
