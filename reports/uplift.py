"""Uplift statistics, pure (numpy/scipy, no Django): treatment against holdout.

Conversion (facts: shared/reference/channels-and-integrations.md, "Measuring uplift"):
d = p_t − p_c with the unpooled normal interval d ± z·√(p_t(1−p_t)/n_t + p_c(1−p_c)/n_c); the
two-sided p-value of the pooled z-test; the relative lift d / p_c with a delta-method interval
(the variance of p_t/p_c ≈ (p_t/p_c)²·(Var p_t / p_t² + Var p_c / p_c²)); incremental
conversions d·n_t. Guards: no interval is meaningful before each arm has at least
:data:`MIN_OUTCOMES` conversions and as many non-conversions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

MIN_OUTCOMES = 5


@dataclass(frozen=True)
class ConversionUplift:
    rate_treatment: float | None
    rate_control: float | None
    absolute: float | None
    absolute_ci: tuple[float, float] | None
    relative: float | None
    relative_ci: tuple[float, float] | None
    p_value: float | None
    incremental_conversions: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def enough_data(
    conv_t: int, n_t: int, conv_c: int, n_c: int, *, minimum: int = MIN_OUTCOMES
) -> bool:
    """True when each arm has at least ``minimum`` conversions and ``minimum`` non-conversions."""
    return min(conv_t, n_t - conv_t, conv_c, n_c - conv_c) >= minimum


def conversion_uplift(
    conv_t: int, n_t: int, conv_c: int, n_c: int, *, alpha: float = 0.05
) -> ConversionUplift:
    """Absolute and relative uplift of the treatment's conversion rate over the control's, with
    (1 − alpha) intervals and the pooled z-test's two-sided p-value. Figures that cannot be
    computed (an empty arm, a zero control rate for the ratio) are None, never a guess."""
    if n_t <= 0 or n_c <= 0:
        return ConversionUplift(None, None, None, None, None, None, None, None)
    p_t, p_c = conv_t / n_t, conv_c / n_c
    z = float(norm.ppf(1 - alpha / 2))
    d = p_t - p_c
    var_t, var_c = p_t * (1 - p_t) / n_t, p_c * (1 - p_c) / n_c
    se = math.sqrt(var_t + var_c)
    absolute_ci = (d - z * se, d + z * se)
    pooled = (conv_t + conv_c) / (n_t + n_c)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    p_value = float(2 * norm.sf(abs(d) / se_pooled)) if se_pooled > 0 else 1.0
    relative = relative_ci = None
    if p_c > 0:
        ratio = p_t / p_c
        relative = ratio - 1
        if p_t > 0:
            se_ratio = ratio * math.sqrt(var_t / p_t**2 + var_c / p_c**2)
            relative_ci = (relative - z * se_ratio, relative + z * se_ratio)
    return ConversionUplift(
        rate_treatment=p_t,
        rate_control=p_c,
        absolute=d,
        absolute_ci=absolute_ci,
        relative=relative,
        relative_ci=relative_ci,
        p_value=p_value,
        incremental_conversions=d * n_t,
    )


# --------------------------------------------------------------------------------------------
# Revenue per person (zeros included)


@dataclass(frozen=True)
class ArmMoments:
    """Sufficient statistics of one arm's revenue per person: how many people (zeros
    included), the sum and the sum of squares. SQL aggregates these over any number of people."""

    n: int
    total: float
    total_squares: float

    @classmethod
    def of(cls, values: np.ndarray | list[float]) -> ArmMoments:
        x = np.asarray(values, dtype=float)
        return cls(n=int(x.size), total=float(x.sum()), total_squares=float((x * x).sum()))

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        """The sample variance (n − 1), never negative (rounding of a large sum of squares)."""
        if self.n < 2:
            return 0.0
        return max((self.total_squares - self.total**2 / self.n) / (self.n - 1), 0.0)


@dataclass(frozen=True)
class RevenueUplift:
    method: str  # "welch" or "bootstrap"
    mean_treatment: float | None
    mean_control: float | None
    difference: float | None
    difference_ci: tuple[float, float] | None
    p_value: float | None
    df: float | None  # Welch–Satterthwaite degrees of freedom (None for the bootstrap)
    incremental_revenue: float | None  # difference × people treated

    def as_dict(self) -> dict:
        return asdict(self)


_EMPTY_REVENUE = {
    "mean_treatment": None,
    "mean_control": None,
    "difference": None,
    "difference_ci": None,
    "p_value": None,
    "df": None,
    "incremental_revenue": None,
}


def revenue_uplift_welch(
    treatment: ArmMoments, control: ArmMoments, *, alpha: float = 0.05
) -> RevenueUplift:
    """Difference of the mean revenue per person (treatment − control) with Welch's (1 − alpha)
    interval d ± t(df)·√(s_t²/n_t + s_c²/n_c), df by Welch–Satterthwaite, and the two-sided
    p-value of Welch's t-test. Figures that cannot be computed (fewer than two people in an
    arm) are None."""
    if treatment.n < 2 or control.n < 2:
        return RevenueUplift("welch", **_EMPTY_REVENUE)
    m_t, m_c = treatment.mean, control.mean
    d = m_t - m_c
    a, b = treatment.variance / treatment.n, control.variance / control.n
    se2 = a + b
    if se2 <= 0:  # both arms constant: no spread, the difference is exact
        return RevenueUplift(
            "welch", m_t, m_c, d, (d, d), 1.0 if d == 0 else 0.0, None, d * treatment.n
        )
    df = se2**2 / (a**2 / (treatment.n - 1) + b**2 / (control.n - 1))
    se = math.sqrt(se2)
    q = float(student_t.ppf(1 - alpha / 2, df))
    p_value = float(2 * student_t.sf(abs(d) / se, df))
    return RevenueUplift(
        method="welch",
        mean_treatment=m_t,
        mean_control=m_c,
        difference=d,
        difference_ci=(d - q * se, d + q * se),
        p_value=p_value,
        df=float(df),
        incremental_revenue=d * treatment.n,
    )


def revenue_uplift_welch_arrays(
    treatment: np.ndarray | list[float], control: np.ndarray | list[float], *, alpha: float = 0.05
) -> RevenueUplift:
    """:func:`revenue_uplift_welch` from the revenue of each person (zeros included)."""
    return revenue_uplift_welch(ArmMoments.of(treatment), ArmMoments.of(control), alpha=alpha)


BOOTSTRAP_RESAMPLES = 2000
_BOOTSTRAP_CHUNK = 4_000_000  # values drawn at once, to bound memory for a million people


def _bootstrap_means(
    nonzero: np.ndarray, n: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Means of ``resamples`` resamples (with replacement) of ``n`` people of whom ``nonzero``
    are the non-zero values (the others are zeros). Equivalent to drawing ``n`` people each
    time, but only the non-zero draws are materialised: how many of the ``n`` draws hit a
    non-zero person is Binomial(n, k/n), and those draws are uniform over the non-zero people.
    A million people with 5 % buyers costs 50k draws per resample, not a million."""
    k = nonzero.size
    if k == 0:
        return np.zeros(resamples)
    hits = rng.binomial(n, k / n, size=resamples)
    sums = np.empty(resamples)
    start = 0
    while start < resamples:
        # As many resamples as fit in one chunk of draws (at least one).
        cumulative = np.cumsum(hits[start:])
        stop = start + max(1, int(np.searchsorted(cumulative, _BOOTSTRAP_CHUNK, side="right")))
        counts = hits[start:stop]
        draws = nonzero[rng.integers(0, k, size=int(counts.sum()))]
        owner = np.repeat(np.arange(stop - start), counts)
        sums[start:stop] = np.bincount(owner, weights=draws, minlength=stop - start)
        start = stop
    return sums / n


