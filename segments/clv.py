"""Predictive CLV: the BG/NBD purchase model and the Gamma-Gamma spend model.

Pure numpy/scipy/pandas: no Django import (STYLE §2), so it is tested on published data and
benchmarked on its own (bench/clv_fit.py).

Data per customer, in one time unit (days or weeks) and as of the end of the calibration period:

- ``frequency`` (x): number of repeat purchase days, i.e. purchase days after the first one;
- ``recency`` (t_x): time from the first purchase to the last one (0 when x = 0);
- ``T``: time from the first purchase to the end of the calibration period;
- ``monetary_value`` (m̄): mean value of the repeat purchase days (the first excluded).

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a customer
buys at Poisson rate λ ~ Gamma(r, α); after each purchase they drop out with probability
p ~ Beta(a, b). The individual likelihood is

    L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / Γ(r)
        · [ (α+T)^-(r+x) + 1{x>0} · a/(b+x-1) · (α+t_x)^-(r+x) ]

Gamma-Gamma (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"): the value of each
purchase is Gamma(p, ν) with ν ~ Gamma(q, v) per customer; fitted on repeat customers only, and
it assumes spend is independent of frequency.

The fits maximise the log-likelihood over log-parameters with L-BFGS-B and an exact gradient.
Terms that depend on x alone (log-gamma, digamma, beta) are computed once per distinct x;
the logs of α+T and α+t_x once per distinct T and t_x; customers with x = 0 collapse to one
term per distinct T; identical (x, t_x, T) rows are merged with a count. Times are rescaled so
that the largest T is 10 while fitting (α is scaled back), which keeps the optimisation equally
well conditioned for days and weeks.

With the parameters of the CDNOW sample (2,357 customers, weeks) the fit reproduces the
published r = 0.243, α = 4.414, a = 0.793, b = 2.426 (LL = -9582.4) and p = 6.25, q = 3.74,
v = 15.44 (tests/segments/test_clv.py).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, special

TimeUnit = Literal["day", "week"]
UNIT_DAYS: dict[str, int] = {"day": 1, "week": 7}
#: Months expressed in the model's time unit, for CLV horizons (365.25 / 12 days).
UNITS_PER_MONTH: dict[str, float] = {"day": 365.25 / 12, "week": 365.25 / 12 / 7}

_FIT_T_MAX = 10.0  # times are rescaled so that max(T) equals this while fitting
_LOG_BOUND = 20.0  # |log parameter| bound: keeps exp() finite if the optimiser wanders


class ModelFitError(ValueError):
    """The data cannot identify the model (too few customers or no repeat purchases)."""


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters; ``ll`` is the total log-likelihood at the optimum."""

    r: float
    alpha: float
    a: float
    b: float
    ll: float = math.nan
    customers: int = 0
    converged: bool = True

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b, "ll": self.ll}


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters; ``ll`` is the total log-likelihood at the optimum."""

    p: float
    q: float
    v: float
    ll: float = math.nan
    customers: int = 0
    converged: bool = True

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "v": self.v, "ll": self.ll}


# --------------------------------------------------------------------------------------------
# Transactions -> (frequency, recency, T, monetary_value)
# --------------------------------------------------------------------------------------------


def _as_day(value: dt.date | str | np.datetime64 | pd.Timestamp) -> np.datetime64:
    return np.datetime64(pd.Timestamp(value).date(), "D")


def _days(values: pd.Series | np.ndarray) -> np.ndarray:
    """Calendar days (datetime64[D]) of a date column; tz-aware values keep their wall date."""
    series = pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(series.dtype):
        series = pd.to_datetime(series)
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_localize(None)
    return series.to_numpy().astype("datetime64[D]")


def purchase_days(
    transactions: pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    date_col: str = "placed_at",
    amount_col: str | None = "amount",
) -> pd.DataFrame:
    """One row per (customer, calendar day) with purchases: rows of the same day are summed.

    Returns columns ``customer`` (the original id), ``day`` (midnight, datetime64[s]), ``amount``
    (0.0 when ``amount_col`` is None) and ``orders`` (rows of that day). Integer ids come out
    sorted by (customer, day), which :func:`summary_from_purchase_days` then uses; other ids in
    no particular order.
    """
    days = _days(transactions[date_col])
    if np.isnat(days).any():
        raise ValueError(f"column {date_col!r} has empty or unparseable dates")
    ids = transactions[customer_col].to_numpy()
    if (
        ids.dtype.kind in "iu"
        and len(ids)
        and int(ids.max()) - int(ids.min()) < max(2 * len(ids), 1 << 20)
    ):
        # Integer ids in a compact range are their own codes (no hashing): id - min id.
        first_id = int(ids.min())
        keys = ids.astype(np.int64)  # a copy, worked on in place below
        keys -= first_id
        n_codes = int(keys.max()) + 1

        def ids_of(c: np.ndarray) -> Any:
            c += first_id
            return c
    else:
        codes, customers = pd.factorize(transactions[customer_col], use_na_sentinel=True)
        if (codes < 0).any():
            raise ValueError(f"column {customer_col!r} has empty customer ids")
        keys = codes.astype(np.int64)
        n_codes = len(customers)

        def ids_of(c: np.ndarray) -> Any:
            return customers.take(c)

    day_no = days.view(np.int64)
    lo = int(day_no.min()) if len(day_no) else 0
    span = (int(day_no.max()) - lo + 1) if len(day_no) else 1
    # keys = code * span + day - lo, in place: 10M-row temporaries cost more than the arithmetic.
    keys *= span
    keys += day_no
    keys -= lo
    if amount_col is None:
        values = None
    else:
        values = pd.to_numeric(transactions[amount_col], errors="raise").to_numpy(dtype=float)
        if np.isnan(values).any():
            raise ValueError(f"column {amount_col!r} has empty amounts")
    row_bits = max(len(keys) - 1, 1).bit_length()
    if len(keys) and (n_codes * span).bit_length() + row_bits <= 63:
        # One sort of (key, row) packed in an int64 gives the distinct keys, in order, and the
        # rows of each (much faster than hashing ~10M mostly distinct keys).
        keys <<= row_bits
        keys |= np.arange(len(keys), dtype=np.int64)
        keys.sort()
        rows = keys & ((1 << row_bits) - 1)
        keys >>= row_bits
        new = np.empty(len(keys), dtype=bool)
        new[0] = True
        np.not_equal(keys[1:], keys[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        del new
        unique_keys = keys[starts]
        del keys
        orders = np.diff(starts, append=len(rows))
        if values is None:
            amount = np.zeros(len(unique_keys))
        else:
            amount = np.add.reduceat(values[rows], starts)
        del rows
    else:
        key_codes, unique_keys = pd.factorize(keys)
        unique_keys = np.asarray(unique_keys, dtype=np.int64)
        orders = np.bincount(key_codes, minlength=len(unique_keys))
        if values is None:
            amount = np.zeros(len(unique_keys))
        else:
            amount = np.bincount(key_codes, weights=values, minlength=len(unique_keys))
    customer, day = np.divmod(unique_keys, span)
    del unique_keys
    day += lo
    day *= 86_400  # straight to seconds: pandas stores datetime64[D] as [s] anyway, by a copy
    return pd.DataFrame(
        {
            "customer": ids_of(customer),
            "day": day.view("datetime64[s]"),
            "amount": amount,
            "orders": orders,
        },
        copy=False,
    )


def customer_runs(days: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(days sorted by customer then day, index of each customer's first row): the rows of
    :func:`purchase_days` as one run per customer, for reductions without hashing."""
    ids = days["customer"].to_numpy()
    day_no = days["day"].to_numpy(dtype="datetime64[D]").view(np.int64)
    if not _sorted_by_customer_and_day(ids, day_no):
        days = days.sort_values(["customer", "day"], kind="stable")
        ids = days["customer"].to_numpy()
    new = np.empty(len(ids), dtype=bool)
    new[:1] = True
    np.not_equal(ids[1:], ids[:-1], out=new[1:])
    return days, np.flatnonzero(new)


