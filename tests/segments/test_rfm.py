"""RFM on a hand-computed table; the tie rule against SQLite's NTILE; input-order invariance."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segments import rfm

AS_OF = "2024-03-31"

# customer, placed_at, amount
ROWS = [
    (10, "2024-03-01 12:00", 50.0),
    (10, "2024-03-30 23:59", 100.0),
    (20, "2024-03-31 22:00", 300.0),  # on the as_of day: counted, recency 0
    (30, "2024-01-31 09:00", 20.0),
    (30, "2024-02-15 09:00", 20.0),
    (30, "2024-03-15 09:00", 20.0),
    (40, "2023-12-01 10:00", 500.0),
    (40, "2023-12-02 10:00", 500.0),
    (50, "2024-03-15 18:00", 10.0),
    (60, "2023-06-01 10:00", 75.0),
    (60, "2024-04-02 10:00", 999.0),  # after as_of: ignored
    (70, "2024-04-05 10:00", 42.0),  # only after as_of: not a customer yet
]

# Worked by hand (module docstring rules). Six customers into five tiles: the first tile gets
# two, the others one.
#   R orders recency desc, ties by id: 60(304) 40(120) 30(16) 50(16) 10(1) 20(0)
#      -> 60:1 40:1 30:2 50:3 10:4 20:5
#   F orders frequency asc, ties by id: 20(1) 50(1) 60(1) 10(2) 40(2) 30(3)
#      -> 20:1 50:1 60:2 10:3 40:4 30:5
#   M orders total asc: 50(10) 30(60) 60(75) 10(150) 20(300) 40(1000)
#      -> 50:1 30:1 60:2 10:3 20:4 40:5
#   FM = round-half-up((F + M) / 2)
EXPECTED = pd.DataFrame(
    {
        "recency_days": [1, 0, 16, 120, 16, 304],
        "frequency": [2, 1, 3, 2, 1, 1],
        "monetary": [150.0, 300.0, 60.0, 1000.0, 10.0, 75.0],
        "r_score": [4, 5, 2, 1, 3, 1],
        "f_score": [3, 1, 5, 4, 1, 2],
        "m_score": [3, 4, 1, 5, 1, 2],
        "fm_score": [3, 3, 3, 5, 1, 2],
        "rfm_code": [433, 514, 251, 145, 311, 122],
        "segment": [
            rfm.POTENTIAL_LOYALIST,
            rfm.POTENTIAL_LOYALIST,
            rfm.AT_RISK,
            rfm.CANT_LOSE_THEM,
            rfm.ABOUT_TO_SLEEP,
            rfm.LOST,
        ],
    },
    index=pd.Index([10, 20, 30, 40, 50, 60], name="customer_id"),
)


def _frame(rows=ROWS) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "placed_at", "amount"])
    frame["placed_at"] = pd.to_datetime(frame["placed_at"])
    return frame


def _check(table: pd.DataFrame) -> None:
    assert list(table.columns) == list(rfm.COLUMNS)
    got = table[list(EXPECTED.columns)].astype({"segment": str})
    want = EXPECTED.astype({"segment": str})
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_index_type=False)


def test_hand_computed_table():
    table = rfm.rfm_table(_frame(), as_of=AS_OF)
    _check(table)
    assert table.loc[10, "last_purchase"] == np.datetime64("2024-03-30")


def test_string_ids_and_sparse_integer_ids_give_the_same_table():
    frame = _frame()
    sparse = frame.assign(customer_id=frame["customer_id"] * 10**12)
    table = rfm.rfm_table(sparse, as_of=AS_OF)
    table.index = table.index // 10**12
    _check(table)
    # Zero-padded strings sort like the numbers, so the tie order is the same.
    text = frame.assign(customer_id=frame["customer_id"].map("{:04d}".format))
    table = rfm.rfm_table(text, as_of=AS_OF)
    table.index = table.index.astype(int)
    _check(table)


def test_time_zone_aware_timestamps_use_the_local_calendar_day():
    frame = pd.DataFrame(
        {
            "customer_id": [1, 1, 2],
            "placed_at": pd.to_datetime(
                [
                    "2024-03-31T23:30:00+03:00",
                    "2024-04-01T00:30:00+03:00",
                    "2024-03-01T01:00:00+03:00",
                ]
            ).tz_convert("Europe/Moscow"),
            "amount": [10.0, 99.0, 5.0],
        }
    )
    table = rfm.rfm_table(frame, as_of="2024-03-31")
    # 23:30 local on the 31st counts (it is 20:30 UTC); 00:30 local on the 1st does not.
    assert table.loc[1, "frequency"] == 1
    assert table.loc[1, "monetary"] == 10.0
    assert table.loc[1, "recency_days"] == 0
    assert table.loc[2, "recency_days"] == 30


def test_segment_grid_names_every_cell_once_and_uses_every_name():
    names = [name for row in rfm.SEGMENT_GRID for name in row]
    assert len(rfm.SEGMENT_GRID) == 5
    assert all(len(row) == 5 for row in rfm.SEGMENT_GRID)
    assert set(names) == set(rfm.SEGMENTS)
    assert len(rfm.SEGMENTS) == 11
    r, fm = np.meshgrid(np.arange(1, 6), np.arange(1, 6), indexing="ij")
    cats = rfm.segment_names(r.ravel(), fm.ravel())
    assert list(cats.astype(str)) == names


@pytest.mark.parametrize(
    ("r", "fm", "name"),
    [
        (5, 5, rfm.CHAMPIONS),
        (5, 4, rfm.CHAMPIONS),
        (4, 5, rfm.LOYAL),
        (3, 4, rfm.LOYAL),
        (5, 2, rfm.POTENTIAL_LOYALIST),
        (4, 3, rfm.POTENTIAL_LOYALIST),
        (5, 1, rfm.NEW),
        (4, 1, rfm.PROMISING),
        (3, 3, rfm.NEED_ATTENTION),
        (3, 1, rfm.ABOUT_TO_SLEEP),
        (3, 2, rfm.ABOUT_TO_SLEEP),
        (2, 3, rfm.AT_RISK),
        (1, 4, rfm.AT_RISK),
        (1, 5, rfm.CANT_LOSE_THEM),
        (2, 5, rfm.CANT_LOSE_THEM),
        (2, 1, rfm.HIBERNATING),
        (2, 2, rfm.HIBERNATING),
        (1, 1, rfm.LOST),
        (1, 2, rfm.LOST),
    ],
)
def test_documented_cells(r, fm, name):
    assert rfm.segment_names([r], [fm])[0] == name


def test_empty_and_after_as_of_only():
    frame = _frame([(1, "2024-05-01", 10.0)])
    table = rfm.rfm_table(frame, as_of=AS_OF)
    assert table.empty
    assert list(table.columns) == list(rfm.COLUMNS)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=60),
    st.randoms(use_true_random=False),
)
def test_quintiles_equal_sqlite_ntile(values, random):
    """The tie rule is SQL's NTILE(5) OVER (ORDER BY value, customer_id)."""
    ids = list(range(len(values)))
    random.shuffle(ids)
    order = np.argsort(ids)  # present the customers in id order, as rfm_table does
    scores = rfm.quintile_scores(np.asarray(values)[order])
    ours = dict(zip(np.asarray(ids)[order].tolist(), scores.tolist(), strict=True))
    with sqlite3.connect(":memory:") as db:
        db.execute("create table t (id integer, v integer)")
        db.executemany("insert into t values (?, ?)", list(zip(ids, values, strict=True)))
        theirs = dict(db.execute("select id, ntile(5) over (order by v, id) from t").fetchall())
    assert ours == theirs


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False))
def test_input_order_does_not_matter(random):
    rows = list(ROWS)
    random.shuffle(rows)
    _check(rfm.rfm_table(_frame(rows), as_of=AS_OF))


def test_scores_are_balanced_quintiles_on_distinct_values():
    rng = np.random.default_rng(7)
    n = 1003
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "placed_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.permutation(n), "D"),
            "amount": rng.permutation(n).astype(float),
        }
    )
    table = rfm.rfm_table(frame, as_of="2027-01-01")
    # 1003 = 5 * 200 + 3: the first three tiles get 201.
    assert table["m_score"].value_counts().sort_index().tolist() == [201, 201, 201, 200, 200]
    assert table["r_score"].value_counts().sort_index().tolist() == [201, 201, 201, 200, 200]
    # Higher spend never scores lower.
    ordered = table.sort_values("monetary")
    assert ordered["m_score"].is_monotonic_increasing
