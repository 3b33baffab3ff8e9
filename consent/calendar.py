"""The Russian production calendar: working days for the deadlines of data-subject requests.

Holidays, the days off they are moved to and the Saturdays made working days by the
government's yearly decree come from the ``holidays`` package (``holidays.RU``), which carries
each published decree (e.g. 2026: 1-11 January off, 9 January moved from 3 January; 31 December
moved from 4 January; 2025: Saturday 1 November a working day).

For a year whose decree the installed package does not know yet, only the fixed holidays of the
Labour Code (art. 112) are days off, so a deadline falls no later than the real one: early, never
late. Keep the package current (a new decree is out each autumn).

Pure functions over dates, no Django: testable alone.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays


@lru_cache(maxsize=64)
def _calendar(year: int) -> holidays.HolidayBase:
    return holidays.RU(years=year)


def is_working_day(day: date) -> bool:
    """A working day on the Russian production calendar (weekends and holidays are not, a
    Saturday made working by decree is)."""
    return _calendar(day.year).is_working_day(day)


def add_working_days(start: date, n: int) -> date:
    """The ``n``-th working day after ``start``.

    The day of receipt does not count, whether or not it is a working day: a request received on
    Monday 29 December 2025 with 1 working day is due on Tuesday the 30th.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    day = start
    left = n
    while left:
        day += timedelta(days=1)
        if is_working_day(day):
            left -= 1
    return day


def working_days_between(start: date, end: date) -> int:
    """Working days in ``(start, end]``; negative, counting ``(end, start]``, when ``end`` is
    before ``start``. The working days left until a due date: ``working_days_between(today,
    due)`` (0 on the due date itself; -1 the next working day after it)."""
    if end == start:
        return 0
    sign, lo, hi = (1, start, end) if end > start else (-1, end, start)
    count = 0
    day = lo
    while day < hi:
        day += timedelta(days=1)
        count += is_working_day(day)
    return sign * count