def revenue_uplift_bootstrap_nonzero(
    treatment_nonzero: np.ndarray | list[float],
    n_treatment: int,
    control_nonzero: np.ndarray | list[float],
    n_control: int,
    *,
    alpha: float = 0.05,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> RevenueUplift:
    """The bootstrap over people within each arm from the non-zero revenues and the arm sizes
    (what SQL returns cheaply: only the buyers' rows). Percentile (1 − alpha) interval of the
    resampled difference of means; the p-value is twice the smaller share of resampled
    differences on either side of zero (capped at 1). Seeded: the same data give the same
    interval."""
    x_t = np.asarray(treatment_nonzero, dtype=float)
    x_c = np.asarray(control_nonzero, dtype=float)
    if n_treatment < 2 or n_control < 2:
        return RevenueUplift("bootstrap", **_EMPTY_REVENUE)
    rng = np.random.default_rng(seed)
    m_t, m_c = float(x_t.sum()) / n_treatment, float(x_c.sum()) / n_control
    d = m_t - m_c
    diffs = _bootstrap_means(x_t, n_treatment, resamples, rng) - _bootstrap_means(
        x_c, n_control, resamples, rng
    )
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p_value = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return RevenueUplift(
        method="bootstrap",
        mean_treatment=m_t,
        mean_control=m_c,
        difference=d,
        difference_ci=(float(low), float(high)),
        p_value=p_value,
        df=None,
        incremental_revenue=d * n_treatment,
    )


def revenue_uplift_bootstrap(
    treatment: np.ndarray | list[float],
    control: np.ndarray | list[float],
    *,
    alpha: float = 0.05,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> RevenueUplift:
    """:func:`revenue_uplift_bootstrap_nonzero` from the revenue of each person (zeros
    included)."""
    x_t = np.asarray(treatment, dtype=float)
    x_c = np.asarray(control, dtype=float)
    return revenue_uplift_bootstrap_nonzero(
        x_t[x_t != 0],
        x_t.size,
        x_c[x_c != 0],
        x_c.size,
        alpha=alpha,
        resamples=resamples,
        seed=seed,
    )


def roi(incremental_revenue: float | None, message_costs: float) -> float | None:
    """Return on the messages: (incremental revenue − the cost of the messages sent to the
    treatment arm) / that cost; None when nothing was spent or the revenue is unknown."""
    if incremental_revenue is None or message_costs <= 0:
        return None
    return (incremental_revenue - message_costs) / message_costs


# --------------------------------------------------------------------------------------------
# Test design: sample size for two proportions with an unequal split


@dataclass(frozen=True)
class SampleSize:
    baseline_rate: float
    treatment_rate: float
    mde_absolute: float
    alpha: float
    power: float
    treatment_share: float
    treatment_n: int
    control_n: int
    total_n: int
    days: int | None

    def as_dict(self) -> dict:
        return asdict(self)


def _open_unit(value: float, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: not a number") from None
    if not math.isfinite(number) or not 0 < number < 1:
        raise ValueError(f"{field}: must lie strictly between 0 and 1")
    return number


def sample_size_two_proportions(
    *,
    baseline_rate: float,
    mde_absolute: float | None = None,
    mde_relative: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_share: float = 0.5,
    eligible_per_day: float | None = None,
) -> SampleSize:
    """People needed to detect a change of the conversion rate from ``baseline_rate`` (the
    holdout's) by ``mde_absolute`` (or by ``mde_relative`` × baseline) with a two-sided test at
    ``alpha`` and the given ``power``, when a ``treatment_share`` of people get the treatment.

    With k = n_c / n_t = (1 − share) / share, p_c the baseline, p_t = p_c + mde and the pooled
    p̄ = (p_t + k·p_c) / (1 + k):

        n_t = [z_{α/2}·√(p̄(1−p̄)(1 + 1/k)) + z_β·√(p_t(1−p_t) + p_c(1−p_c)/k)]² / mde²,
        n_c = k·n_t

    (the variance of the difference p_t(1−p_t)/n_t + p_c(1−p_c)/n_c under the alternative, the
    pooled one under the null). At 50/50 this is the textbook formula; each arm is rounded up.
    ``days`` is the total over ``eligible_per_day`` people entering per day, rounded up.
    Nonsense raises ValueError whose message starts with the field's name."""
    p_c = _open_unit(baseline_rate, "baseline_rate")
    alpha = _open_unit(alpha, "alpha")
    power = _open_unit(power, "power")
    share = _open_unit(treatment_share, "treatment_share")
    if (mde_absolute is None) == (mde_relative is None):
        raise ValueError("mde_absolute: give exactly one of mde_absolute and mde_relative")
    field = "mde_absolute" if mde_absolute is not None else "mde_relative"
    try:
        mde = float(mde_absolute if mde_absolute is not None else p_c * float(mde_relative))
    except (TypeError, ValueError):
        raise ValueError(f"{field}: not a number") from None
    if not math.isfinite(mde) or mde == 0:
        raise ValueError(f"{field}: must be a non-zero number")
    p_t = p_c + mde
    if not 0 < p_t < 1:
        raise ValueError(f"{field}: moves the rate outside 0..1 ({p_t:g})")
    if eligible_per_day is not None:
        try:
            per_day = float(eligible_per_day)
        except (TypeError, ValueError):
            raise ValueError("eligible_per_day: not a number") from None
        if not math.isfinite(per_day) or per_day <= 0:
            raise ValueError("eligible_per_day: must be positive")
    k = (1 - share) / share
    z_a = float(norm.ppf(1 - alpha / 2))
    z_b = float(norm.ppf(power))
    pooled = (p_t + k * p_c) / (1 + k)
    root = z_a * math.sqrt(pooled * (1 - pooled) * (1 + 1 / k)) + z_b * math.sqrt(
        p_t * (1 - p_t) + p_c * (1 - p_c) / k
    )
    n_t_exact = root**2 / mde**2
    treatment_n = math.ceil(n_t_exact - 1e-9)
    control_n = math.ceil(k * n_t_exact - 1e-9)
    total_n = treatment_n + control_n
    days = math.ceil(total_n / float(eligible_per_day)) if eligible_per_day is not None else None
    return SampleSize(
        baseline_rate=p_c,
        treatment_rate=p_t,
        mde_absolute=mde,
        alpha=alpha,
        power=power,
        treatment_share=share,
        treatment_n=treatment_n,
        control_n=control_n,
        total_n=total_n,
        days=days,
    )
