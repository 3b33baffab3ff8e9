"""BG/NBD and Gamma-Gamma: published CDNOW parameters, lifetimes' predictions, hand tables.

Reference values:
- Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science 24(2),
  on the CDNOW sample (2,357 customers, 39 weeks): r = 0.243, alpha = 4.414, a = 0.793,
  b = 2.426, LL = -9582.4.
- Fader & Hardie (2013), "The Gamma-Gamma model of monetary value", on the 946 repeat customers
  of the same sample: p = 6.25, q = 3.74, v = 15.44.
- lifetimes 0.11.3 (BetaGeoFitter, GammaGammaFitter) on the same file, printed by hand once:
  the LIFETIMES_* constants below (predictions for customers 1, 2, 3, 157 and 100).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from segments import clv

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]

LIFETIMES_BGNBD = {"r": 0.242593, "alpha": 4.413532, "a": 0.792886, "b": 2.425752}
LIFETIMES_GG = {"p": 6.248802, "q": 3.744588, "v": 15.447748}
SAMPLE_IDS = [1, 2, 3, 157, 100]
LIFETIMES_P_ALIVE = [0.7266091368, 0.2122273881, 1.0, 0.969133594, 0.6469884214]
LIFETIMES_PURCHASES_52 = [1.5585837618, 0.2599070794, 0.2516657254, 25.0614225273, 0.8012121847]
LIFETIMES_ORDER_VALUE = [24.6586161892, 18.9114798699, 35.1710021525, 26.3929476635, 28.9516523143]
# customer_lifetime_value(time=12, discount_rate=0.01, freq="W"): 4.345 weeks a month.
LIFETIMES_CLV_12 = [36.2784957636, 4.6374663286, 8.3440931218, 625.350033709, 21.8862994082]


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv", index_col="ID")
    return frame.rename(columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"})


@pytest.fixture(scope="module")
def bgnbd(cdnow) -> clv.BGNBDParams:
    return clv.bgnbd_fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


@pytest.fixture(scope="module")
def gamma_gamma(cdnow) -> clv.GammaGammaParams:
    return clv.gamma_gamma_fit(cdnow["frequency"], cdnow["monetary_value"])


def test_bgnbd_reproduces_the_published_cdnow_parameters(bgnbd):
    assert bgnbd.converged
    assert bgnbd.customers == 2357
    assert bgnbd.r == pytest.approx(0.243, abs=1e-3)
    assert bgnbd.alpha == pytest.approx(4.414, abs=1e-3)
    assert bgnbd.a == pytest.approx(0.793, abs=1e-3)
    assert bgnbd.b == pytest.approx(2.426, abs=1e-3)
    assert bgnbd.ll == pytest.approx(-9582.4, abs=0.05)


def test_bgnbd_agrees_with_lifetimes(bgnbd):
    for name, value in LIFETIMES_BGNBD.items():
        assert getattr(bgnbd, name) == pytest.approx(value, rel=1e-5)


def test_gamma_gamma_reproduces_the_published_parameters(gamma_gamma):
    assert gamma_gamma.converged
    assert gamma_gamma.customers == 946
    # Published to two decimals.
    assert gamma_gamma.p == pytest.approx(6.25, abs=0.01)
    assert gamma_gamma.q == pytest.approx(3.74, abs=0.01)
    assert gamma_gamma.v == pytest.approx(15.44, abs=0.01)
    for name, value in LIFETIMES_GG.items():
        assert getattr(gamma_gamma, name) == pytest.approx(value, rel=1e-5)


def test_predictions_agree_with_lifetimes(cdnow, bgnbd, gamma_gamma):
    rows = cdnow.loc[SAMPLE_IDS]
    x, t_x, big_t, m = (rows[c].to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))
    alive = clv.p_alive(bgnbd, x, t_x, big_t)
    np.testing.assert_allclose(alive, LIFETIMES_P_ALIVE, rtol=1e-5)
    np.testing.assert_allclose(clv.churn_probability(bgnbd, x, t_x, big_t), 1 - alive, atol=1e-15)
    np.testing.assert_allclose(
        clv.expected_purchases(bgnbd, 52, x, t_x, big_t), LIFETIMES_PURCHASES_52, rtol=1e-5
    )
    np.testing.assert_allclose(
        clv.expected_order_value(gamma_gamma, x, m), LIFETIMES_ORDER_VALUE, rtol=1e-5
    )
    value = clv.customer_lifetime_value(
        bgnbd, gamma_gamma, x, t_x, big_t, m,
        months=12, monthly_discount_rate=0.01, units_per_month=4.345,
    )  # fmt: skip
    np.testing.assert_allclose(value, LIFETIMES_CLV_12, rtol=1e-5)


def test_cdnow_from_raw_transactions_gives_the_published_summary(cdnow):
    raw = pd.read_csv(
        DATA / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "quantity", "amount"],
        dtype={"date": str},
    )
    raw["placed_at"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    summary = clv.summary_from_transactions(raw, calibration_end="1997-09-30", time_unit="week")
    summary = summary.sort_index()
    assert len(summary) == 2357
    np.testing.assert_array_equal(summary["frequency"], cdnow["frequency"])
    np.testing.assert_allclose(summary["recency"], cdnow["recency"], atol=0.005)
    np.testing.assert_allclose(summary["T"], cdnow["T"], atol=0.005)
    np.testing.assert_allclose(summary["monetary_value"], cdnow["monetary_value"], atol=0.0051)


def test_summary_hand_table():
    tx = pd.DataFrame(
        [
            ("a", "2024-01-01 09:00", 10.0),
            ("a", "2024-01-01 18:00", 5.0),  # same day: one purchase day of 15
            ("a", "2024-01-08 12:00", 20.0),
            ("a", "2024-01-15 23:59", 30.0),  # calibration_end is inclusive
            ("a", "2024-01-20 10:00", 99.0),  # holdout
            ("b", "2024-01-10 10:00", 50.0),
            ("c", "2024-01-16 10:00", 70.0),  # first purchase after calibration_end: left out
            ("d", "2024-01-02 10:00", 10.0),
            ("d", "2024-01-02 11:00", 10.0),
        ],
        columns=["customer_id", "placed_at", "amount"],
    )
    days = clv.summary_from_transactions(tx, calibration_end="2024-01-15", time_unit="day")
    days = days.sort_index()
    assert list(days.index) == ["a", "b", "d"]
    assert days["frequency"].tolist() == [2, 0, 0]
    assert days["recency"].tolist() == [14.0, 0.0, 0.0]
    assert days["T"].tolist() == [14.0, 5.0, 13.0]
    assert days["monetary_value"].tolist() == [25.0, 0.0, 0.0]  # (20 + 30) / 2, first excluded
    assert days["holdout_frequency"].tolist() == [1, 0, 0]
    weeks = clv.summary_from_transactions(tx, calibration_end="2024-01-15", time_unit="week")
    weeks = weeks.sort_index()
    assert weeks["recency"].tolist() == [2.0, 0.0, 0.0]
    np.testing.assert_allclose(weeks["T"], [2.0, 5 / 7, 13 / 7])


@pytest.mark.parametrize(
    "point",
    [np.zeros(4), np.array([0.3, -1.2, 0.5, 1.1]), np.log([0.243, 4.414 / 4, 0.793, 2.426])],
)
def test_bgnbd_gradient_is_exact(cdnow, point):
    data = clv._BGNBDData(
        cdnow["frequency"].to_numpy(dtype=float),
        cdnow["recency"].to_numpy() / 4,
        cdnow["T"].to_numpy() / 4,
        np.ones(len(cdnow)),
    )
    err = optimize.check_grad(
        lambda th: data.neg_ll(th)[0], lambda th: data.neg_ll(th)[1], point, epsilon=1e-7
    )
    assert err < 1e-6


def test_gamma_gamma_gradient_is_exact(cdnow):
    rep = cdnow[cdnow["frequency"] > 0]
    data = clv._GammaGammaData(
        rep["frequency"].to_numpy(dtype=float), rep["monetary_value"].to_numpy() / 30
    )
    for point in (np.zeros(3), np.array([1.5, 1.0, -0.5])):
        err = optimize.check_grad(
            lambda th: data.neg_ll(th)[0], lambda th: data.neg_ll(th)[1], point, epsilon=1e-7
        )
        assert err < 1e-6


def test_weights_equal_repeated_rows(cdnow):
    head = cdnow.iloc[:400]
    counts = np.arange(400) % 3 + 1
    expanded = head.loc[head.index.repeat(counts)]
    weighted = clv.bgnbd_fit(head["frequency"], head["recency"], head["T"], weights=counts)
    plain = clv.bgnbd_fit(expanded["frequency"], expanded["recency"], expanded["T"])
    for name in ("r", "alpha", "a", "b", "ll"):
        assert getattr(weighted, name) == pytest.approx(getattr(plain, name), rel=1e-6)


def test_units_do_not_change_the_model(cdnow):
    """Days instead of weeks: alpha scales by 7, the other parameters stay."""
    weeks = clv.bgnbd_fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    days = clv.bgnbd_fit(cdnow["frequency"], cdnow["recency"] * 7, cdnow["T"] * 7)
    assert days.alpha == pytest.approx(weeks.alpha * 7, rel=1e-6)
    for name in ("r", "a", "b"):
        assert getattr(days, name) == pytest.approx(getattr(weeks, name), rel=1e-6)


def test_fit_recovers_simulated_parameters():
    rng = np.random.default_rng(2005)
    true = clv.BGNBDParams(r=0.25, alpha=4.0, a=0.8, b=2.5)
    big_t = rng.uniform(20, 80, size=200_000)
    x, t_x = clv.bgnbd_sample(true, big_t, rng)
    fit = clv.bgnbd_fit(x, t_x, big_t)
    assert fit.r == pytest.approx(true.r, rel=0.05)
    assert fit.alpha == pytest.approx(true.alpha, rel=0.05)
    assert fit.a == pytest.approx(true.a, rel=0.1)
    assert fit.b == pytest.approx(true.b, rel=0.1)
    spend = clv.GammaGammaParams(p=6.0, q=3.8, v=15.0)
    m = clv.gamma_gamma_sample(spend, x, rng)
    gg = clv.gamma_gamma_fit(x, m)
    assert gg.p == pytest.approx(spend.p, rel=0.05)
    assert gg.q == pytest.approx(spend.q, rel=0.05)
    assert gg.v == pytest.approx(spend.v, rel=0.05)


def test_expected_order_value_by_hand():
    params = clv.GammaGammaParams(p=6.0, q=4.0, v=15.0)
    # x = 2, mean 20: 6 (15 + 40) / (12 + 4 - 1) = 22; x = 0: 6 * 15 / 3 = 30.
    np.testing.assert_allclose(clv.expected_order_value(params, [2, 0], [20.0, 0.0]), [22, 30])


def test_p_alive_by_hand():
    params = clv.BGNBDParams(r=1.0, alpha=1.0, a=1.0, b=2.0)
    # x = 1, t_x = 1, T = 3: 1 / (1 + 1/2 * (4/2)^2) = 1/3.
    assert clv.p_alive(params, 1, 1.0, 3.0) == pytest.approx(1 / 3)
    assert clv.p_alive(params, 0, 0.0, 3.0) == 1.0


def test_clv_one_month_undiscounted_is_margin_times_value_times_purchases(bgnbd, gamma_gamma):
    x, t_x, big_t, m = np.array([0, 3, 12]), np.array([0, 20.0, 37]), np.full(3, 38.0), [0, 30, 25]
    value = clv.customer_lifetime_value(
        bgnbd, gamma_gamma, x, t_x, big_t, m,
        months=1, monthly_discount_rate=0.0, gross_margin=0.3, units_per_month=4.0,
    )  # fmt: skip
    expected = (
        0.3
        * clv.expected_order_value(gamma_gamma, x, m)
        * clv.expected_purchases(bgnbd, 4.0, x, t_x, big_t)
    )
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_expected_purchases_of_a_new_customer(bgnbd):
    # A customer observed for T = 0 with no repeat purchase is a new customer.
    np.testing.assert_allclose(
        clv.expected_purchases_new_customer(bgnbd, [10.0, 39.0]),
        clv.expected_purchases(bgnbd, [10.0, 39.0], 0, 0.0, 0.0),
        rtol=1e-12,
    )


@settings(max_examples=100, deadline=None)
@given(
    x=st.integers(min_value=0, max_value=400),
    recency_share=st.floats(min_value=0.01, max_value=1.0),
    big_t=st.floats(min_value=0.5, max_value=500.0),
    horizon=st.floats(min_value=0.1, max_value=500.0),
)
def test_predictions_are_finite_and_monotone(bgnbd, x, recency_share, big_t, horizon):
    t_x = 0.0 if x == 0 else big_t * recency_share
    alive = float(clv.p_alive(bgnbd, x, t_x, big_t))
    assert 0.0 <= alive <= 1.0
    near, far = clv.expected_purchases(bgnbd, [horizon, 2 * horizon], x, t_x, big_t)
    assert np.isfinite(near)
    assert np.isfinite(far)
    assert 0.0 <= near <= far


def test_errors():
    with pytest.raises(clv.ModelFitError):
        clv.bgnbd_fit([0, 0], [0, 0], [5, 6])
    with pytest.raises(ValueError, match="recency"):
        clv.bgnbd_fit([1, 2], [3.0, 9.0], [5.0, 6.0])
    with pytest.raises(clv.ModelFitError):
        clv.gamma_gamma_fit([1, 0], [5.0, 0.0])


def test_pure_modules_import_no_django():
    """STYLE §2: the analytics modules are plain functions, importable without Django."""
    code = (
        "import sys\n"
        "import segments.clv, segments.cohorts, segments.lifecycle, segments.model_check\n"
        "import segments.rfm\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def test_clv_stays_finite_when_the_dropout_fit_runs_to_the_boundary():
    """Small data with no visible dropout drives a and b to huge values; the decay must use the
    form that stays finite there, and agree with the usual form where both are finite."""
    from segments.clv import BGNBDParams, _decay

    x = np.array([0.0, 1.0, 4.0, 30.0])
    T = np.array([100.0, 200.0, 300.0, 400.0])
    huge = BGNBDParams(r=0.99, alpha=78.8, a=3.3e6, b=5.7e6)
    decay = _decay(huge, 365.0, x, T)
    assert np.all(np.isfinite(decay))
    assert np.all((decay > 0) & (decay <= 1))
    moderate = BGNBDParams(r=0.24, alpha=4.4, a=0.79, b=2.43)
    from scipy import special

    z = 39.0 / (moderate.alpha + T + 39.0)
    direct = np.power(1 - z, moderate.r + x) * special.hyp2f1(
        moderate.r + x, moderate.b + x, moderate.a + moderate.b + x - 1, z
    )
    np.testing.assert_allclose(_decay(moderate, 39.0, x, T), direct, rtol=1e-10)
