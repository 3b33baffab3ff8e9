"""Multi-touch attribution, pure (numpy/pandas, no Django): which channels and campaigns brought
the orders, under five models side by side, and a CLV-weighted view of who brought the customers.

Inputs
- ``touchpoints``: ``customer_id`` (int), ``at`` (datetime64, naive UTC or aware), ``channel``
  and ``campaign`` (strings or pandas categoricals).
- ``orders``: ``order_id``, ``customer_id``, ``placed_at``, ``amount`` (RUB, float or Decimal;
  credited in kopecks), optional ``in_period`` (bool, default True: orders outside the period are
  read only as journey boundaries, never credited) and ``is_first`` (bool: the customer's first
  order ever; default: the earliest order of the customer in the frame).

The journey of an order is the customer's touchpoints at or before the order's time and
**both** after the customer's previous order (``reset_on_order=True``: a touch serves one order
only, the next one after it) and within ``lookback_days`` (default 30; ``None`` for no window)
before the order. Touches after the order are the next order's (or nobody's). Two orders of a
customer at the same instant: the first by ``order_id`` takes the journey, the other is direct.
Times are compared at microsecond resolution, coarsened to milliseconds or seconds only when a
very large id range would otherwise overflow the 64-bit sort key.

Models (the weights of one journey always sum to 1):
- ``last_click``: 100 % to the last touch; ``first_click``: 100 % to the first;
- ``linear``: 1/n each;
- ``time_decay``: weight 2^(−age/half_life) (age = days from the touch to the order), normalised;
- ``position_based`` (40/20/40): 40 % first, 40 % last, 20 % spread over the middle touches;
  one touch gets 100 %, two touches 50/50.
An order with no touch in its journey is credited to :data:`DIRECT` ("direct/none") under every
model, so each model's credited revenue sums to the total revenue exactly: per-group amounts are
rounded to kopecks by the largest-remainder rule against the exact total in kopecks.

CLV-weighted view: a customer is acquired by the first touch of the journey of their first
order (direct/none if it has none); each channel (and campaign) is credited with the customers it
acquired in the period, their first orders' revenue and the sum of their predicted CLV.

Everything is vectorised: touches and orders are sorted once on a (customer, time) key, each
order's journey is a slice ``[lo, hi)`` of the sorted touches found by ``searchsorted``, and the
credits are summed by ``bincount``: no Python loop per order or per customer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DIRECT = "direct/none"
NOT_SET = "(not set)"
MODELS = ("last_click", "first_click", "linear", "time_decay", "position_based")
DEFAULT_HALF_LIFE_DAYS = 7.0
DEFAULT_LOOKBACK_DAYS = 30.0
US_PER_DAY = 86_400 * 1_000_000
_KEY_LIMIT = 1 << 62


@dataclass
class AttributionResult:
    """Credits per group (index: channel or campaign, :data:`DIRECT` included when any order had
    no touch): for each model ``<model>_orders`` (fractional orders, float) and
    ``<model>_revenue`` (kopecks, int64, exact); the CLV view per group: ``customers``,
    ``first_order_revenue`` (kopecks), ``predicted_clv`` (RUB, float), ``customers_with_clv``."""

    by_channel: pd.DataFrame
    by_campaign: pd.DataFrame
    clv_by_channel: pd.DataFrame
    clv_by_campaign: pd.DataFrame
    orders: int = 0
    revenue: int = 0  # kopecks
    orders_with_touches: int = 0
    touches_in_journeys: int = 0
    settings: dict = field(default_factory=dict)


def _micros(values: pd.Series | np.ndarray) -> np.ndarray:
    """Datetimes as int64 Unix microseconds (UTC); aware ones converted, naive ones taken as UTC."""
    series = pd.Series(values)
    if len(series) == 0:
        return np.empty(0, dtype=np.int64)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    elif not pd.api.types.is_datetime64_dtype(series.dtype):
        series = pd.to_datetime(series, utc=True).dt.tz_localize(None)
    return series.to_numpy(dtype="datetime64[us]").astype(np.int64)


def _kopecks(amount: pd.Series) -> np.ndarray:
    if amount.dtype == object:
        amount = pd.to_numeric(amount.map(str), errors="raise")
    return np.rint(amount.to_numpy(dtype=np.float64) * 100).astype(np.int64)


def _group_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Group codes (0..k−1) and names of a column of strings; a categorical's own codes are used
    as they are (no pass over the strings), missing values become :data:`NOT_SET`."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        names = [str(c) for c in values.cat.categories]
        if (codes < 0).any():
            codes = np.where(codes < 0, len(names), codes)
            names.append(NOT_SET)
        return codes.astype(np.int32), pd.Index(names, dtype=object)
    codes, names = pd.factorize(values.astype(object).fillna(NOT_SET))
    return codes.astype(np.int32), pd.Index(names.astype(object), dtype=object)


def _order_by(key: np.ndarray) -> np.ndarray | None:
    """The stable sorting permutation of ``key``, or None when it is already sorted (a caller
    that reads rows in (customer, time) order pays one pass instead of a sort)."""
    if len(key) < 2 or bool((key[1:] >= key[:-1]).all()):
        return None
    return np.argsort(key, kind="stable")


def _ties_by_id(key: np.ndarray, ids: np.ndarray) -> bool:
    """Within equal keys, are the ids ascending?"""
    tie = key[1:] == key[:-1]
    return bool((ids[1:][tie] > ids[:-1][tie]).all())


def _ties_order(key: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For rows sorted by ``key``: the permutation sorting them by (key, id), i.e.
    ``np.lexsort((ids, key))``, computed by sorting only the runs of equal keys whose ids are
    out of order (a few among millions when keys are coarsened to milliseconds)."""
    n = len(key)
    run_start = np.ones(n, dtype=bool)
    run_start[1:] = key[1:] != key[:-1]
    run = np.cumsum(run_start) - 1
    unordered = np.zeros(n, dtype=bool)
    unordered[1:] = ~run_start[1:] & (ids[1:] < ids[:-1])
    rows = np.flatnonzero(np.isin(run, np.unique(run[unordered])))
    order = np.arange(n)
    order[rows] = rows[np.lexsort((ids[rows], run[rows]))]
    return order


