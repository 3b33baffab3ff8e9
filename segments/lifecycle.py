"""Lifecycle stage per customer from orders and events, with per-client thresholds.

Pure numpy/pandas: no Django import (STYLE §2).

Everything is measured as of the ``as_of`` day, in whole calendar days (the calendar dates of
the timestamps as given: pass them in the client's time zone); orders and events after as_of
are ignored. Pass paid orders only: the stage reads every order it is given as a purchase.

Rules, applied in this order (the first that matches wins); "first"/"last" are the days since
the first/last purchase:

1. Awareness: no purchase yet and no purchase-intent event (``intent_event_types``, by default
   cart and product_view) in the last ``intent_window_days`` (30): a known contact (customer
   record, registration, visits, opens) who has not shown intent to buy.
2. Acquisition: no purchase yet, but a purchase-intent event in the last
   ``intent_window_days``: the lead that acquisition campaigns try to convert.
3. Onboarding: first <= ``onboarding_days`` (30): the first purchase was recent; the job is the
   second purchase.
4. Win-back: last > ``winback_after_days`` (60): lapsed.
5. Expansion: not at risk (last <= ``at_risk_after_days``, 30) and spending more: the spend in the
   last ``expansion_window_days`` (90) is at least (1 + ``expansion_growth``) (1.2) times the
   spend in the ``expansion_window_days`` before it, and that earlier spend is positive.
6. Retention: every other customer with purchases (bought before the onboarding window and
   within the win-back threshold).

``at_risk`` (a column next to the stage) is true for customers with purchases whose last
purchase is more than ``at_risk_after_days`` ago: Retention customers between 30 and 60 days
and every Win-back customer. The defaults are the agency offer's: onboarding within 30 days of
the first purchase, at risk after 30 days without purchase, win-back after 60.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segments.clv import customer_runs
from segments.rfm import customer_codes

AWARENESS = "Awareness"
ACQUISITION = "Acquisition"
ONBOARDING = "Onboarding"
RETENTION = "Retention"
EXPANSION = "Expansion"
WIN_BACK = "Win-back"

#: Stages in lifecycle order.
STAGES: tuple[str, ...] = (AWARENESS, ACQUISITION, ONBOARDING, RETENTION, EXPANSION, WIN_BACK)


@dataclass(frozen=True)
class LifecycleThresholds:
    """Per-client thresholds (days). The defaults are the agency offer's."""

    onboarding_days: int = 30
    at_risk_after_days: int = 30
    winback_after_days: int = 60
    intent_window_days: int = 30
    intent_event_types: tuple[str, ...] = ("cart", "product_view")
    expansion_window_days: int = 90
    expansion_growth: float = 0.2

    def __post_init__(self) -> None:
        for name in (
            "onboarding_days",
            "at_risk_after_days",
            "winback_after_days",
            "intent_window_days",
            "expansion_window_days",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.winback_after_days < self.at_risk_after_days:
            raise ValueError("winback_after_days must be at least at_risk_after_days")
        if self.expansion_growth < 0:
            raise ValueError("expansion_growth must not be negative")


COLUMNS = (
    "stage",
    "at_risk",
    "orders",
    "days_since_first_purchase",
    "days_since_last_purchase",
    "days_since_intent",
)


def _day_numbers(values: pd.Series) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        values = pd.to_datetime(values)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_localize(None)
    days = values.to_numpy().astype("datetime64[D]")
    if np.isnat(days).any():
        raise ValueError("timestamps have empty values")
    return days.view(np.int64)


def lifecycle_stages(
    *,
    orders: pd.DataFrame,
    as_of: dt.date | dt.datetime | str,
    events: pd.DataFrame | None = None,
    customers=None,
    thresholds: LifecycleThresholds | None = None,
) -> pd.DataFrame:
    """Stage of every customer as of the ``as_of`` day.

    orders: columns customer_id, placed_at, amount. events (optional): customer_id,
    occurred_at, type. customers (optional): ids of every known customer, so that contacts with
    neither orders nor events are reported too (as Awareness).

    Returns one row per customer, indexed by ``customer_id`` in id order, with the columns in
    :data:`COLUMNS`; the day columns are -1 where there is no such purchase or event.
    """
    th = thresholds or LifecycleThresholds()
    today = np.datetime64(pd.Timestamp(as_of).date(), "D").astype(np.int64)

    order_days = _day_numbers(orders["placed_at"])
    order_ids = orders["customer_id"].to_numpy()
    amount = orders["amount"].to_numpy(dtype=float)
    in_range = order_days <= today
    if not in_range.all():  # copies of every order only when some are to be left out
        order_ids, order_days, amount = order_ids[in_range], order_days[in_range], amount[in_range]
    del in_range
    codes, buyers = customer_codes(pd.Series(order_ids))
    n = len(buyers)
    orders_n = np.bincount(codes, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, order_days)
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, codes, order_days)
    lately = np.flatnonzero(order_days > today - 2 * th.expansion_window_days)
    recent, earlier = _window_spend(
        codes[lately], today - order_days[lately], amount[lately], n, th.expansion_window_days
    )
    return _stages(
        pd.Index(buyers), orders_n, first, last, recent, earlier, events, customers, today, th
    )