def _sorted_by_customer_and_day(customer: np.ndarray, day: np.ndarray) -> bool:
    """Whether rows are ordered by customer, then strictly by day (purchase_days' output)."""
    if customer.dtype.kind not in "iu" or len(customer) < 2:
        return False
    later = customer[1:] > customer[:-1]
    same = customer[1:] == customer[:-1]
    return bool((later | (same & (day[1:] > day[:-1]))).all())


def summary_from_purchase_days(
    days: pd.DataFrame,
    *,
    calibration_end: dt.date | str,
    time_unit: TimeUnit = "week",
) -> pd.DataFrame:
    """Per-customer BG/NBD inputs from :func:`purchase_days` rows.

    calibration_end is inclusive. Recency and T are measured in ``time_unit`` from the first
    purchase day; T runs to calibration_end itself. frequency counts repeat purchase days;
    monetary_value is the mean value of the repeat purchase days (0 when there are none).
    Customers whose first purchase is after calibration_end are left out. Also returns
    ``first_purchase``, and ``holdout_frequency``: purchase days after calibration_end.
    """
    if time_unit not in UNIT_DAYS:
        raise ValueError(f"time_unit must be one of {sorted(UNIT_DAYS)}")
    end = _as_day(calibration_end).astype(np.int64)
    ids = days["customer"].to_numpy()
    day_no = days["day"].to_numpy(dtype="datetime64[D]").view(np.int64)
    amount = days["amount"].to_numpy(dtype=float)
    cal = day_no <= end
    if _sorted_by_customer_and_day(ids, day_no):
        # Each customer's rows are one run, days ascending: the calibration days are a prefix
        # of the run, so every measure is a reduction over runs (no hashing, no scatter).
        new = np.empty(len(ids), dtype=bool)
        new[0] = True
        np.not_equal(ids[1:], ids[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        del new
        customers = ids[starts]
        n = len(starts)
        cal_days = np.add.reduceat(cal, starts, dtype=np.int64)
        first = day_no[starts]
        last = day_no[starts + np.maximum(cal_days, 1) - 1]
        cal_amount = np.add.reduceat(np.where(cal, amount, 0.0), starts)
        first_amount = amount[starts]
        holdout = np.diff(starts, append=len(ids)) - cal_days
    else:
        codes, customers = pd.factorize(days["customer"])
        n = len(customers)
        first = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first, codes[cal], day_no[cal])
        last = np.full(n, np.iinfo(np.int64).min)
        np.maximum.at(last, codes[cal], day_no[cal])
        cal_days = np.bincount(codes[cal], minlength=n)
        cal_amount = np.bincount(codes[cal], weights=amount[cal], minlength=n)
        is_first = cal & (day_no == first[codes])
        first_amount = np.bincount(codes[is_first], weights=amount[is_first], minlength=n)
        holdout = np.bincount(codes[~cal], minlength=n)
    keep = cal_days > 0
    frequency = cal_days - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, (cal_amount - first_amount) / frequency, 0.0)
    unit = float(UNIT_DAYS[time_unit])
    out = pd.DataFrame(
        {
            "frequency": frequency[keep],
            "recency": (last[keep] - first[keep]) / unit,
            "T": (end - first[keep]) / unit,
            "monetary_value": monetary[keep],
            "first_purchase": first[keep].astype("datetime64[D]"),
            "holdout_frequency": holdout[keep],
        },
        index=pd.Index(customers[keep], name="customer_id"),
    )
    return out


