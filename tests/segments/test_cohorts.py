"""Monthly cohorts on a hand-computed table."""

from __future__ import annotations

import pandas as pd

from segments import cohorts

ROWS = [
    ("A", "2024-01-05", 100.0),
    ("A", "2024-01-25", 20.0),
    ("A", "2024-03-02", 50.0),
    ("B", "2024-01-31", 200.0),
    ("B", "2024-02-01", 40.0),
    ("C", "2024-02-10", 70.0),
    ("C", "2024-04-30", 30.0),
    ("D", "2024-02-28", 10.0),
    ("E", "2024-05-03", 99.0),  # after as_of in the first test
]

# Worked by hand. January cohort: A and B; February cohort: C and D; as of 2024-04-30.
#   Jan m0: A, B active; 100 + 20 + 200 = 320; 320 / 2 = 160
#   Jan m1: B; 40; (320 + 40) / 2 = 180      Jan m2: A; 50; 410 / 2 = 205
#   Jan m3: nobody; 0; 205
#   Feb m0: C, D; 70 + 10 = 80; 40            Feb m1: nobody; 0; 40
#   Feb m2: C; 30; 110 / 2 = 55
EXPECTED = pd.DataFrame(
    {
        "cohort": ["2024-01"] * 4 + ["2024-02"] * 3,
        "month": [0, 1, 2, 3, 0, 1, 2],
        "customers": [2] * 7,
        "active": [2, 1, 1, 0, 2, 0, 1],
        "retention_pct": [100.0, 50.0, 50.0, 0.0, 100.0, 0.0, 50.0],
        "revenue": [320.0, 40.0, 50.0, 0.0, 80.0, 0.0, 30.0],
        "cumulative_revenue_per_customer": [160.0, 180.0, 205.0, 205.0, 40.0, 40.0, 55.0],
    }
)


def _frame(rows=ROWS) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "placed_at", "amount"])
    frame["placed_at"] = pd.to_datetime(frame["placed_at"])
    return frame


def test_hand_computed_cohorts():
    table = cohorts.cohort_table(_frame(), as_of="2024-04-30")
    assert list(table.columns) == list(cohorts.COLUMNS)
    pd.testing.assert_frame_equal(table, EXPECTED, check_dtype=False)


def test_triangle():
    triangle = cohorts.cohort_triangle(cohorts.cohort_table(_frame(), as_of="2024-04-30"))
    assert triangle.loc["2024-01"].tolist() == [100.0, 50.0, 50.0, 0.0]
    assert triangle.loc["2024-02"].tolist()[:3] == [100.0, 0.0, 50.0]
    assert pd.isna(triangle.loc["2024-02", 3])


def test_without_as_of_runs_to_the_last_month_of_the_data():
    table = cohorts.cohort_table(_frame())
    may = table[table["cohort"] == "2024-05"]
    assert may[["month", "customers", "active", "revenue"]].values.tolist() == [[0, 1, 1, 99.0]]
    assert table[table["cohort"] == "2024-01"]["month"].max() == 4


def test_row_order_and_time_zones_do_not_matter():
    frame = _frame().sample(frac=1.0, random_state=3)
    frame["placed_at"] = frame["placed_at"].dt.tz_localize("Europe/Moscow")
    table = cohorts.cohort_table(frame, as_of="2024-04-30")
    pd.testing.assert_frame_equal(table, EXPECTED, check_dtype=False)


def test_empty():
    table = cohorts.cohort_table(_frame(), as_of="2023-12-31")
    assert table.empty
    assert list(table.columns) == list(cohorts.COLUMNS)


def test_hashed_distinct_pairs_give_the_same_table(monkeypatch):
    """Past the bitmap size limit, distinct (customer, month) pairs are hashed instead."""
    monkeypatch.setattr(cohorts, "_MAX_MARK_CELLS", 0)
    table = cohorts.cohort_table(_frame(), as_of="2024-04-30")
    pd.testing.assert_frame_equal(table, EXPECTED, check_dtype=False)
