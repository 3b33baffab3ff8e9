"""reports.attribution on hand-computed journeys: every model's credit per channel written out by
hand, the edge cases (one touch, two touches, no touch, a touch after the order, two orders
splitting a customer's touches, the lookback window), exact sums and the CLV-weighted view."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from reports.attribution import DIRECT, MODELS, attribute, largest_remainder

T = pd.Timestamp("2026-03-31 12:00")


def days(n: float) -> pd.Timedelta:
    return pd.Timedelta(days=n)


def touches(*rows) -> pd.DataFrame:
    """(customer, at, channel[, campaign]) rows."""
    return pd.DataFrame(
        [(c, at, ch, rest[0] if rest else f"{ch}-campaign") for c, at, ch, *rest in rows],
        columns=["customer_id", "at", "channel", "campaign"],
    )


def orders(*rows) -> pd.DataFrame:
    """(order id, customer, placed_at, amount) rows."""
    return pd.DataFrame(rows, columns=["order_id", "customer_id", "placed_at", "amount"])


def revenue(result, model: str, by: str = "channel") -> dict[str, int]:
    """Credited revenue per group in kopecks, zero groups left out."""
    frame = result.by_channel if by == "channel" else result.by_campaign
    column = frame[f"{model}_revenue"]
    return {k: int(v) for k, v in column.items() if v}


def test_three_touches_one_order_every_model_by_hand():
    # 10, 4 and 1 days before an order of 1000 ₽ (100 000 kopecks): email, yandex/cpc, sms.
    tp = touches(
        (1, T - days(10), "email"), (1, T - days(4), "yandex/cpc"), (1, T - days(1), "sms")
    )
    result = attribute(tp, orders((1, 1, T, 1000)))
    assert revenue(result, "last_click") == {"sms": 100_000}
    assert revenue(result, "first_click") == {"email": 100_000}
    # 1/3 each: 33 333.33 kopecks; the one spare kopeck to the first group (ties: lower index).
    assert revenue(result, "linear") == {"email": 33_334, "yandex/cpc": 33_333, "sms": 33_333}
    # 2^(−10/7) = 0.371498, 2^(−4/7) = 0.672950, 2^(−1/7) = 0.905724; sum 1.950172:
    # 19.0495 %, 34.5072 %, 46.4433 % of 1000 ₽.
    w = np.array([2 ** (-10 / 7), 2 ** (-4 / 7), 2 ** (-1 / 7)])
    assert w / w.sum() == pytest.approx([0.190495, 0.345072, 0.464433], abs=1e-6)
    assert revenue(result, "time_decay") == {"email": 19_050, "yandex/cpc": 34_507, "sms": 46_443}
    # 40 / 20 / 40.
    assert revenue(result, "position_based") == {
        "email": 40_000,
        "yandex/cpc": 20_000,
        "sms": 40_000,
    }
    frame = result.by_channel
    assert frame.loc["sms", "last_click_orders"] == 1
    assert frame.loc["email", "position_based_orders"] == pytest.approx(0.4)
    assert frame.loc["yandex/cpc", "time_decay_orders"] == pytest.approx(0.3451, abs=1e-4)
    assert (result.orders, result.revenue, result.orders_with_touches) == (1, 100_000, 1)


def test_time_decay_uses_the_half_life():
    # Touches 14 and 0 days before, half-life 7: weights 1/4 and 1 → 20 % and 80 %.
    tp = touches((1, T - days(14), "a"), (1, T, "b"))
    result = attribute(tp, orders((1, 1, T, 500)), half_life_days=7)
    assert revenue(result, "time_decay") == {"a": 10_000, "b": 40_000}
    # Half-life 14: weights 1/2 and 1 → one third and two thirds.
    result = attribute(tp, orders((1, 1, T, 300)), half_life_days=14)
    assert revenue(result, "time_decay") == {"a": 10_000, "b": 20_000}


def test_one_touch_gets_everything_in_every_model():
    result = attribute(touches((1, T - days(2), "vk/cpc")), orders((1, 1, T, 250)))
    for model in MODELS:
        assert revenue(result, model) == {"vk/cpc": 25_000}, model
        assert result.by_channel.loc["vk/cpc", f"{model}_orders"] == 1


def test_two_touches_split_half_and_half_in_position_based():
    tp = touches((1, T - days(5), "a"), (1, T - days(1), "b"))
    result = attribute(tp, orders((1, 1, T, 100)))
    assert revenue(result, "position_based") == {"a": 5_000, "b": 5_000}
    assert revenue(result, "linear") == {"a": 5_000, "b": 5_000}
    assert revenue(result, "last_click") == {"b": 10_000}


def test_four_touches_position_based_spreads_the_middle():
    tp = touches(*[(1, T - days(d), ch) for d, ch in [(8, "a"), (6, "b"), (4, "c"), (2, "d")]])
    result = attribute(tp, orders((1, 1, T, 1000)))
    assert revenue(result, "position_based") == {
        "a": 40_000,
        "b": 10_000,
        "c": 10_000,
        "d": 40_000,
    }


def test_an_order_without_touches_is_direct_under_every_model():
    result = attribute(touches((2, T - days(1), "email")), orders((1, 1, T, 700)))
    for model in MODELS:
        assert revenue(result, model) == {DIRECT: 70_000}
    assert result.by_channel.loc[DIRECT, "linear_orders"] == 1
    assert result.by_campaign.loc[DIRECT, "linear_revenue"] == 70_000
    assert result.orders_with_touches == 0


def test_no_touchpoints_at_all():
    empty = touches()
    result = attribute(empty, orders((1, 1, T, 10), (2, 2, T, 20)))
    assert revenue(result, "time_decay") == {DIRECT: 3_000}


def test_a_touch_after_the_order_is_ignored():
    tp = touches((1, T - days(3), "a"), (1, T + days(1), "b"))
    result = attribute(tp, orders((1, 1, T, 100)))
    for model in MODELS:
        assert revenue(result, model) == {"a": 10_000}, model


def test_a_touch_at_the_orders_instant_counts():
    result = attribute(touches((1, T, "a")), orders((1, 1, T, 100)))
    assert revenue(result, "last_click") == {"a": 10_000}


def test_two_orders_split_the_customers_touches():
    # a, b before order 1; c, d between order 1 and order 2; e after order 2 (nobody's).
    tp = touches(
        (1, T - days(9), "a"),
        (1, T - days(8), "b"),
        (1, T - days(5), "c"),
        (1, T - days(2), "d"),
        (1, T + days(1), "e"),
    )
    result = attribute(tp, orders((1, 1, T - days(7), 100), (2, 1, T, 300)))
    assert revenue(result, "first_click") == {"a": 10_000, "c": 30_000}
    assert revenue(result, "last_click") == {"b": 10_000, "d": 30_000}
    assert revenue(result, "linear") == {"a": 5_000, "b": 5_000, "c": 15_000, "d": 15_000}
    assert result.touches_in_journeys == 4
    # Without the reset the second order sees all four earlier touches.
    result = attribute(tp, orders((1, 1, T - days(7), 100), (2, 1, T, 300)), reset_on_order=False)
    assert revenue(result, "first_click") == {"a": 40_000}


def test_the_lookback_window():
    tp = touches((1, T - days(31), "old"), (1, T - days(29), "recent"))
    result = attribute(tp, orders((1, 1, T, 100)))  # 30 days by default
    assert revenue(result, "first_click") == {"recent": 10_000}
    result = attribute(tp, orders((1, 1, T, 100)), lookback_days=None)
    assert revenue(result, "first_click") == {"old": 10_000}
    result = attribute(tp, orders((1, 1, T, 100)), lookback_days=7)
    assert revenue(result, "first_click") == {DIRECT: 10_000}


def test_orders_outside_the_period_bound_journeys_but_are_not_credited():
    tp = touches((1, T - days(9), "a"), (1, T - days(3), "b"))
    frame = orders((1, 1, T - days(5), 100), (2, 1, T, 300))
    frame["in_period"] = [False, True]
    result = attribute(tp, frame)
    assert revenue(result, "first_click") == {"b": 30_000}
    assert (result.orders, result.revenue) == (1, 30_000)
    assert "a" not in result.by_channel.index


def test_customers_do_not_share_touches():
    tp = touches((1, T - days(1), "a"), (2, T - days(1), "b"), (3, T - days(1), "c"))
    result = attribute(tp, orders((1, 2, T, 100), (2, 1, T, 200)))
    assert revenue(result, "last_click") == {"a": 20_000, "b": 10_000}


def test_per_campaign():
    tp = touches(
        (1, T - days(3), "email", "chain:7"),
        (1, T - days(1), "yandex/cpc", "spring"),
        (2, T - days(1), "yandex/cpc", "spring"),
    )
    result = attribute(tp, orders((1, 1, T, 100), (2, 2, T, 50)))
    assert revenue(result, "first_click", by="campaign") == {"chain:7": 10_000, "spring": 5_000}
    assert revenue(result, "last_click", by="campaign") == {"spring": 15_000}


def test_every_model_sums_to_the_total_exactly_on_random_journeys():
    rng = np.random.default_rng(13)
    n_touches, n_orders = 5_000, 1_500
    base = np.datetime64("2026-01-01T00:00:00")
    tp = pd.DataFrame(
        {
            "customer_id": rng.integers(1, 400, n_touches),
            "at": base + rng.integers(0, 90 * 86_400, n_touches).astype("timedelta64[s]"),
            "channel": rng.choice(["email", "sms", "push", "yandex/cpc", "vk/cpc"], n_touches),
            "campaign": rng.choice([f"c{i}" for i in range(37)], n_touches),
        }
    )
    amounts = rng.integers(1, 10_000_000, n_orders) / 100  # kopecks exact
    od = pd.DataFrame(
        {
            "order_id": np.arange(n_orders),
            "customer_id": rng.integers(1, 500, n_orders),
            "placed_at": base + rng.integers(0, 90 * 86_400, n_orders).astype("timedelta64[s]"),
            "amount": [Decimal(f"{a:.2f}") for a in amounts],
        }
    )
    result = attribute(tp, od, half_life_days=3)
    total = int(np.rint(amounts * 100).sum())
    assert result.revenue == total
    assert 0 < result.orders_with_touches < n_orders
    assert DIRECT in result.by_channel.index
    for frame in (result.by_channel, result.by_campaign):
        for model in MODELS:
            assert int(frame[f"{model}_revenue"].sum()) == total, model
            assert frame[f"{model}_orders"].sum() == pytest.approx(n_orders, abs=1e-6)


def test_against_a_per_journey_loop_on_random_data():
    """The vectorised slices equal a plain loop over each order's journey (time decay)."""
    rng = np.random.default_rng(7)
    base = np.datetime64("2026-01-01T00:00:00")
    tp = pd.DataFrame(
        {
            "customer_id": rng.integers(1, 30, 400),
            "at": base + rng.integers(0, 60 * 86_400, 400).astype("timedelta64[s]"),
            "channel": rng.choice(list("abcdef"), 400),
        }
    )
    tp["campaign"] = tp["channel"]
    od = pd.DataFrame(
        {
            "order_id": np.arange(120),
            "customer_id": rng.integers(1, 30, 120),
            "placed_at": base + rng.integers(0, 60 * 86_400, 120).astype("timedelta64[s]"),
            "amount": rng.integers(100, 5000, 120).astype(float),
        }
    )
    expected: dict[str, float] = {}
    for _, order in od.iterrows():
        mine = od[od.customer_id == order.customer_id]
        earlier = mine[
            (mine.placed_at < order.placed_at)
            | ((mine.placed_at == order.placed_at) & (mine.order_id < order.order_id))
        ]
        start = order.placed_at - pd.Timedelta(days=30)
        mine_tp = tp[tp.customer_id == order.customer_id]
        journey = mine_tp[(mine_tp["at"] <= order.placed_at) & (mine_tp["at"] >= start)]
        if len(earlier):
            journey = journey[journey["at"] > earlier.placed_at.max()]
        if journey.empty:
            expected[DIRECT] = expected.get(DIRECT, 0) + order.amount * 100
            continue
        age = (order.placed_at - journey["at"]).dt.total_seconds() / 86_400
        w = 2 ** (-age / 5)
        for channel, share in zip(journey.channel, w / w.sum(), strict=True):
            expected[channel] = expected.get(channel, 0) + share * order.amount * 100
    result = attribute(tp, od, half_life_days=5)
    got = result.by_channel["time_decay_revenue"]
    assert set(got.index) == set(expected)
    for channel, value in expected.items():
        assert got[channel] == pytest.approx(value, abs=1.0), channel