def summary_from_transactions(
    transactions: pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    date_col: str = "placed_at",
    amount_col: str | None = "amount",
    calibration_end: dt.date | str,
    time_unit: TimeUnit = "week",
) -> pd.DataFrame:
    """:func:`purchase_days` then :func:`summary_from_purchase_days` (same rules)."""
    days = purchase_days(
        transactions, customer_col=customer_col, date_col=date_col, amount_col=amount_col
    )
    return summary_from_purchase_days(days, calibration_end=calibration_end, time_unit=time_unit)


# --------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------


def _arrays(*values) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=float) for v in values]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return [np.broadcast_to(a, shape) for a in arrays]


def _check_summary(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if len(x) == 0:
        raise ModelFitError("no customers to fit")
    if (x < 0).any() or (x != np.floor(x)).any():
        raise ValueError("frequency must be a non-negative integer")
    if (t_x < 0).any() or (t_x > T + 1e-9).any():
        raise ValueError("recency must lie between 0 and T")
    if ((x > 0) & (t_x <= 0)).any():
        raise ValueError("customers with repeat purchases need recency > 0")
    if ((x == 0) & (t_x != 0)).any():
        raise ValueError("customers without repeat purchases need recency = 0")


def _dot(a, b) -> float:
    """Dot product without BLAS: OpenBLAS threads its vector dot, and on a busy machine the
    thread hand-off costs milliseconds per call, more than the arithmetic."""
    return float(np.einsum("i,i->", np.asarray(a, dtype=float), np.asarray(b, dtype=float)))


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct values) by hashing: faster than np.unique's sort on large arrays."""
    codes, uniques = pd.factorize(values)
    return codes, np.asarray(uniques)


