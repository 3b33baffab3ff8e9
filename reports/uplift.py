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

from scipy.stats import norm

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
