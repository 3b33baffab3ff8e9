"""Lifecycle stages on a hand-computed table, with the default and with per-client thresholds."""

from __future__ import annotations

import pandas as pd
import pytest

from segments import lifecycle as lc

AS_OF = "2024-06-30"

ORDERS = [
    (5, "2024-06-10 10:00", 100.0),
    (5, "2024-06-20 10:00", 50.0),
    (6, "2024-05-31 23:00", 100.0),
    (7, "2024-01-10 10:00", 100.0),
    (7, "2024-06-15 10:00", 100.0),
    (8, "2024-01-10 10:00", 100.0),
    (8, "2024-06-01 10:00", 150.0),
    (9, "2024-01-10 10:00", 100.0),
    (9, "2024-05-20 10:00", 500.0),
    (10, "2023-10-01 10:00", 70.0),
    (10, "2024-04-30 10:00", 70.0),
    (11, "2024-02-01 10:00", 80.0),
    (11, "2024-05-01 10:00", 200.0),
    (12, "2024-07-05 10:00", 10.0),  # after as_of: ignored
    (13, "2024-06-01 10:00", 30.0),
]

EVENTS = [
    (2, "2024-06-25 10:00", "visit"),
    (3, "2024-06-20 10:00", "cart"),
    (4, "2024-05-15 10:00", "product_view"),
    (13, "2024-06-29 10:00", "cart"),
    (3, "2024-07-02 10:00", "cart"),  # after as_of: ignored
]

# Worked by hand from the rules in the module docstring (as of 2024-06-30):
#  1 known contact, nothing else                     -> Awareness
#  2 a visit 5 days ago (not an intent event)        -> Awareness
#  3 a cart 10 days ago, no purchase                 -> Acquisition
#  4 a product view 46 days ago (> 30), no purchase  -> Awareness
#  5 first purchase 20 days ago                      -> Onboarding
#  6 first purchase exactly 30 days ago              -> Onboarding
#  7 first 172, last 15 days ago; 100 vs 100         -> Retention
#  8 first 172, last 29 days ago; 150 >= 1.2 * 100   -> Expansion
#  9 last 41 days ago (at risk, so not Expansion)    -> Retention, at risk
# 10 last 61 days ago (> 60)                         -> Win-back, at risk
# 11 last exactly 60 days ago                        -> Retention, at risk
# 12 only an order after as_of                       -> Awareness
# 13 first purchase 29 days ago, and a cart          -> Onboarding
EXPECTED = pd.DataFrame(
    {
        "stage": [
            lc.AWARENESS,
            lc.AWARENESS,
            lc.ACQUISITION,
            lc.AWARENESS,
            lc.ONBOARDING,
            lc.ONBOARDING,
            lc.RETENTION,
            lc.EXPANSION,
            lc.RETENTION,
            lc.WIN_BACK,
            lc.RETENTION,
            lc.AWARENESS,
            lc.ONBOARDING,
        ],
        "at_risk": [False] * 8 + [True, True, True, False, False],
        "orders": [0, 0, 0, 0, 2, 1, 2, 2, 2, 2, 2, 0, 1],
        "days_since_first_purchase": [-1, -1, -1, -1, 20, 30, 172, 172, 172, 273, 150, -1, 29],
        "days_since_last_purchase": [-1, -1, -1, -1, 10, 30, 15, 29, 41, 61, 60, -1, 29],
        "days_since_intent": [-1, -1, 10, 46, -1, -1, -1, -1, -1, -1, -1, -1, 1],
    },
    index=pd.Index(range(1, 14), name="customer_id"),
)


def _orders() -> pd.DataFrame:
    frame = pd.DataFrame(ORDERS, columns=["customer_id", "placed_at", "amount"])
    frame["placed_at"] = pd.to_datetime(frame["placed_at"])
    return frame


def _events() -> pd.DataFrame:
    frame = pd.DataFrame(EVENTS, columns=["customer_id", "occurred_at", "type"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"])
    return frame


def _stages(**kwargs) -> pd.DataFrame:
    return lc.lifecycle_stages(
        orders=_orders(), events=_events(), customers=range(1, 14), as_of=AS_OF, **kwargs
    )


def test_hand_computed_table_with_the_default_thresholds():
    table = _stages()
    assert list(table.columns) == list(lc.COLUMNS)
    got = table.astype({"stage": str})
    pd.testing.assert_frame_equal(
        got, EXPECTED, check_dtype=False, check_index_type=False, check_column_type=False
    )
    assert list(table["stage"].cat.categories) == list(lc.STAGES)


def test_per_client_thresholds():
    thresholds = lc.LifecycleThresholds(
        onboarding_days=7, at_risk_after_days=14, winback_after_days=21
    )
    table = _stages(thresholds=thresholds)
    stage = table["stage"].astype(str)
    assert stage[5] == lc.RETENTION  # first 20 days ago, last 10: past a 7-day onboarding
    assert not table.loc[5, "at_risk"]
    assert stage[13] == lc.WIN_BACK  # last 29 > 21
    assert stage[8] == lc.WIN_BACK
    assert stage[7] == lc.RETENTION
    assert table.loc[7, "at_risk"]  # last 15 > 14


def test_intent_types_and_window_are_configurable():
    thresholds = lc.LifecycleThresholds(intent_event_types=("visit",), intent_window_days=5)
    stage = _stages(thresholds=thresholds)["stage"].astype(str)
    assert stage[2] == lc.ACQUISITION  # a visit 5 days ago now counts
    assert stage[3] == lc.AWARENESS  # carts no longer count


def test_without_events_and_customers():
    table = lc.lifecycle_stages(orders=_orders(), as_of=AS_OF)
    assert list(table.index) == [5, 6, 7, 8, 9, 10, 11, 13]
    assert table.loc[13, "days_since_intent"] == -1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"onboarding_days": -1},
        {"at_risk_after_days": 61},  # past the default win-back threshold
        {"expansion_growth": -0.1},
    ],
)
def test_thresholds_are_validated(kwargs):
    with pytest.raises(ValueError, match="must"):
        lc.LifecycleThresholds(**kwargs)