class _BGNBDData:
    """The data of one fit, grouped so that each likelihood evaluation is cheap."""

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray):
        self.n = float(weights.sum())
        # x alone: log-gamma, digamma and beta terms once per distinct frequency.
        x_codes, self.xu = _factorize(x)
        self.nx = np.bincount(x_codes, weights=weights, minlength=len(self.xu))
        # x = 0: the likelihood depends on T only.
        zero = x == 0
        t0_codes, self.T0u = _factorize(T[zero])
        self.n0 = np.bincount(t0_codes, weights=weights[zero], minlength=len(self.T0u))
        # x > 0: the logs of alpha+T and alpha+t_x once per distinct T and t_x, and identical
        # (x, t_x, T) rows merged with a count.
        rep = ~zero
        xr_codes, self.xr = _factorize(x[rep])
        big_t_codes, self.Tu = _factorize(T[rep])
        t_codes, self.tu = _factorize(t_x[rep])
        w = weights[rep]
        n_x, n_big_t, n_t = len(self.xr), len(self.Tu), len(self.tu)
        if n_x * n_big_t * n_t < 2**62:
            key = (xr_codes.astype(np.int64) * n_big_t + big_t_codes) * n_t + t_codes
            key_codes, keys = _factorize(key)
            w = np.bincount(key_codes, weights=w, minlength=len(keys))
            keys, t_codes = np.divmod(keys, n_t)
            xr_codes, big_t_codes = np.divmod(keys, n_big_t)
        self.w = w
        self.x_index, self.T_index, self.t_index = xr_codes, big_t_codes, t_codes
        self.x = self.xr[xr_codes]
        # Sums over rows of terms in T alone, grouped per distinct T.
        self.w_T = np.bincount(big_t_codes, weights=w, minlength=n_big_t)
        self.wx_T = np.bincount(big_t_codes, weights=w * self.x, minlength=n_big_t)

    def neg_ll(self, theta: np.ndarray, gradient: bool = True):
        """Negative mean log-likelihood (and its gradient) at log-parameters theta."""
        r, alpha, a, b = np.exp(theta)
        xu, nx = self.xu, self.nx
        # Terms of x alone.
        ll = _dot(
            nx,
            (
                special.gammaln(r + xu)
                + special.betaln(a, b + xu)
                - special.gammaln(r)
                - special.betaln(a, b)
            ),
        ) + self.n * r * math.log(alpha)
        if gradient:
            psi_ab = special.digamma(a + b)
            psi_abx = special.digamma(a + b + xu)
            g_r = _dot(nx, special.digamma(r + xu) - special.digamma(r)) + self.n * math.log(alpha)
            g_alpha = self.n * r / alpha
            g_a = _dot(nx, psi_ab - psi_abx)
            g_b = _dot(nx, special.digamma(b + xu) - special.digamma(b) + psi_ab - psi_abx)
        # x = 0: log((alpha+T)^-r).
        log_at0 = np.log(alpha + self.T0u)
        ll -= r * _dot(self.n0, log_at0)
        if gradient:
            g_r -= _dot(self.n0, log_at0)
            g_alpha -= r * _dot(self.n0, 1.0 / (alpha + self.T0u))
        # x > 0: log((alpha+T)^-(r+x) + a/(b+x-1) (alpha+t_x)^-(r+x)).
        if len(self.w):
            s = r + self.x
            log_at_u = np.log(alpha + self.Tu)
            log_at = log_at_u[self.T_index]
            log_atx = np.log(alpha + self.tu)[self.t_index]
            log_k = (math.log(a) - np.log(b + self.xr - 1.0))[self.x_index]
            lu = -s * log_at
            lv = log_k - s * log_atx
            d = lu - lv
            # log(e^lu + e^lv) = max(lu, lv) + log(1 + e^-|lu-lv|)
            e = np.exp(-np.abs(d))
            ll += _dot(self.w, np.maximum(lu, lv) + np.log(1.0 + e))
            if gradient:
                # wv: the share of the second (alive-at-t_x) term in the sum.
                wv = np.where(d > 0, e, 1.0) / (1.0 + e)
                ww = self.w * wv
                g_r -= _dot(self.w_T, log_at_u) + _dot(ww, log_atx - log_at)
                inv_at_u = 1.0 / (alpha + self.Tu)
                inv_at = inv_at_u[self.T_index]
                inv_atx = (1.0 / (alpha + self.tu))[self.t_index]
                g_alpha -= _dot(r * self.w_T + self.wx_T, inv_at_u)
                g_alpha -= _dot(ww * s, inv_atx - inv_at)
                g_a += float(ww.sum()) / a
                wv_x = np.bincount(self.x_index, weights=ww, minlength=len(self.xr))
                g_b -= _dot(wv_x, 1.0 / (b + self.xr - 1.0))
        if not gradient:
            return -ll / self.n
        grad = np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])
        return -ll / self.n, -grad / self.n