def test_clv_weighted_view_credits_the_first_touch_before_the_first_order():
    tp = touches(
        (1, T - days(40), "too-old"),  # outside the lookback of the first order
        (1, T - days(20), "vk/cpc"),
        (1, T - days(10), "email"),
        (1, T + days(5), "sms"),  # before the second order: not acquisition
        (2, T - days(3), "yandex/cpc"),
    )
    od = orders((1, 1, T, 100), (2, 1, T + days(10), 200), (3, 2, T, 50), (4, 3, T, 70))
    clv = pd.Series({1: 9000.0, 2: 1500.5})  # customer 3 has no score yet
    result = attribute(tp, od, clv=clv)
    view = result.clv_by_channel
    assert view.loc["vk/cpc", "customers"] == 1
    assert view.loc["vk/cpc", "predicted_clv"] == 9000.0
    assert view.loc["vk/cpc", "first_order_revenue"] == 10_000
    assert view.loc["yandex/cpc", "predicted_clv"] == 1500.5
    assert view.loc[DIRECT, "customers"] == 1
    assert view.loc[DIRECT, "customers_with_clv"] == 0
    assert "sms" not in view.index
    assert "email" not in view.index
    assert list(view.index) == ["vk/cpc", "yandex/cpc", DIRECT]  # by predicted CLV
    # A customer whose first order is older than the frame's is not acquired now.
    od["is_first"] = [False, False, True, True]
    view = attribute(tp, od, clv=clv).clv_by_channel
    assert "vk/cpc" not in view.index


