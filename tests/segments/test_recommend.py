"""segments.recommend on hand-computed tables: co-purchase ranks, what is excluded, the best-seller
fill, the cap, empty inputs and ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segments.recommend import (
    BEST_SELLER,
    CO_PURCHASE,
    RESULT_COLUMNS,
    product_catalog,
    recommend,
)

NOW = pd.Timestamp("2026-06-01")


def lines(rows: list[tuple], *, days_ago: float = 10) -> pd.DataFrame:
    """(order, customer, product[, qty[, days before NOW]]) rows as order lines."""
    out = []
    for row in rows:
        order, customer, product, qty, ago = (*row, 1, days_ago)[:5]
        out.append(
            {
                "order_id": order,
                "customer_id": customer,
                "placed_at": NOW - pd.Timedelta(days=ago),
                "product": product,
                "qty": qty,
            }
        )
    return pd.DataFrame(out, columns=["order_id", "customer_id", "placed_at", "product", "qty"])


def picks(result: pd.DataFrame, customer: int) -> list[tuple[str, int, str]]:
    rows = result[result["customer_id"] == customer]
    assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
    return list(zip(rows["product"], rows["score"], rows["source"], strict=True))


# Orders (customer: products):
#   1 (c1): A B      2 (c2): A B      3 (c3): A C     4 (c4): B C
#   5 (c5): A B D    6 (c6): E        7 (c6): E
# Pairs (orders holding both): AB 3, AC 1, AD 1, BC 1, BD 1.
BASE = [
    (1, 1, "A"), (1, 1, "B"),
    (2, 2, "A"), (2, 2, "B"),
    (3, 3, "A"), (3, 3, "C"),
    (4, 4, "B"), (4, 4, "C"),
    (5, 5, "A"), (5, 5, "B"), (5, 5, "D"),
    (6, 6, "E"), (7, 6, "E"),
]  # fmt: skip


def test_co_purchase_scores_sum_over_the_persons_products_and_rank_them():
    result = recommend(lines(BASE), now=NOW, n=5)
    assert list(result.columns) == list(RESULT_COLUMNS)
    # c3 owns A, C: B = AB 3 + BC 1 = 4, D = AD 1; then best sellers not owned: E.
    assert picks(result, 3) == [("B", 4, CO_PURCHASE), ("D", 1, CO_PURCHASE), ("E", 0, BEST_SELLER)]
    # c4 owns B, C: A = AB 3 + AC 1 = 4, D = BD 1.
    assert picks(result, 4)[:2] == [("A", 4, CO_PURCHASE), ("D", 1, CO_PURCHASE)]
    # c1 owns A, B: C = AC 1 + BC 1 = 2, D = AD 1 + BD 1 = 2: a tie, broken by best sellers
    # (quantity in 90 days: A 4, B 4, C 2, D 1, E 2; C before D).
    assert picks(result, 1)[:2] == [("C", 2, CO_PURCHASE), ("D", 2, CO_PURCHASE)]


def test_what_the_person_has_is_never_recommended():
    result = recommend(lines(BASE), now=NOW, n=5)
    for customer, owned in {1: "AB", 3: "AC", 5: "ABD", 6: "E"}.items():
        assert not set(result[result["customer_id"] == customer]["product"]) & set(owned)
    # c5 owns A, B, D: C (AC 1 + BC 1) is the only co-purchase; E fills.
    assert picks(result, 5) == [("C", 2, CO_PURCHASE), ("E", 0, BEST_SELLER)]


def test_best_sellers_of_the_window_by_quantity_fill_the_rest():
    rows = [
        (1, 1, "A", 1, 5), (1, 1, "B", 1, 5),
        (2, 2, "C", 7, 5),  # C: quantity 7 in one order
        (3, 3, "D", 1, 5), (4, 4, "D", 1, 5), (5, 5, "D", 1, 5),  # D: 3 orders, quantity 3
        (6, 6, "OLD", 50, 200),  # sold 200 days ago only: never a best seller
    ]  # fmt: skip
    result = recommend(lines(rows), customers=[1, 2, 99], now=NOW, n=3)
    # A stranger (no orders) gets the best sellers by quantity: C 7, D 3, then A and B (1 each,
    # one order each: by id).
    assert picks(result, 99) == [
        ("C", 0, BEST_SELLER),
        ("D", 0, BEST_SELLER),
        ("A", 0, BEST_SELLER),
    ]
    # c1 (A B) has no co-purchase outside A B: best sellers without A and B.
    assert [p for p, _, _ in picks(result, 1)] == ["C", "D"]
    assert "OLD" not in set(result["product"])
    # Only the customers asked for.
    assert set(result["customer_id"]) == {1, 2, 99}


def test_at_most_n_and_the_fill_skips_what_co_purchase_gave():
    result = recommend(lines(BASE), now=NOW, n=1)
    assert result.groupby("customer_id").size().max() == 1
    assert picks(result, 3) == [("B", 4, CO_PURCHASE)]
    wide = recommend(lines(BASE), now=NOW, n=10)
    # c3: B, D by co-purchase, then E (the only best seller left): no duplicates.
    assert [p for p, _, _ in picks(wide, 3)] == ["B", "D", "E"]
    assert not wide.duplicated(["customer_id", "product"]).any()


def test_a_customer_who_owns_most_best_sellers_still_gets_the_next_ones():
    # 30 products sold in decreasing quantities; customer 1 owns the 25 best.
    rows = [(100 + k, 50, f"P{k:02d}", 100 - k) for k in range(30)]
    rows += [(200 + k, 1, f"P{k:02d}") for k in range(25)]
    result = recommend(lines(rows), customers=[1], now=NOW, n=3)
    assert [p for p, _, _ in picks(result, 1)] == ["P25", "P26", "P27"]


def test_quantities_and_repeated_lines_do_not_inflate_co_purchase_counts():
    rows = [(1, 1, "A", 3), (1, 1, "A"), (1, 1, "B", 9), (2, 2, "A")]
    result = recommend(lines(rows), now=NOW, n=2)
    assert picks(result, 2)[0] == ("B", 1, CO_PURCHASE)  # one order holds A and B


def test_lines_after_now_are_not_seen():
    rows = [(1, 1, "A", 1, 5), (2, 1, "B", 1, -1), (2, 2, "B", 1, -1), (2, 2, "A", 1, -1)]
    result = recommend(lines(rows), customers=[1], now=NOW, n=3)
    assert picks(result, 1) == []  # B was sold after NOW; A is owned


def test_empty_inputs():
    empty = lines([])
    assert recommend(empty, now=NOW).empty
    assert list(recommend(empty, customers=[1, 2], now=NOW).columns) == list(RESULT_COLUMNS)
    assert recommend(lines(BASE), customers=[], now=NOW).empty
    blank = lines([(1, 1, ""), (1, 1, None)])
    assert recommend(blank, customers=[1], now=NOW).empty
    with pytest.raises(ValueError, match="n must"):
        recommend(lines(BASE), n=0)
    with pytest.raises(ValueError, match="lack the columns"):
        recommend(pd.DataFrame({"order_id": [1]}))


def test_ties_are_deterministic_whatever_the_row_order():
    # Every pair once: every co-purchase score ties; equal quantities: ties by order count,
    # then by product id.
    rows = [(k, k, p) for k, p in enumerate("DCBA")]
    rows += [(10, 9, "A"), (10, 9, "B"), (10, 9, "C"), (10, 9, "D")]
    rows += [(11, 8, "A")]
    data = lines(rows)
    first = recommend(data, customers=[1, 8, 42], now=NOW, n=3)
    for seed in range(5):
        shuffled = data.sample(frac=1, random_state=seed)
        again = recommend(shuffled, customers=[42, 8, 1], now=NOW, n=3)
        pd.testing.assert_frame_equal(first.reset_index(drop=True), again.reset_index(drop=True))
    # c8 owns A: B, C, D each co-purchased once with A; best-seller order A(3 orders) then B, C,
    # D (2 orders each, by id).
    assert [p for p, _, _ in picks(first, 8)] == ["B", "C", "D"]
    assert [p for p, _, _ in picks(first, 42)] == ["A", "B", "C"]


def test_neighbour_lists_are_cut_to_the_most_co_purchased():
    # X was bought with Y in 3 orders and with Z once; with one neighbour, Z is not X's.
    rows = [(k, 10 + k, p) for k in range(3) for p in ("X", "Y")]
    rows += [(5, 20, "X"), (5, 20, "Z"), (6, 1, "X")]
    full = recommend(lines(rows), customers=[1], now=NOW, n=2)
    cut = recommend(lines(rows), customers=[1], now=NOW, n=2, neighbours=1)
    assert picks(full, 1) == [("Y", 3, CO_PURCHASE), ("Z", 1, CO_PURCHASE)]
    assert picks(cut, 1) == [("Y", 3, CO_PURCHASE), ("Z", 0, BEST_SELLER)]


def test_a_hundred_thousand_customers_in_seconds():
    rng = np.random.default_rng(7)
    orders = rng.integers(0, 40_000, 100_000)
    data = pd.DataFrame(
        {
            "order_id": orders,
            "customer_id": orders % 10_000,
            "placed_at": NOW - pd.to_timedelta(rng.integers(1, 400, len(orders)), unit="D"),
            "product": rng.integers(0, 500, len(orders)),
            "qty": 1,
        }
    )
    result = recommend(data, customers=np.arange(12_000), now=NOW, n=5)
    assert result.groupby("customer_id").size().max() == 5
    assert set(result["customer_id"]) == set(range(12_000))  # new customers get best sellers
    assert not result.duplicated(["customer_id", "product"]).any()
    owned = set(zip(data["customer_id"], data["product"].astype(str), strict=True))
    assert not owned & set(zip(result["customer_id"], result["product"], strict=True))


def test_catalog_takes_the_latest_name_and_price():
    data = pd.DataFrame(
        {
            "product": ["A", "A", "A", "B", "C", "C"],
            "placed_at": pd.to_datetime(
                ["2026-01-01", "2026-03-01", "2026-02-01", "2026-01-01", "2026-01-01", "2026-01-01"]
            ),
            "order_id": [1, 3, 2, 1, 5, 5],
            "name": ["Old", "New", "Middle", None, "Кружка", "Чашка"],
            "price": [10.0, None, 12.5, 3.0, 7.0, 9.0],
        }
    )
    catalog = product_catalog(data)
    assert catalog.loc["A", "name"] == "New"
    assert catalog.loc["A", "price"] == 12.5  # the latest line with a price
    assert catalog.loc["B", "name"] is None
    # Twice in one order: the greater value.
    assert (catalog.loc["C", "name"], catalog.loc["C", "price"]) == ("Чашка", 9.0)


def test_without_co_purchase_only_best_sellers_not_owned():
    result = recommend(lines(BASE), now=NOW, n=5, co_purchase=False)
    assert set(result["source"]) == {BEST_SELLER}
    # Quantities: A 4, B 4 (4 orders each: by id), C 2, E 2 (C 2 orders, E 2: by id), D 1.
    assert [p for p, _, _ in picks(result, 3)] == ["B", "E", "D"]


def test_customers_scored_in_blocks_get_what_they_get_at_once(monkeypatch):
    from segments import recommend as module

    rng = np.random.default_rng(3)
    orders = rng.integers(0, 3000, 12_000)
    data = pd.DataFrame(
        {
            "order_id": orders,
            "customer_id": orders % 700,
            "placed_at": NOW - pd.to_timedelta(rng.integers(1, 200, len(orders)), unit="D"),
            "product": rng.integers(0, 120, len(orders)),
            "qty": 1,
        }
    )
    whole = recommend(data, customers=np.arange(800), now=NOW, n=4)
    monkeypatch.setattr(module, "BLOCK_CANDIDATES", 500)  # dozens of blocks
    blocks = recommend(data, customers=np.arange(800), now=NOW, n=4)
    pd.testing.assert_frame_equal(whole, blocks)
    assert set(whole["source"]) == {CO_PURCHASE, BEST_SELLER}
