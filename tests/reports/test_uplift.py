"""reports.uplift: hand-computed tables, statsmodels as the reference on generated data, and
the coverage of the 95 % intervals over 1,000 replications with a known true effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
    samplesize_proportions_2indep_onetail,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from reports.uplift import (
    ArmMoments,
    conversion_uplift,
    enough_data,
    revenue_uplift_bootstrap,
    revenue_uplift_bootstrap_nonzero,
    revenue_uplift_welch,
    revenue_uplift_welch_arrays,
    roi,
    sample_size_two_proportions,
)

Z975 = 1.959963984540054


# ---------------------------------------------------------------------------- hand-computed


def test_conversion_by_hand():
    # 60 of 1,000 treated, 40 of 1,000 held out.
    # p_t = .06, p_c = .04, d = .02; Var = .06·.94/1000 + .04·.96/1000 = 5.64e-5 + 3.84e-5
    # = 9.48e-5, se = .0097365; d ± 1.959964·se = (.000917, .039083).
    # Pooled .05: se0 = √(.05·.95·2/1000) = .0097468, z = 2.05196, p = .040174.
    # Ratio 1.5, relative .5; se = 1.5·√(5.64e-5/.0036 + 3.84e-5/.0016) = .298753,
    # .5 ± 1.959964·.298753 = (−.085534, 1.085534). Incremental: .02·1000 = 20.
    u = conversion_uplift(60, 1000, 40, 1000)
    assert u.rate_treatment == 0.06
    assert u.rate_control == 0.04
    assert u.absolute == pytest.approx(0.02)
    assert u.absolute_ci == pytest.approx((0.000917, 0.039083), abs=1e-6)
    assert u.p_value == pytest.approx(0.040174, abs=1e-6)
    assert u.relative == pytest.approx(0.5)
    assert u.relative_ci == pytest.approx((-0.085534, 1.085534), abs=1e-6)
    assert u.incremental_conversions == pytest.approx(20)


def test_welch_by_hand():
    # Treatment 0, 0, 10, 20: n 4, sum 30, squares 500, mean 7.5, s² = (500 − 225)/3 = 91.667.
    # Control 0, 5, 5: n 3, sum 10, squares 50, mean 3.3333, s² = (50 − 33.333)/2 = 8.3333.
    # a = 91.667/4 = 22.917, b = 8.3333/3 = 2.7778; se² = 25.694, se = 5.0690;
    # df = 25.694² / (22.917²/3 + 2.7778²/2) = 660.19 / (175.06 + 3.858) = 3.6900;
    # t(.975, 3.69) = 2.8712; d = 4.1667 ± 14.553 = (−10.386, 18.719); p = .46086.
    moments_t = ArmMoments(n=4, total=30, total_squares=500)
    moments_c = ArmMoments(n=3, total=10, total_squares=50)
    r = revenue_uplift_welch(moments_t, moments_c)
    assert r.difference == pytest.approx(4.166667, abs=1e-6)
    assert r.df == pytest.approx(3.690027, abs=1e-6)
    assert r.difference_ci == pytest.approx((-10.385785, 18.719118), abs=1e-6)
    assert r.p_value == pytest.approx(0.460862, abs=1e-6)
    assert r.incremental_revenue == pytest.approx(4 * 4.166667, abs=1e-5)
    assert revenue_uplift_welch_arrays([0, 0, 10, 20], [0, 5, 5]) == r


def test_sample_size_by_hand_and_the_reference_figure():
    # 5 % → 6 %, alpha .05, power .8, 50/50: p̄ = .055;
    # [1.959964·√(2·.055·.945) + .841621·√(.05·.95 + .06·.94)]² / .01²
    # = [1.959964·.322412 + .841621·.322335]² / .0001 = (.631916 + .271284)²/.0001 = 8157.7
    # → 8,158 per arm (the reference: "about 8.2k per arm").
    even = sample_size_two_proportions(baseline_rate=0.05, mde_absolute=0.01)
    assert (even.treatment_n, even.control_n, even.total_n) == (8158, 8158, 16316)
    assert even.days is None
    # The same with a relative MDE (+20 %) and 500 people a day: 16,316 / 500 → 33 days.
    relative = sample_size_two_proportions(
        baseline_rate=0.05, mde_relative=0.2, eligible_per_day=500
    )
    assert relative.total_n == 16316
    assert relative.days == 33


def test_an_unequal_split_needs_far_more_people():
    even = sample_size_two_proportions(baseline_rate=0.05, mde_absolute=0.01)
    skewed = sample_size_two_proportions(baseline_rate=0.05, mde_absolute=0.01, treatment_share=0.9)
    assert skewed.control_n < skewed.treatment_n
    assert skewed.treatment_n / skewed.control_n == pytest.approx(9, rel=1e-3)
    ratio = skewed.total_n / even.total_n
    print(f"90/10 needs {ratio:.2f}× the people of 50/50")
    assert 2.7 < ratio < 2.9  # the reference: about 2.8×


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"baseline_rate": 0, "mde_absolute": 0.01}, "baseline_rate"),
        ({"baseline_rate": 1.2, "mde_absolute": 0.01}, "baseline_rate"),
        ({"baseline_rate": "x", "mde_absolute": 0.01}, "baseline_rate"),
        ({"baseline_rate": 0.95, "mde_absolute": 0.1}, "mde_absolute"),
        ({"baseline_rate": 0.05, "mde_absolute": -0.06}, "mde_absolute"),
        ({"baseline_rate": 0.05, "mde_absolute": 0}, "mde_absolute"),
        ({"baseline_rate": 0.5, "mde_relative": 1.5}, "mde_relative"),
        ({"baseline_rate": 0.05}, "mde_absolute"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "mde_relative": 0.2}, "mde_absolute"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "treatment_share": 1}, "treatment_share"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "alpha": 0}, "alpha"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "power": 1}, "power"),
        ({"baseline_rate": 0.05, "mde_absolute": 0.01, "eligible_per_day": 0}, "eligible_per_day"),
    ],
)
def test_nonsense_is_refused_with_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        sample_size_two_proportions(**kwargs)


def test_guards_and_roi():
    assert enough_data(5, 10, 5, 10)
    assert not enough_data(4, 100, 50, 100)  # four conversions
    assert not enough_data(96, 100, 50, 100)  # four non-conversions
    assert conversion_uplift(0, 0, 3, 10).absolute is None
    assert conversion_uplift(3, 10, 0, 10).relative is None  # zero control rate
    assert revenue_uplift_welch(ArmMoments(1, 5, 25), ArmMoments(10, 5, 25)).difference is None
    # 10,000 ₽ incremental for 2,000 ₽ of messages: (10,000 − 2,000) / 2,000 = 4.
    assert roi(10_000, 2_000) == 4
    assert roi(1_000, 2_000) == -0.5
    assert roi(1_000, 0) is None
    assert roi(None, 100) is None


# ------------------------------------------------------------------ statsmodels as reference


def test_conversion_against_statsmodels():
    rng = np.random.default_rng(13)
    for _ in range(20):
        n_t, n_c = (int(v) for v in rng.integers(200, 20_000, size=2))
        c_t = int(rng.binomial(n_t, rng.uniform(0.02, 0.4)))
        c_c = int(rng.binomial(n_c, rng.uniform(0.02, 0.4)))
        u = conversion_uplift(c_t, n_t, c_c, n_c)
        low, high = confint_proportions_2indep(c_t, n_t, c_c, n_c, method="wald", compare="diff")
        assert u.absolute_ci == pytest.approx((low, high), abs=1e-12)
        _z, p = proportions_ztest([c_t, c_c], [n_t, n_c])
        assert u.p_value == pytest.approx(p, rel=1e-9)


def test_welch_against_statsmodels():
    rng = np.random.default_rng(7)
    for _ in range(10):
        n_t, n_c = (int(v) for v in rng.integers(50, 5_000, size=2))
        x_t = rng.lognormal(4, 1, n_t) * (rng.random(n_t) < 0.15)
        x_c = rng.lognormal(4, 1.2, n_c) * (rng.random(n_c) < 0.1)
        r = revenue_uplift_welch_arrays(x_t, x_c)
        _t, p, df = ttest_ind(x_t, x_c, usevar="unequal")
        ci = CompareMeans(DescrStatsW(x_t), DescrStatsW(x_c)).tconfint_diff(usevar="unequal")
        assert r.p_value == pytest.approx(p, rel=1e-7)
        assert r.df == pytest.approx(df, rel=1e-9)
        assert r.difference_ci == pytest.approx(ci, rel=1e-7)


def test_sample_size_against_statsmodels():
    for baseline, mde, share in [(0.05, 0.01, 0.5), (0.05, 0.01, 0.9), (0.2, -0.03, 0.7)]:
        ours = sample_size_two_proportions(
            baseline_rate=baseline, mde_absolute=mde, treatment_share=share
        )
        k = (1 - share) / share
        # statsmodels: nobs1 (the treatment) for prop1 = prop2 + diff, ratio = nobs2 / nobs1.
        exact = samplesize_proportions_2indep_onetail(mde, baseline, 0.8, ratio=k, alpha=0.05)
        assert ours.treatment_n == pytest.approx(exact, rel=2e-3)
        # Cohen's h (the arcsine scale) sizes the same test within a few per cent.
        h = proportion_effectsize(baseline + mde, baseline)
        cohen = NormalIndPower().solve_power(effect_size=h, power=0.8, alpha=0.05, ratio=k)
        assert ours.treatment_n == pytest.approx(cohen, rel=0.03)


def test_bootstrap_agrees_with_welch_and_is_seeded():
    rng = np.random.default_rng(3)
    x_t = rng.lognormal(4, 0.8, 4000) * (rng.random(4000) < 0.12)
    x_c = rng.lognormal(4, 0.8, 4000) * (rng.random(4000) < 0.10)
    welch = revenue_uplift_welch_arrays(x_t, x_c)
    boot = revenue_uplift_bootstrap(x_t, x_c, seed=1)
    assert boot.method == "bootstrap"
    assert boot.difference == pytest.approx(welch.difference)
    welch_width = welch.difference_ci[1] - welch.difference_ci[0]
    assert boot.difference_ci == pytest.approx(welch.difference_ci, abs=0.1 * welch_width)
    assert revenue_uplift_bootstrap(x_t, x_c, seed=1) == boot
    # From the buyers' revenues and the arm sizes (what SQL returns), the same interval.
    nonzero = revenue_uplift_bootstrap_nonzero(x_t[x_t > 0], 4000, x_c[x_c > 0], 4000, seed=1)
    assert nonzero == boot


def test_bootstrap_resamples_people_with_replacement():
    # The shortcut (binomial count of buyers drawn, then buyers uniformly) must give the
    # spread of a plain resampling of all people: the standard error of the mean.
    x = np.r_[np.zeros(900), np.arange(1, 101, dtype=float)]
    boot = revenue_uplift_bootstrap(x, np.zeros(1000), resamples=20_000, seed=5)
    se = x.std(ddof=0) / math.sqrt(x.size)
    half_width = (boot.difference_ci[1] - boot.difference_ci[0]) / 2
    assert half_width == pytest.approx(Z975 * se, rel=0.05)


# ------------------------------------------------------------------------------- coverage

REPLICATIONS = 1000
PER_ARM = 2000


def test_conversion_interval_covers_the_true_difference_about_95_percent():
    p_t, p_c = 0.12, 0.10
    rng = np.random.default_rng(20261205)
    conv_t = rng.binomial(PER_ARM, p_t, size=REPLICATIONS)
    conv_c = rng.binomial(PER_ARM, p_c, size=REPLICATIONS)
    covered = 0
    for c_t, c_c in zip(conv_t.tolist(), conv_c.tolist(), strict=True):
        low, high = conversion_uplift(c_t, PER_ARM, c_c, PER_ARM).absolute_ci
        covered += low <= p_t - p_c <= high
    coverage = covered / REPLICATIONS
    print(f"conversion: the 95 % interval covered the true difference in {coverage:.1%}")
    assert 0.93 <= coverage <= 0.97


def test_welch_interval_covers_the_true_difference_about_95_percent():
    # Revenue per person: buys with probability p, then a lognormal amount (zeros included).
    p_t, p_c, mu, sigma = 0.12, 0.10, 7.0, 0.6
    mean_amount = math.exp(mu + sigma**2 / 2)
    true_difference = (p_t - p_c) * mean_amount
    rng = np.random.default_rng(1205)
    shape = (REPLICATIONS, PER_ARM)
    x_t = rng.lognormal(mu, sigma, shape) * (rng.random(shape) < p_t)
    x_c = rng.lognormal(mu, sigma, shape) * (rng.random(shape) < p_c)
    sums_t, squares_t = x_t.sum(axis=1), (x_t * x_t).sum(axis=1)
    sums_c, squares_c = x_c.sum(axis=1), (x_c * x_c).sum(axis=1)
    covered = 0
    for i in range(REPLICATIONS):
        r = revenue_uplift_welch(
            ArmMoments(PER_ARM, float(sums_t[i]), float(squares_t[i])),
            ArmMoments(PER_ARM, float(sums_c[i]), float(squares_c[i])),
        )
        covered += r.difference_ci[0] <= true_difference <= r.difference_ci[1]
    coverage = covered / REPLICATIONS
    print(f"revenue (Welch): the 95 % interval covered the true difference in {coverage:.1%}")
    assert 0.93 <= coverage <= 0.97
