"""The Russian production calendar: working days across the 2026 New Year and May holidays.

Expected dates are counted by hand on the calendar of the government decrees (2026: 1-11 January
off, 9 January moved from 3 January, 31 December moved from 4 January; 1, 9 and 11 May off;
2025: Saturday 1 November a working day, 3-4 November off, 31 December off).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from consent.calendar import add_working_days, is_working_day, working_days_between


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2025, 12, 30), True),  # Tuesday
        (date(2025, 12, 31), False),  # moved from 5 January 2025
        (date(2026, 1, 9), False),  # Friday, moved from Saturday 3 January
        (date(2026, 1, 12), True),  # the first working day of 2026
        (date(2026, 3, 9), False),  # Monday for 8 March (a Sunday)
        (date(2026, 4, 30), True),
        (date(2026, 5, 1), False),
        (date(2026, 5, 8), True),  # Friday between the May holidays works in 2026
        (date(2026, 5, 9), False),
        (date(2026, 5, 11), False),  # Monday for 9 May (a Saturday)
        (date(2026, 12, 31), False),  # Thursday, moved from Sunday 4 January
        (date(2025, 11, 1), True),  # a working Saturday
        (date(2025, 11, 3), False),  # its day off
        (date(2026, 11, 7), False),  # an ordinary Saturday
    ],
)
def test_is_working_day(day, working):
    assert is_working_day(day) is working


def test_new_year_holidays_2026_are_all_days_off():
    first = date(2026, 1, 1)
    assert [d for d in (first + timedelta(days=i) for i in range(11)) if is_working_day(d)] == []
    assert is_working_day(date(2026, 1, 12))


@pytest.mark.parametrize(
    ("received", "n", "due"),
    [
        # Received Monday 29.12.2025: 30.12 is working day 1, then 31.12-11.01 off.
        (date(2025, 12, 29), 1, date(2025, 12, 30)),
        (date(2025, 12, 29), 2, date(2026, 1, 12)),
        # 30.12, 12-16.01, 19-22.01: access request (10 working days).
        (date(2025, 12, 29), 10, date(2026, 1, 22)),
        # Rectification (7): 30.12, 12-16.01, 19.01.
        (date(2025, 12, 29), 7, date(2026, 1, 19)),
        # Received on a holiday: the day of receipt never counts; 12-16.01, 19-23.01.
        (date(2026, 1, 3), 10, date(2026, 1, 23)),
        # Received on the last working day of the year: 12-16.01, 19-23.01.
        (date(2025, 12, 30), 10, date(2026, 1, 23)),
        # Received Thursday 30.04.2026: 1-3.05 off, 4-8.05, 9-11.05 off, 12-15.05, 18.05.
        (date(2026, 4, 30), 5, date(2026, 5, 8)),
        (date(2026, 4, 30), 6, date(2026, 5, 12)),
        (date(2026, 4, 30), 7, date(2026, 5, 13)),
        (date(2026, 4, 30), 10, date(2026, 5, 18)),
        # Received Friday 8.05.2026 (working): 9-11.05 off, 12-15.05, 18-22.05, 25.05.
        (date(2026, 5, 8), 10, date(2026, 5, 25)),
        # 23.02.2026 and 9.03.2026 (for 8 March) are Mondays off.
        (date(2026, 2, 20), 1, date(2026, 2, 24)),
        (date(2026, 3, 6), 1, date(2026, 3, 10)),
        # The working Saturday 1.11.2025 counts; 3-4.11 do not.
        (date(2025, 10, 31), 1, date(2025, 11, 1)),
        (date(2025, 10, 31), 2, date(2025, 11, 5)),
        # Across the end of 2026: 28-30.12, 31.12 off, 1-10.01.2027 off, 11-15.01, 18-19.01.
        (date(2026, 12, 25), 10, date(2027, 1, 19)),
    ],
)
def test_add_working_days(received, n, due):
    assert add_working_days(received, n) == due


def test_add_working_days_needs_a_positive_count():
    with pytest.raises(ValueError, match="at least 1"):
        add_working_days(date(2026, 1, 12), 0)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (date(2026, 1, 22), date(2026, 1, 22), 0),
        (date(2026, 1, 12), date(2026, 1, 22), 8),  # 13-16, 19-22
        (date(2025, 12, 30), date(2026, 1, 12), 1),  # only 12.01
        (date(2026, 1, 22), date(2026, 1, 23), 1),
        (date(2026, 1, 23), date(2026, 1, 22), -1),  # one working day late
        (date(2026, 1, 24), date(2026, 1, 23), 0),  # a Saturday after a Friday due date
        (date(2026, 4, 30), date(2026, 5, 18), 10),
    ],
)
def test_working_days_between(start, end, days):
    assert working_days_between(start, end) == days
