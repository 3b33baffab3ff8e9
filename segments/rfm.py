"""RFM: recency, frequency and monetary value per customer, quintile scores and named segments.

Pure numpy/pandas: no Django import (STYLE §2).

Measures, from the transactions placed on or before the ``as_of`` day (calendar days of the
``placed_at`` values as given: pass them in the client's time zone):

- ``recency_days``: whole calendar days from the last purchase day to ``as_of`` (0 = today);
- ``frequency``: number of transactions (rows), i.e. orders;
- ``monetary``: total amount of those transactions.

Scores 1-5 (5 is best) are quintiles with one deterministic tie rule, the same as SQL's
``NTILE(5) OVER (ORDER BY value, customer_id)``:

- customers are ordered by the value, worst first, and customers with equal values by customer
  id ascending (the ids' own order: numbers numerically, strings lexicographically by code
  point); R orders by recency_days descending (the oldest last purchase first);
- the ordered list of n customers is cut into 5 groups of n // 5, and the first n % 5 groups get
  one customer more (NTILE's rule); group k scores k.

So equal values can get different scores at a quintile boundary, but the result never depends
on the engine or the input order (tests/segments/test_rfm.py checks it against SQLite's NTILE).

Named segments use R and FM = round-half-up((F + M) / 2) on this grid (rows R, columns FM):

    R \\ FM    1              2              3                 4                 5
    5         New            Potential Loy. Potential Loyalist Champions         Champions
    4         Promising      Potential Loy. Potential Loyalist Loyal             Loyal
    3         About to Sleep About to Sleep Need Attention     Loyal             Loyal
    2         Hibernating    Hibernating    At Risk            At Risk           Can't Lose Them
    1         Lost           Lost           At Risk            At Risk           Can't Lose Them

In words: Champions R 5, FM 4-5; Loyal R 3-4, FM 4-5; Potential Loyalist R 4-5, FM 2-3;
New R 5, FM 1; Promising R 4, FM 1; Need Attention R 3, FM 3; About to Sleep R 3, FM 1-2;
At Risk R 1-2, FM 3-4; Can't Lose Them R 1-2, FM 5; Hibernating R 2, FM 1-2; Lost R 1, FM 1-2.
Every (R, FM) cell has exactly one name.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from segments.clv import customer_runs

CHAMPIONS = "Champions"
LOYAL = "Loyal"
POTENTIAL_LOYALIST = "Potential Loyalist"
NEW = "New"
PROMISING = "Promising"
NEED_ATTENTION = "Need Attention"
ABOUT_TO_SLEEP = "About to Sleep"
AT_RISK = "At Risk"
CANT_LOSE_THEM = "Can't Lose Them"
HIBERNATING = "Hibernating"
LOST = "Lost"

#: Segment names, best first.
SEGMENTS: tuple[str, ...] = (
    CHAMPIONS,
    LOYAL,
    POTENTIAL_LOYALIST,
    NEW,
    PROMISING,
    NEED_ATTENTION,
    ABOUT_TO_SLEEP,
    AT_RISK,
    CANT_LOSE_THEM,
    HIBERNATING,
    LOST,
)

#: SEGMENT_GRID[r - 1][fm - 1]: the name of the cell (R score r, FM score fm).
SEGMENT_GRID: tuple[tuple[str, ...], ...] = (
    (LOST, LOST, AT_RISK, AT_RISK, CANT_LOSE_THEM),  # R = 1
    (HIBERNATING, HIBERNATING, AT_RISK, AT_RISK, CANT_LOSE_THEM),  # R = 2
    (ABOUT_TO_SLEEP, ABOUT_TO_SLEEP, NEED_ATTENTION, LOYAL, LOYAL),  # R = 3
    (PROMISING, POTENTIAL_LOYALIST, POTENTIAL_LOYALIST, LOYAL, LOYAL),  # R = 4
    (NEW, POTENTIAL_LOYALIST, POTENTIAL_LOYALIST, CHAMPIONS, CHAMPIONS),  # R = 5
)

_GRID_CODES = np.array([[SEGMENTS.index(name) for name in row] for row in SEGMENT_GRID])

COLUMNS = (
    "last_purchase",
    "recency_days",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "fm_score",
    "rfm_code",
    "segment",
)


def ntile(order: np.ndarray, buckets: int = 5) -> np.ndarray:
    """Bucket 1..buckets of each element, given ``order`` (a permutation, worst first).

    Exactly SQL's NTILE: n // buckets per bucket, the first n % buckets buckets one more.
    """
    n = len(order)
    size, extra = divmod(n, buckets)
    position = np.arange(n)
    big = extra * (size + 1)  # elements in the buckets that have one more
    with np.errstate(divide="ignore", invalid="ignore"):
        bucket = np.where(
            position < big,
            position // (size + 1),
            extra + (position - big) // max(size, 1),
        )
    out = np.empty(n, dtype=np.int8)
    out[order] = bucket + 1
    return out


def quintile_scores(values: np.ndarray) -> np.ndarray:
    """Scores 1-5: NTILE(5) over ``values`` ascending, ties in the given order.

    Pass ``values`` in customer-id order so that ties fall back to the id (the module's rule).
    """
    values = np.asarray(values)
    if values.dtype.kind in "iu" and len(values):
        lo = int(values.min())
        if int(values.max()) - lo < 1 << 16:
            # Small-range integers (days, counts): numpy's stable sort is a radix sort here.
            values = (values - lo).astype(np.uint16)
    return ntile(np.argsort(values, kind="stable"), 5)


def segment_names(r_score, fm_score) -> pd.Categorical:
    """The named segment of each (R, FM) pair (scores 1-5), as a categorical."""
    codes = _GRID_CODES[np.asarray(r_score) - 1, np.asarray(fm_score) - 1]
    return pd.Categorical.from_codes(codes, categories=list(SEGMENTS))


def customer_codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """(codes, distinct ids) with codes numbering the distinct ids in ascending id order.

    Integer ids in a range not much wider than the data are used as codes directly (one
    bincount-sized pass, no hashing); other ids are hashed and the distinct ones sorted.
    """
    values = ids.to_numpy() if isinstance(ids, pd.Series) else np.asarray(ids)
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < max(2 * len(values), 1 << 20):
            offset = values - lo
            present = np.flatnonzero(np.bincount(offset, minlength=hi - lo + 1))
            rank = np.empty(hi - lo + 1, dtype=np.int64)
            rank[present] = np.arange(len(present))
            return rank[offset], pd.Index(present + lo)
    codes, uniques = pd.factorize(ids)
    if (codes < 0).any():
        raise ValueError("customer ids have empty values")
    uniques = pd.Index(uniques)
    order = uniques.argsort()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], uniques.take(order)


def _local_days(instants: np.ndarray, tz) -> np.ndarray:
    """Calendar days (days since 1970-01-01) of datetime64 instants, in ``tz`` when given."""
    if tz is not None:
        local = pd.DatetimeIndex(instants).tz_localize("UTC").tz_convert(tz).tz_localize(None)
        instants = local.to_numpy()
    return instants.astype("datetime64[D]").astype(np.int64)


def rfm_table(
    transactions: pd.DataFrame,
    *,
    as_of: dt.date | dt.datetime | str,
    customer_col: str = "customer_id",
    date_col: str = "placed_at",
    amount_col: str = "amount",
) -> pd.DataFrame:
    """RFM measures, scores and segment per customer with a transaction on or before as_of.

    Returns one row per customer, indexed by customer id (named ``customer_id``) in id order,
    with the columns in :data:`COLUMNS`; ``rfm_code`` is 100 R + 10 F + M (e.g. 545).
    """
    as_of_day = np.datetime64(pd.Timestamp(as_of).date(), "D")
    placed = transactions[date_col]
    if not pd.api.types.is_datetime64_any_dtype(placed.dtype):
        placed = pd.to_datetime(placed)
    tz = getattr(placed.dt, "tz", None)
    # Compare instants with the end of the as_of day (in the data's zone) instead of
    # converting every row to a local date; only the last purchase per customer is converted.
    cutoff = pd.Timestamp(as_of_day + 1).tz_localize(tz)
    if tz is not None:
        placed = placed.dt.tz_convert(None)
        cutoff = cutoff.tz_convert(None)
    instants = placed.to_numpy()
    if np.isnat(instants).any():
        raise ValueError(f"{date_col} has empty values")
    amount = transactions[amount_col].to_numpy(dtype=float)
    if np.isnan(amount).any():
        raise ValueError(f"{amount_col} has empty values")
    ids = transactions[customer_col]
    keep = instants < cutoff.to_datetime64()
    if not keep.all():
        instants, amount, ids = instants[keep], amount[keep], ids[keep]
    codes, uniques = customer_codes(ids)
    n = len(uniques)
    frequency = np.bincount(codes, minlength=n)
    monetary = np.bincount(codes, weights=amount, minlength=n)
    last_instant = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last_instant, codes, instants.view(np.int64))
    last = _local_days(last_instant.view(instants.dtype), tz)
    return _rfm_frame(uniques, frequency, monetary, last, as_of_day)


def rfm_from_purchase_days(
    days: pd.DataFrame, *, as_of: dt.date | dt.datetime | str
) -> pd.DataFrame:
    """:func:`rfm_table` from :func:`segments.clv.purchase_days` rows (customer, day, amount,
    orders), which the scoring pipeline has anyway: one reduction per customer over its run of
    days instead of another pass over every order. (Monetary sums the day totals, so it may
    differ from rfm_table's in the last bit.)"""
    as_of_day = np.datetime64(pd.Timestamp(as_of).date(), "D")
    day_no = days["day"].to_numpy(dtype="datetime64[D]").view(np.int64)
    keep = day_no <= as_of_day.astype(np.int64)
    if not keep.all():
        days = days[keep]
    days, starts = customer_runs(days)
    if len(days) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _rfm_frame(pd.Index(empty), empty, np.zeros(0), empty, as_of_day)
    day_no = days["day"].to_numpy(dtype="datetime64[D]").view(np.int64)
    ends = np.r_[starts[1:], len(days)] - 1
    return _rfm_frame(
        days["customer"].to_numpy()[starts],
        np.add.reduceat(days["orders"].to_numpy(), starts),
        np.add.reduceat(days["amount"].to_numpy(dtype=float), starts),
        day_no[ends],
        as_of_day,
    )


def _rfm_frame(uniques, frequency, monetary, last, as_of_day: np.datetime64) -> pd.DataFrame:
    """The RFM table of customers ``uniques`` (ascending) from their measures; ``last`` is the
    last purchase day (days since 1970-01-01)."""
    recency = as_of_day.astype(np.int64) - last
    # Customers are in id order, so ties fall back to the id.
    r_score = quintile_scores(-recency)
    f_score = quintile_scores(frequency)
    m_score = quintile_scores(monetary)
    fm_score = ((f_score.astype(np.int16) + m_score + 1) // 2).astype(np.int8)
    return pd.DataFrame(
        {
            "last_purchase": last.astype("datetime64[D]"),
            "recency_days": recency,
            "frequency": frequency,
            "monetary": monetary,
            "r_score": r_score,
            "f_score": f_score,
            "m_score": m_score,
            "fm_score": fm_score,
            "rfm_code": r_score.astype(np.int16) * 100 + f_score * 10 + m_score,
            "segment": segment_names(r_score, fm_score),
        },
        index=pd.Index(uniques, name="customer_id"),
    )