def lifecycle_from_purchase_days(
    days: pd.DataFrame,
    *,
    as_of: dt.date | dt.datetime | str,
    events: pd.DataFrame | None = None,
    customers=None,
    thresholds: LifecycleThresholds | None = None,
) -> pd.DataFrame:
    """:func:`lifecycle_stages` from :func:`segments.clv.purchase_days` rows (customer, day,
    amount, orders), which the scoring pipeline has anyway: reductions over each customer's run
    of days instead of another pass over every order."""
    th = thresholds or LifecycleThresholds()
    today = np.datetime64(pd.Timestamp(as_of).date(), "D").astype(np.int64)
    day_no = days["day"].to_numpy(dtype="datetime64[D]").view(np.int64)
    keep = day_no <= today
    if not keep.all():
        days = days[keep]
    days, starts = customer_runs(days)
    day_no = days["day"].to_numpy(dtype="datetime64[D]").view(np.int64)
    amount = days["amount"].to_numpy(dtype=float)
    ends = np.r_[starts[1:], len(days)][: len(starts)] - 1
    lately = np.flatnonzero(day_no > today - 2 * th.expansion_window_days)
    recent, earlier = _window_spend(
        np.searchsorted(starts, lately, side="right") - 1,
        today - day_no[lately],
        amount[lately],
        len(starts),
        th.expansion_window_days,
    )
    return _stages(
        pd.Index(days["customer"].to_numpy()[starts]),
        np.add.reduceat(days["orders"].to_numpy(), starts) if len(starts) else starts,
        day_no[starts],
        day_no[ends],
        recent,
        earlier,
        events,
        customers,
        today,
        th,
    )


def _window_spend(
    codes: np.ndarray, age: np.ndarray, amount: np.ndarray, n: int, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Spend per customer in the last ``window`` days and in the ``window`` days before, from
    the purchases (codes, age in days, amount) of the last two windows."""
    recent = np.bincount(codes, weights=np.where(age < window, amount, 0.0), minlength=n)
    earlier = np.bincount(codes, weights=np.where(age >= window, amount, 0.0), minlength=n)
    return recent, earlier


def _stages(
    buyers: pd.Index,
    orders_n: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    recent: np.ndarray,
    earlier: np.ndarray,
    events: pd.DataFrame | None,
    customers,
    today: int,
    th: LifecycleThresholds,
) -> pd.DataFrame:
    """The stage frame from the buyers' measures (ascending ids), with the contacts of
    ``events`` and ``customers`` added."""
    other_ids = []  # the ids of kept events and of known customers
    intent_rows = np.zeros(0, dtype=bool)  # per kept event: is it a purchase-intent event
    intent_days = np.zeros(0, dtype=np.int64)
    if events is not None and len(events):
        event_days = _day_numbers(events["occurred_at"])
        keep = event_days <= today
        other_ids.append(events["customer_id"][keep].to_numpy())
        intent_rows = events["type"][keep].isin(th.intent_event_types).to_numpy()
        intent_days = event_days[keep][intent_rows]
    if customers is not None:
        other_ids.append(np.asarray(customers))
    others = np.concatenate(other_ids) if other_ids else buyers.to_numpy()[:0]
    uniques = buyers.union(pd.Index(pd.unique(others)))
    if not uniques.is_monotonic_increasing:  # union leaves the other side as is when one is empty
        uniques = uniques.sort_values()
    n = len(uniques)
    at = uniques.get_indexer(buyers)

    def spread(values: np.ndarray, missing) -> np.ndarray:
        out = np.full(n, missing, dtype=values.dtype if len(values) else np.int64)
        out[at] = values
        return out

    orders_n = spread(orders_n, 0)
    never = np.iinfo(np.int64).min
    first = spread(first, np.iinfo(np.int64).max)
    last = spread(last, never)
    recent, earlier = spread(recent, 0.0), spread(earlier, 0.0)
    last_intent = np.full(n, never)
    intent_codes = uniques.get_indexer(others[: len(intent_rows)][intent_rows])
    np.maximum.at(last_intent, intent_codes, intent_days)

    bought = orders_n > 0
    since_first = np.where(bought, today - first, -1)
    since_last = np.where(bought, today - last, -1)
    since_intent = np.where(last_intent != never, today - last_intent, -1)

    at_risk = bought & (since_last > th.at_risk_after_days)
    growing = (earlier > 0) & (recent >= (1.0 + th.expansion_growth) * earlier)
    stage = np.select(
        [
            ~bought & ((since_intent < 0) | (since_intent > th.intent_window_days)),
            ~bought,
            since_first <= th.onboarding_days,
            since_last > th.winback_after_days,
            ~at_risk & growing,
        ],
        [
            STAGES.index(AWARENESS),
            STAGES.index(ACQUISITION),
            STAGES.index(ONBOARDING),
            STAGES.index(WIN_BACK),
            STAGES.index(EXPANSION),
        ],
        default=STAGES.index(RETENTION),
    )
    return pd.DataFrame(
        {
            "stage": pd.Categorical.from_codes(stage, categories=list(STAGES), ordered=True),
            "at_risk": at_risk,
            "orders": orders_n,
            "days_since_first_purchase": since_first,
            "days_since_last_purchase": since_last,
            "days_since_intent": since_intent,
        },
        index=pd.Index(uniques, name="customer_id"),
    )