def test_aware_times_and_bad_parameters():
    tp = touches((1, pd.Timestamp("2026-03-30 12:00", tz="Europe/Moscow"), "a"))
    od = orders((1, 1, pd.Timestamp("2026-03-30 10:00", tz="UTC"), 10))  # 13:00 in Moscow
    assert revenue(attribute(tp, od), "last_click") == {"a": 1_000}
    with pytest.raises(ValueError, match="half_life"):
        attribute(tp, od, half_life_days=0)
    with pytest.raises(ValueError, match="lookback"):
        attribute(tp, od, lookback_days=-1)


def test_largest_remainder_keeps_the_total():
    assert largest_remainder(np.array([1 / 3, 1 / 3, 1 / 3]) * 100, 100).tolist() == [34, 33, 33]
    assert largest_remainder(np.array([0.5, 0.5]), 1).sum() == 1
    assert largest_remainder(np.array([]), 0).tolist() == []


def test_two_orders_at_the_same_instant_the_lower_id_takes_the_journey():
    tp = touches((1, T - days(1), "a"))
    # Rows in reverse id order: order 5 (300 ₽) is read first, order 4 (100 ₽) second.
    result = attribute(tp, orders((5, 1, T, 300), (4, 1, T, 100)))
    assert revenue(result, "last_click") == {"a": 10_000, DIRECT: 30_000}
    result = attribute(tp, orders((4, 1, T, 100), (5, 1, T, 300)))
    assert revenue(result, "last_click") == {"a": 10_000, DIRECT: 30_000}