_GTOL = 1e-7  # max |gradient| of the mean log-likelihood (in log-parameters) at a converged fit


def _minimise(fun, x0: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Minimise ``fun`` (value and gradient) from x0: (argmin, minimum, converged).

    L-BFGS-B brings the point close (~1e-6 relative) in ~20 evaluations; then Newton steps on a
    Hessian from forward differences of the exact gradient finish the job to ~1e-10, where
    L-BFGS-B's line search would otherwise stall on rounding noise. (The Hessian only steers the
    step: its ~1e-5 relative error slows convergence negligibly, and costs one gradient per
    parameter instead of two.)
    """
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(x0)
    result = optimize.minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-8, "maxls": 10},
    )
    theta, value, grad = result.x, float(result.fun), np.asarray(result.jac)
    step_size = 1e-5
    for _ in range(2):
        if np.abs(grad).max() < 1e-10:
            break
        columns = [(fun(theta + step_size * e)[1] - grad) / step_size for e in np.eye(len(theta))]
        hessian = np.array(columns)
        hessian = (hessian + hessian.T) / 2
        try:
            np.linalg.cholesky(hessian)  # positive definite: a true minimum nearby
        except np.linalg.LinAlgError:
            break
        candidate = np.clip(theta - np.linalg.solve(hessian, grad), -_LOG_BOUND, _LOG_BOUND)
        new_value, new_grad = fun(candidate)
        # Near the optimum the value is flat to rounding: judge the step by the gradient.
        if not (
            new_value <= value + 1e-12 * abs(value) and np.abs(new_grad).max() < np.abs(grad).max()
        ):
            break
        theta, value, grad = candidate, float(new_value), np.asarray(new_grad)
    return theta, value, bool(np.abs(grad).max() < _GTOL)


def bgnbd_fit(
    frequency,
    recency,
    T,
    *,
    weights=None,
    start: BGNBDParams | None = None,
) -> BGNBDParams:
    """Fit BG/NBD by maximum likelihood; ``weights`` counts customers per row (default 1).

    ``start``: parameters to start from (e.g. a fit of similar data), else r = α = a = b = 1 in
    the rescaled time."""
    x, t_x, big_t = (np.ravel(a) for a in _arrays(frequency, recency, T))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float).ravel()
    _check_summary(x, t_x, big_t)
    if not (x > 0).any():
        raise ModelFitError("BG/NBD needs at least one customer with a repeat purchase")
    scale = _FIT_T_MAX / float(big_t.max()) if big_t.max() > 0 else 1.0
    data = _BGNBDData(x, t_x * scale, big_t * scale, w)
    x0 = np.zeros(4)
    if start is not None:
        x0 = np.log([start.r, start.alpha * scale, start.a, start.b])
        x0 = np.clip(np.nan_to_num(x0), -_LOG_BOUND, _LOG_BOUND)
    theta, value, converged = _minimise(data.neg_ll, x0)
    r, alpha, a, b = np.exp(theta)
    alpha /= scale
    # Rescaling times by c shifts each log-likelihood term by -x log c.
    ll = -value * data.n + _dot(w, x) * math.log(scale)
    return BGNBDParams(
        r=float(r),
        alpha=float(alpha),
        a=float(a),
        b=float(b),
        ll=ll,
        customers=int(round(w.sum())),
        converged=converged,
    )


def bgnbd_log_likelihood(params: BGNBDParams, frequency, recency, T, *, weights=None) -> float:
    """Total BG/NBD log-likelihood of the data at ``params``."""
    x, t_x, big_t = (np.ravel(a) for a in _arrays(frequency, recency, T))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float).ravel()
    data = _BGNBDData(x, t_x, big_t, w)
    theta = np.log([params.r, params.alpha, params.a, params.b])
    return -float(data.neg_ll(theta, gradient=False)) * data.n


def _alive_odds_log(params: BGNBDParams, x, t_x, T) -> np.ndarray:
    """log of a/(b+x-1) ((α+T)/(α+t_x))^(r+x) for x > 0; -inf for x = 0."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (
            math.log(a) - np.log(b + x - 1.0) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
    return np.where(x > 0, out, -np.inf)


