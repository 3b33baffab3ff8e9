"""Every score of every customer from plain frames: RFM, lifecycle, BG/NBD + Gamma-Gamma.

Pure computation (no Django), so the whole pipeline's arithmetic is testable and benchmarkable
without a database. ``segments.services`` feeds it from PostgreSQL and writes what it returns.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import clv, lifecycle, model_check, rfm

DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class ScoringConfig:
    thresholds: lifecycle.LifecycleThresholds = field(default_factory=lifecycle.LifecycleThresholds)
    clv_months: int = 12
    monthly_discount_rate: float = 0.01
    gross_margin: float = 0.35
    holdout_days: int = 90
    recommendations: int = 5  # products per customer (segments.recommend)


@dataclass
class ScoringResult:
    scores: pd.DataFrame  # indexed by customer_id
    parameters: dict[str, Any]
    holdout: dict[str, Any]
    stage_seconds: dict[str, float]
    # For holdout_check after compute_scores(check_holdout=False): its inputs.
    purchase_days: pd.DataFrame | None = None
    bgnbd: clv.BGNBDParams | None = None


SCORE_COLUMNS = (
    "recency_days",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "lifecycle_stage",
    "at_risk",
    "p_alive",
    "churn_probability",
    "expected_purchases_90d",
    "expected_order_value",
    "predicted_clv",
    "clv_percentile",
)


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 3)
        self._last = now


def _holdout_check(
    days: pd.DataFrame,
    as_of: np.datetime64,
    holdout_days: int,
    start: clv.BGNBDParams | None = None,
) -> dict[str, Any]:
    """Fit on everything before the last ``holdout_days`` and compare with what happened."""
    calibration_end = as_of - np.timedelta64(holdout_days, "D")
    summary = clv.summary_from_purchase_days(days, calibration_end=calibration_end, time_unit="day")
    summary = summary[summary["T"] > 0]
    if len(summary) < 50 or (summary["frequency"] > 0).sum() < 10:
        return {"skipped": "мало данных для проверки на контрольном периоде"}
    # The full fit is a close start: the calibration data is most of the same data.
    params = clv.bgnbd_fit(summary["frequency"], summary["recency"], summary["T"], start=start)
    report = model_check.holdout_report(params, summary, duration=float(holdout_days))
    report["calibration_end"] = str(calibration_end)
    report["holdout_days"] = holdout_days
    return report


def holdout_check(
    result: ScoringResult, *, as_of: dt.date, config: ScoringConfig | None = None
) -> dict[str, Any]:
    """The holdout check of ``compute_scores(..., check_holdout=False)``, run later (the scoring
    run does it while the scores are written). Stores it in ``result`` and returns it."""
    config = config or ScoringConfig()
    if result.purchase_days is None or result.bgnbd is None:
        return result.holdout
    started = time.perf_counter()
    result.holdout = _holdout_check(
        result.purchase_days, np.datetime64(as_of, "D"), config.holdout_days, start=result.bgnbd
    )
    result.stage_seconds["holdout"] = round(time.perf_counter() - started, 3)
    return result.holdout


def compute_scores(
    *,
    orders: pd.DataFrame,
    customers: np.ndarray,
    as_of: dt.date,
    events: pd.DataFrame | None = None,
    config: ScoringConfig | None = None,
    check_holdout: bool = True,
) -> ScoringResult:
    """Scores for ``customers`` (every id of the client) as of the end of ``as_of``.

    orders: paid orders with customer_id, placed_at (local calendar day or time), amount.
    events: customer_id, occurred_at, type (for lifecycle intent). Customers without paid orders
    get lifecycle stages only. ``check_holdout=False`` leaves the holdout check (which no score
    depends on) to :func:`holdout_check`.
    """
    config = config or ScoringConfig()
    clock = _Clock()
    index = pd.Index(np.asarray(customers), name="customer_id")
    as_of_day = np.datetime64(as_of, "D")
    in_time = (orders["placed_at"] < pd.Timestamp(as_of_day + 1)).to_numpy()
    if not in_time.all():  # no copy of 10M rows in the usual case
        orders = orders[in_time]

    # One (customer, day) table serves every model: RFM and lifecycle reduce it per customer
    # instead of passing over every order again (its cost is counted in "rfm").
    days = clv.purchase_days(orders)
    rfm_frame = rfm.rfm_from_purchase_days(days, as_of=as_of)
    clock.lap("rfm")
    stages = lifecycle.lifecycle_from_purchase_days(
        days, events=events, customers=index, as_of=as_of, thresholds=config.thresholds
    )
    clock.lap("lifecycle")

    summary = clv.summary_from_purchase_days(days, calibration_end=as_of_day, time_unit="day")
    parameters: dict[str, Any] = {}
    deferred: tuple[pd.DataFrame | None, clv.BGNBDParams | None] = (None, None)
    scores = pd.DataFrame(index=index)
    if len(summary) >= 20 and (summary["frequency"] > 0).sum() >= 5:
        bgnbd = clv.bgnbd_fit(summary["frequency"], summary["recency"], summary["T"])
        parameters["bgnbd"] = {**bgnbd.as_dict(), "customers": bgnbd.customers}
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        gamma = clv.gamma_gamma_fit(repeat["frequency"], repeat["monetary_value"])
        parameters["gamma_gamma"] = {**gamma.as_dict(), "customers": gamma.customers}
        clock.lap("fit")
        x = summary["frequency"].to_numpy(dtype=float)
        t_x = summary["recency"].to_numpy(dtype=float)
        big_t = summary["T"].to_numpy(dtype=float)
        m = summary["monetary_value"].to_numpy(dtype=float)
        alive = clv.p_alive(bgnbd, x, t_x, big_t)
        predicted = pd.DataFrame(
            {
                "p_alive": alive,
                "churn_probability": 1.0 - alive,
                "expected_purchases_90d": clv.expected_purchases(bgnbd, 90.0, x, t_x, big_t),
                "expected_order_value": clv.expected_order_value(gamma, x, m),
                "predicted_clv": clv.customer_lifetime_value(
                    bgnbd,
                    gamma,
                    x,
                    t_x,
                    big_t,
                    m,
                    months=config.clv_months,
                    monthly_discount_rate=config.monthly_discount_rate,
                    gross_margin=config.gross_margin,
                    units_per_month=DAYS_PER_MONTH,
                ),
            },
            index=summary.index,
        )
        # A degenerate spend model (e.g. no variation of order values) can give no finite value:
        # such customers get no CLV rather than an invented one.
        predicted = predicted.replace([np.inf, -np.inf], np.nan)
        clv_rank = predicted["predicted_clv"].rank(method="first", pct=True)
        predicted["clv_percentile"] = np.ceil(clv_rank * 100).astype("Int16")
        scores = scores.join(predicted)
        clock.lap("clv")
        if check_holdout:
            holdout = _holdout_check(days, as_of_day, config.holdout_days, start=bgnbd)
            clock.lap("holdout")
        else:
            holdout = {}
            deferred = (days, bgnbd)
    else:
        holdout = {"skipped": "мало повторных покупок для модели CLV"}

    scores = scores.join(
        rfm_frame[["recency_days", "frequency", "monetary", "r_score", "f_score", "m_score"]]
    )
    scores["rfm_segment"] = rfm_frame["segment"].astype(str).reindex(index)
    scores = scores.join(stages[["stage", "at_risk"]].rename(columns={"stage": "lifecycle_stage"}))
    scores["frequency"] = scores["frequency"].fillna(0).astype("int64")
    scores["monetary"] = scores["monetary"].fillna(0.0)
    scores["at_risk"] = scores["at_risk"].fillna(False).astype(bool)
    for column in SCORE_COLUMNS:
        if column not in scores.columns:
            scores[column] = np.nan
    clock.lap("assemble")
    return ScoringResult(
        scores=scores[list(SCORE_COLUMNS)],
        parameters=parameters,
        holdout=holdout,
        stage_seconds=clock.seconds,
        purchase_days=deferred[0],
        bgnbd=deferred[1],
    )
