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

    other_ids = []  # the ids of kept events and of known customers
    intent_rows = np.zeros(0, dtype=bool)  # per kept event: is it a purchase-intent event
    intent_days = order_days[:0]
    if events is not None and len(events):
        event_days = _day_numbers(events["occurred_at"])
        keep = event_days <= today
        other_ids.append(events["customer_id"][keep].to_numpy())
        intent_rows = events["type"][keep].isin(th.intent_event_types).to_numpy()
        intent_days = event_days[keep][intent_rows]
    if customers is not None:
        other_ids.append(np.asarray(customers))
    # Codes of the order ids first, then the few distinct ones merged with the other ids: no
    # concatenation of millions of order rows.
    codes, order_uniques = customer_codes(pd.Series(order_ids))
    others = np.concatenate(other_ids) if other_ids else np.zeros(0, dtype=order_ids.dtype)
    uniques = pd.Index(order_uniques).union(pd.Index(pd.unique(others)))
    n = len(uniques)
    order_codes = uniques.get_indexer(order_uniques)[codes]
    del codes
    event_ids = others[: len(intent_rows)]
    intent_codes = uniques.get_indexer(event_ids[intent_rows])

    orders_n = np.bincount(order_codes, minlength=n)
    never = np.iinfo(np.int64).min
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, order_codes, order_days)
    last = np.full(n, never)
    np.maximum.at(last, order_codes, order_days)
    last_intent = np.full(n, never)
    np.maximum.at(last_intent, intent_codes, intent_days)

    bought = orders_n > 0
    since_first = np.where(bought, today - first, -1)
    since_last = np.where(bought, today - last, -1)
    since_intent = np.where(last_intent != never, today - last_intent, -1)

    # Spend in the two expansion windows, from the orders of the last 2 windows only.
    window = th.expansion_window_days
    lately = np.flatnonzero(order_days > today - 2 * window)
    age = today - order_days[lately]
    lately_codes, lately_amount = order_codes[lately], amount[lately]
    recent = np.bincount(
        lately_codes, weights=np.where(age < window, lately_amount, 0.0), minlength=n
    )
    earlier = np.bincount(
        lately_codes, weights=np.where(age >= window, lately_amount, 0.0), minlength=n
    )

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