def p_alive(params: BGNBDParams, frequency, recency, T) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + 1{x>0} a/(b+x-1) ((α+T)/(α+t_x))^(r+x))."""
    x, t_x, big_t = _arrays(frequency, recency, T)
    return special.expit(-_alive_odds_log(params, x, t_x, big_t))


def churn_probability(params: BGNBDParams, frequency, recency, T) -> np.ndarray:
    """1 − P(alive)."""
    x, t_x, big_t = _arrays(frequency, recency, T)
    return special.expit(_alive_odds_log(params, x, t_x, big_t))


def _decay(params: BGNBDParams, t, x, T) -> np.ndarray:
    """G(t) = ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; z), z = t/(α+T+t).

    Computed through Euler's transformation as (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z),
    which neither overflows nor underflows for large x or long horizons.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + T + t)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        euler = np.power(1.0 - z, a - 1.0) * special.hyp2f1(
            a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z
        )
        if np.all(np.isfinite(euler)):
            return euler
        # With a and b very large (small data with no visible dropout: the fit runs to the
        # boundary) the transformed form is 0 * inf; the direct form is then well behaved.
        direct = np.power(1.0 - z, r + x) * special.hyp2f1(r + x, b + x, a + b + x - 1.0, z)
    return np.where(np.isfinite(euler), euler, direct)