def largest_remainder(values: np.ndarray, total: int) -> np.ndarray:
    """``values`` (floats summing to about ``total``) as integers summing to ``total`` exactly:
    floors, then one more to the largest fractional parts (ties to the lower index)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    floors = np.floor(values + 1e-9).astype(np.int64)
    missing = int(total - floors.sum())
    if missing > 0:
        order = np.argsort(-(values - floors), kind="stable")
        floors[order[: min(missing, len(values))]] += 1
        missing -= min(missing, len(values))
        floors[0] += missing  # only float noise beyond one per group: never in practice
    elif missing < 0:
        order = np.argsort(values - floors, kind="stable")
        take = order[: min(-missing, len(values))]
        floors[take] -= 1
        floors[0] += missing + len(take)
    return floors


def _sort_keys(
    t_cust: np.ndarray, t_us: np.ndarray, o_cust: np.ndarray, o_us: np.ndarray, lookback_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """int64 keys ordering (customer, time) for touches and orders, the customers' block starts
    for orders, the lookback in key units and the unit (µs per key step)."""
    cmin, cmax = int(min(t_cust.min(), o_cust.min())), int(max(t_cust.max(), o_cust.max()))
    tmin, tmax = int(min(t_us.min(), o_us.min())), int(max(t_us.max(), o_us.max()))
    ncodes = cmax - cmin + 1
    for unit in (1, 1_000, 1_000_000):
        span = (tmax - tmin) // unit + 2
        if ncodes * span < _KEY_LIMIT:
            break
    else:  # ids too sparse for an offset code: dense ranks of the customers
        uniques = np.unique(np.concatenate([t_cust, o_cust]))
        t_cust = np.searchsorted(uniques, t_cust)
        o_cust = np.searchsorted(uniques, o_cust)
        cmin, unit = 0, 1_000_000
        span = (tmax - tmin) // unit + 2
    t_key = (t_cust - cmin) * span
    t_key += t_us - tmin if unit == 1 else (t_us - tmin) // unit  # no division in the usual case
    o_block = (o_cust - cmin) * span
    o_key = o_block + (o_us - tmin if unit == 1 else (o_us - tmin) // unit)
    return t_key, o_key, o_block, -(-lookback_us // unit), unit


def attribute(
    touchpoints: pd.DataFrame,
    orders: pd.DataFrame,
    *,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    lookback_days: float | None = DEFAULT_LOOKBACK_DAYS,
    reset_on_order: bool = True,
    clv: pd.Series | None = None,
) -> AttributionResult:
    """Credit each in-period order's revenue to the channels and campaigns of its journey under
    every model of :data:`MODELS` (see the module's docstring for the journey and the models).
    ``clv``: predicted CLV (RUB) per customer id, for the CLV-weighted view (missing: 0)."""
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    if lookback_days is not None and lookback_days < 0:
        raise ValueError("lookback_days must not be negative")

    # ---- orders, sorted by (customer, time, order id)
    o_cust = orders["customer_id"].to_numpy(dtype=np.int64)
    o_us = _micros(orders["placed_at"])
    o_id = orders["order_id"].to_numpy(dtype=np.int64)
    o_kop = _kopecks(orders["amount"]) if len(orders) else np.empty(0, dtype=np.int64)
    in_period = (
        orders["in_period"].to_numpy(dtype=bool)
        if "in_period" in orders
        else np.ones(len(orders), dtype=bool)
    )
    # ---- touches
    t_cust = touchpoints["customer_id"].to_numpy(dtype=np.int64)
    t_us = _micros(touchpoints["at"])
    ch_code, ch_names = _group_codes(touchpoints["channel"])
    ca_code, ca_names = _group_codes(touchpoints["campaign"])

    n_orders = len(o_cust)
    if n_orders and len(t_cust):
        lookback_us = int(round(lookback_days * US_PER_DAY)) if lookback_days is not None else None
        t_key, o_key, o_block, lookback_units, _unit = _sort_keys(
            t_cust, t_us, o_cust, o_us, lookback_us or 0
        )
        t_order = _order_by(t_key)
        if t_order is not None:
            t_key, t_us = t_key[t_order], t_us[t_order]
            ch_code, ca_code = ch_code[t_order], ca_code[t_order]
        o_order = _order_by(o_key)
        ids = o_id if o_order is None else o_id[o_order]
        if len(o_key) > 1 and not _ties_by_id(o_key if o_order is None else o_key[o_order], ids):
            # Same customer and instant: by order id (sorted input: only those runs move).
            o_order = np.lexsort((o_id, o_key)) if o_order is not None else _ties_order(o_key, o_id)
        if o_order is not None:
            o_key, o_block = o_key[o_order], o_block[o_order]
            o_cust, o_us, o_id = o_cust[o_order], o_us[o_order], o_id[o_order]
            o_kop, in_period = o_kop[o_order], in_period[o_order]

        # Two binary searches per order: the journey's end, and its start (the later of the
        # customer's first touch and the lookback bound); the previous order's end (``hi`` of the
        # row before, same customer) is the third bound.
        hi = np.searchsorted(t_key, o_key, side="right")
        start = o_block if lookback_us is None else np.maximum(o_key - lookback_units, o_block)
        lo = np.searchsorted(t_key, start, side="left")
        del start
        if reset_on_order and n_orders > 1:
            same = np.zeros(n_orders, dtype=bool)
            same[1:] = o_cust[1:] == o_cust[:-1]
            lo[1:] = np.where(same[1:], np.maximum(lo[1:], hi[:-1]), lo[1:])
        n = np.maximum(hi - lo, 0)
    else:
        o_order = np.lexsort((o_id, o_us, o_cust))
        o_cust, o_us, o_id = o_cust[o_order], o_us[o_order], o_id[o_order]
        o_kop, in_period = o_kop[o_order], in_period[o_order]
        lo = np.zeros(n_orders, dtype=np.int64)
        n = np.zeros(n_orders, dtype=np.int64)

    if "is_first" in orders and n_orders:
        is_first = orders["is_first"].to_numpy(dtype=bool)
        is_first = is_first if o_order is None else is_first[o_order]
    else:
        is_first = np.ones(n_orders, dtype=bool)
        is_first[1:] = o_cust[1:] != o_cust[:-1]

    # Only the period's orders are credited.
    n = np.where(in_period, n, 0)
    credited = np.flatnonzero(in_period)
    total_kop = int(o_kop[credited].sum())
    n_credited = len(credited)

    # ---- expand the journeys: one row per (order, touch)
    n_total = int(n.sum())
    index_type = np.int32 if max(n_orders, len(t_us)) < (1 << 31) else np.int64
    order_idx = np.repeat(np.arange(n_orders, dtype=index_type), n)
    starts = np.cumsum(n) - n
    pos = (np.arange(n_total, dtype=np.int64) - np.repeat(starts, n)).astype(index_type)
    touch_idx = (np.repeat(lo, n) + pos).astype(index_type)
    n_rep = n[order_idx].astype(index_type)
    first = pos == 0
    last = pos == n_rep - 1
    del pos
    amount_rep = o_kop[order_idx].astype(np.float64)
    direct_orders = (n == 0) & in_period
    direct_kop = int(o_kop[direct_orders].sum())
    direct_count = int(direct_orders.sum())
    dims = {"channel": (ch_code, ch_names), "campaign": (ca_code, ca_names)}
    groups = {dim: codes[touch_idx] for dim, (codes, _names) in dims.items()}

    def model_weights(model: str) -> np.ndarray:
        if model == "last_click":
            return last.astype(np.float64)
        if model == "first_click":
            return first.astype(np.float64)
        if model == "linear":
            return 1.0 / np.maximum(n_rep, 1)
        if model == "time_decay":
            if not n_total:
                return np.empty(0)
            age_days = (o_us[order_idx] - t_us[touch_idx]) / US_PER_DAY
            # Relative to the journey's youngest (last) touch: no underflow over long windows.
            has = n > 0
            youngest = np.repeat(age_days[starts[has] + n[has] - 1], n[has])
            raw = np.exp2(-(age_days - youngest) / float(half_life_days))
            return raw / np.bincount(order_idx, weights=raw, minlength=n_orders)[order_idx]
        middle = 0.2 / np.maximum(n_rep - 2, 1)  # position_based
        return np.where(
            n_rep == 1, 1.0, np.where(n_rep == 2, 0.5, np.where(first | last, 0.4, middle))
        )

    columns: dict[str, dict[str, np.ndarray]] = {dim: {} for dim in dims}
    for model in MODELS:
        w = model_weights(model)
        for dim, (_codes, names) in dims.items():
            size = len(names)
            rev = np.append(
                np.bincount(groups[dim], weights=w * amount_rep, minlength=size), direct_kop
            )
            cnt = np.append(np.bincount(groups[dim], weights=w, minlength=size), direct_count)
            columns[dim][f"{model}_orders"] = (
                largest_remainder(cnt * 10_000, n_credited * 10_000) / 1e4
            )
            columns[dim][f"{model}_revenue"] = largest_remainder(rev, total_kop)
        del w

    def per_group(dim: str) -> pd.DataFrame:
        names = dims[dim][1]
        frame = pd.DataFrame(columns[dim], index=pd.Index([*names, DIRECT], dtype=object, name=dim))
        if DIRECT in names:  # a group literally named direct/none
            frame = frame.groupby(level=0, sort=False).sum()
        keep = (frame.abs().sum(axis=1) > 0) | ((frame.index == DIRECT) & (direct_count > 0))
        return frame[keep].sort_values("last_click_revenue", ascending=False, kind="stable")

    by_channel = per_group("channel")
    by_campaign = per_group("campaign")

    # ---- CLV-weighted view: who acquired the customers whose first order is in the period
    acquired = np.flatnonzero(is_first & in_period)
    clv_values = np.zeros(len(acquired))
    has_clv = np.zeros(len(acquired), dtype=bool)
    if clv is not None and len(acquired):
        mapped = pd.Series(o_cust[acquired]).map(clv).to_numpy(dtype=np.float64, na_value=np.nan)
        has_clv = ~np.isnan(mapped)
        clv_values = np.where(has_clv, mapped, 0.0)
    acq_n = n[acquired]
    acq_touch = lo[acquired]

    def clv_view(codes: np.ndarray, names: pd.Index, name: str) -> pd.DataFrame:
        size = len(names)
        group = np.full(len(acquired), size, dtype=np.int64)  # size = direct/none
        with_touch = acq_n > 0
        group[with_touch] = codes[acq_touch[with_touch]] if len(codes) else size
        frame = pd.DataFrame(
            {
                "customers": np.bincount(group, minlength=size + 1),
                "first_order_revenue": np.bincount(
                    group, weights=o_kop[acquired], minlength=size + 1
                ).astype(np.int64),
                "predicted_clv": np.bincount(group, weights=clv_values, minlength=size + 1),
                "customers_with_clv": np.bincount(group, weights=has_clv, minlength=size + 1)
                .round()
                .astype(np.int64),
            },
            index=pd.Index([*names, DIRECT], dtype=object, name=name),
        )
        if DIRECT in names:
            frame = frame.groupby(level=0, sort=False).sum()
        frame = frame[frame["customers"] > 0]
        return frame.sort_values("predicted_clv", ascending=False, kind="stable")

    return AttributionResult(
        by_channel=by_channel,
        by_campaign=by_campaign,
        clv_by_channel=clv_view(ch_code, ch_names, "channel"),
        clv_by_campaign=clv_view(ca_code, ca_names, "campaign"),
        orders=n_credited,
        revenue=total_kop,
        orders_with_touches=int((n > 0).sum()),
        touches_in_journeys=n_total,
        settings={
            "half_life_days": float(half_life_days),
            "lookback_days": None if lookback_days is None else float(lookback_days),
            "reset_on_order": reset_on_order,
        },
    )