def expected_purchases(params: BGNBDParams, t, frequency, recency, T) -> np.ndarray:
    """Expected repeat purchases in (T, T+t] given (x, t_x, T) (FHL 2005, eq. 10)."""
    x, t_x, big_t, tt = _arrays(frequency, recency, T, t)
    a, b = params.a, params.b
    factor = (a + b + x - 1.0) / (a - 1.0)
    return factor * (1.0 - _decay(params, tt, x, big_t)) * p_alive(params, x, t_x, big_t)


def expected_purchases_new_customer(params: BGNBDParams, t) -> np.ndarray:
    """Expected repeat purchases in (0, t] of a customer just acquired (FHL 2005, eq. 7)."""
    (tt,) = _arrays(t)
    a, b = params.a, params.b
    zero = np.zeros_like(tt)
    return (a + b - 1.0) / (a - 1.0) * (1.0 - _decay(params, tt, zero, zero))


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


class _GammaGammaData:
    def __init__(self, x: np.ndarray, m: np.ndarray):
        self.n = float(len(x))
        self.y = x * m
        self.x = x
        self.xu, x_index = np.unique(x, return_inverse=True)
        self.nx = np.bincount(x_index, minlength=len(self.xu)).astype(float)
        self.sum_x_log_y = _dot(x, np.log(self.y))
        self.sum_log_m = float(np.log(m).sum())

    def neg_ll(self, theta: np.ndarray, gradient: bool = True):
        p, q, v = np.exp(theta)
        xu, nx = self.xu, self.nx
        px = p * xu
        log_yv = np.log(self.y + v)
        coef = p * self.x + q
        ll = (
            _dot(nx, special.gammaln(px + q) - special.gammaln(px))
            - self.n * special.gammaln(q)
            + self.n * q * math.log(v)
            + p * self.sum_x_log_y
            - self.sum_log_m
            - _dot(coef, log_yv)
        )
        if not gradient:
            return -ll / self.n
        psi_pxq = special.digamma(px + q)
        g_p = _dot(nx * xu, psi_pxq - special.digamma(px)) + self.sum_x_log_y - _dot(self.x, log_yv)
        g_q = (
            _dot(nx, psi_pxq)
            - self.n * special.digamma(q)
            + self.n * math.log(v)
            - float(log_yv.sum())
        )
        g_v = self.n * q / v - _dot(coef, 1.0 / (self.y + v))
        grad = np.array([g_p * p, g_q * q, g_v * v])
        return -ll / self.n, -grad / self.n


def gamma_gamma_fit(frequency, monetary_value) -> GammaGammaParams:
    """Fit Gamma-Gamma on repeat customers (rows with frequency = 0 are ignored)."""
    x, m = (np.ravel(a) for a in _arrays(frequency, monetary_value))
    repeat = x > 0
    x, m = x[repeat], m[repeat]
    if len(x) < 2:
        raise ModelFitError("Gamma-Gamma needs at least two customers with repeat purchases")
    if (m <= 0).any():
        raise ValueError("monetary_value of repeat customers must be positive")
    scale = float(np.mean(m))
    data = _GammaGammaData(x, m / scale)
    theta, value, converged = _minimise(data.neg_ll, np.zeros(3))
    p, q, v = np.exp(theta)
    v *= scale
    # Rescaling spend by 1/c adds log c to each log-density term.
    ll = -value * data.n - data.n * math.log(scale)
    return GammaGammaParams(
        p=float(p),
        q=float(q),
        v=float(v),
        ll=ll,
        customers=len(x),
        converged=converged,
    )


def expected_order_value(params: GammaGammaParams, frequency, monetary_value) -> np.ndarray:
    """E[M | x, m̄] = p (v + x m̄) / (p x + q - 1); the population mean p v / (q - 1) at x = 0."""
    x, m = _arrays(frequency, monetary_value)
    p, q, v = params.p, params.q, params.v
    return p * (v + x * m) / (p * x + q - 1.0)


# --------------------------------------------------------------------------------------------
# Simulation (benchmarks and parameter-recovery tests)
# --------------------------------------------------------------------------------------------


def bgnbd_sample(params: BGNBDParams, T, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (frequency, recency) for customers observed for ``T`` under the BG/NBD process.

    λ ~ Gamma(r, α), p ~ Beta(a, b); the customer drops out right after the J-th repeat
    purchase, J ~ Geometric(p). With N ~ Poisson(λT) purchases of the unthinned process in
    (0, T], x = min(N, J) and t_x is the x-th of N uniform order statistics: T · Beta(x, N-x+1).
    """
    big_t = np.asarray(T, dtype=float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=big_t.shape)
    p = rng.beta(params.a, params.b, size=big_t.shape)
    dropout_after = rng.geometric(np.clip(p, 1e-12, 1.0))
    n = rng.poisson(lam * big_t)
    x = np.minimum(n, dropout_after)
    recency = np.zeros_like(big_t)
    rep = x > 0
    recency[rep] = big_t[rep] * rng.beta(x[rep], n[rep] - x[rep] + 1)
    return x, recency


def gamma_gamma_sample(params: GammaGammaParams, frequency, rng: np.random.Generator) -> np.ndarray:
    """Mean spend of ``frequency`` purchases per customer (0 where frequency is 0).

    ν ~ Gamma(q, v) per customer; each purchase ~ Gamma(p, ν), so the mean of x purchases
    is Gamma(p x, x ν).
    """
    x = np.asarray(frequency)
    nu = rng.gamma(params.q, 1.0 / params.v, size=x.shape)
    out = np.zeros(x.shape)
    rep = x > 0
    out[rep] = rng.gamma(params.p * x[rep], 1.0 / (x[rep] * nu[rep]))
    return out


# --------------------------------------------------------------------------------------------
# CLV
# --------------------------------------------------------------------------------------------


def customer_lifetime_value(
    bgnbd: BGNBDParams,
    gamma_gamma: GammaGammaParams,
    frequency,
    recency,
    T,
    monetary_value,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
    gross_margin: float = 1.0,
    units_per_month: float = UNITS_PER_MONTH["week"],
) -> np.ndarray:
    """Discounted margin of the next ``months`` months per customer.

    CLV = margin · E[M] · Σ_k (E[Y(k)] − E[Y(k−1)]) / (1 + d)^k, k = 1..months, where E[Y(k)]
    is the BG/NBD expectation of purchases in the next k months (``units_per_month`` model time
    units each) and E[M] the Gamma-Gamma expected order value: the same discrete sum as
    lifetimes' ``customer_lifetime_value``. The hypergeometric part depends on (x, T) only and
    is computed once per distinct pair.
    """
    if months < 1:
        raise ValueError("months must be at least 1")
    x, t_x, big_t, m = (np.ravel(a) for a in _arrays(frequency, recency, T, monetary_value))
    x_codes, xu = _factorize(x)
    big_t_codes, big_tu = _factorize(big_t)
    codes, pairs = _factorize(x_codes.astype(np.int64) * len(big_tu) + big_t_codes)
    px, pt = xu[pairs // len(big_tu)], big_tu[pairs % len(big_tu)]
    horizons = np.arange(months + 1, dtype=float) * units_per_month
    decay = _decay(bgnbd, horizons[None, :], px[:, None], pt[:, None])
    decay[:, 0] = 1.0
    discount = (1.0 + monthly_discount_rate) ** -np.arange(1, months + 1, dtype=float)
    discounted = np.einsum("ij,j->i", decay[:, :-1] - decay[:, 1:], discount)
    a, b = bgnbd.a, bgnbd.b
    purchases = (a + b + x - 1.0) / (a - 1.0) * discounted[codes] * p_alive(bgnbd, x, t_x, big_t)
    return gross_margin * expected_order_value(gamma_gamma, x, m) * purchases
