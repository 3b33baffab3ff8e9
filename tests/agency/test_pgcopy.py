"""The one COPY helper: typed columns through a temporary table and back (PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.db import connection, transaction

from agency import pgcopy

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL COPY"),
]

COLUMNS = ("id", "n", "s", "x", "amount", "name", "flag", "at")
AT = [
    dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.UTC),
    dt.datetime(1999, 12, 31, 23, 59, tzinfo=dt.UTC),  # before PostgreSQL's epoch: negative
    dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
]


def _micros_since_2000(values: list[dt.datetime]) -> np.ndarray:
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return np.array([(v - epoch) // dt.timedelta(microseconds=1) for v in values])


def _typed_table(cursor) -> None:
    cursor.execute(
        "CREATE TEMPORARY TABLE pgcopy_typed (id bigint PRIMARY KEY, n integer, s smallint, "
        "x double precision, amount numeric(14, 2), name text, flag boolean, at timestamptz)"
    )


def test_binary_round_trip_of_typed_columns():
    fields = [
        pgcopy.fixed(np.array([3, 1, 2]), ">i8"),
        pgcopy.fixed(np.array([-2_000_000_000, np.nan, 7.0]), ">i4"),
        pgcopy.fixed(pd.array([None, -3, 32767], dtype="Int16"), ">i2"),
        pgcopy.fixed(np.array([0.1, -1e300, np.nan]), ">f8"),
        pgcopy.numeric_2([-5.555, 999_999_999_999.99, np.nan]),
        pgcopy.text(pd.Series(["Иван", None, 'tab\there, "quoted"\nline'])),
        pgcopy.fixed(np.array([True, False, True]), "u1"),
        pgcopy.fixed(_micros_since_2000(AT), ">i8"),
    ]
    with connection.cursor() as cursor:
        _typed_table(cursor)
        pgcopy.copy_in_fields(cursor, "pgcopy_typed", COLUMNS, fields, rows_per_chunk=2)
        cursor.execute("SELECT id, n, s, x, amount, name, flag, at FROM pgcopy_typed ORDER BY id")
        rows = cursor.fetchall()
    assert rows == [
        (1, None, -3, -1e300, Decimal("999999999999.99"), "", False, AT[1]),
        (2, 7, 32767, None, None, 'tab\there, "quoted"\nline', True, AT[2]),
        (3, -2_000_000_000, None, 0.1, Decimal("-5.56"), "Иван", True, AT[0]),
    ]

    # Back as whole-column binary arrays, views of the received bytes.
    (row,) = pgcopy.copy_out_binary(
        "SELECT array_agg(id ORDER BY id), array_agg(at ORDER BY id), count(*), NULL::int "
        "FROM pgcopy_typed WHERE id > %s",
        [0],
    )
    assert pgcopy.array_values(row[0], "i8").tolist() == [1, 2, 3]
    assert (pgcopy.array_values(row[1], "i8") + pgcopy.PG_EPOCH_US).tolist() == [
        int(v.timestamp()) * 1_000_000 + v.microsecond for v in (AT[1], AT[2], AT[0])
    ]
    assert int.from_bytes(row[2], "big") == 3
    assert row[3] is None
    (empty,) = pgcopy.copy_out_binary("SELECT array_agg(id) FROM pgcopy_typed WHERE id < 0", [])
    assert len(pgcopy.array_values(empty[0], "i8")) == 0


def test_numeric_2_of_wider_columns():
    """numeric(18, 2): a sum of orders beyond what one order may be (CustomerScore.monetary)."""
    values = [1_999_999_999_999.98, -12.5, 12_345_678_901_234.5, 0.01, np.nan]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE pgcopy_wide (id bigint, amount numeric(18, 2))")
        pgcopy.copy_in_fields(
            cursor,
            "pgcopy_wide",
            ["id", "amount"],
            [pgcopy.fixed(np.arange(5), ">i8"), pgcopy.numeric_2(values, max_digits=18)],
        )
        cursor.execute("SELECT amount FROM pgcopy_wide ORDER BY id")
        got = [row[0] for row in cursor.fetchall()]
    assert got == [
        Decimal("1999999999999.98"),
        Decimal("-12.50"),
        Decimal("12345678901234.50"),
        Decimal("0.01"),
        None,
    ]


def test_binary_refusals():
    with pytest.raises(ValueError, match="fit numeric"):
        pgcopy.numeric_2([1e12])
    with pytest.raises(ValueError, match="fit numeric"):
        pgcopy.numeric_2([np.inf])
    with pytest.raises(ValueError, match=r"fit numeric\(18, 2\)"):
        pgcopy.numeric_2([1e16], max_digits=18)
    with pytest.raises(ValueError, match="header"):
        pgcopy.binary_rows(memoryview(b"COPY\n" + bytes(20)))
    with connection.cursor() as cursor:
        with pytest.raises(ValueError, match="2 columns but 1 fields"):
            pgcopy.copy_in_fields(cursor, "t", ["a", "b"], [pgcopy.fixed(np.arange(2), ">i8")])
        with pytest.raises(ValueError, match="format"):
            with pgcopy.copy_in(cursor, "t", ["a"], format="json"):
                pass


def test_text_and_csv_formats_quote_names_and_escape_values():
    with connection.cursor() as cursor:
        # Reserved words as column names: quoted by the helper.
        cursor.execute('CREATE TEMPORARY TABLE pgcopy_words ("position" int, "values" text)')
        with pgcopy.copy_in(cursor, "pgcopy_words", ["position", "values"]) as copy:
            copy.write_row([1, "a\tb\\c\nd"])
            copy.write_row([2, None])
        with pgcopy.copy_in(cursor, "pgcopy_words", ["position", "values"], format="csv") as copy:
            copy.write(b'3,"x,""y"""\n4,\n5,""\n')
        cursor.execute('SELECT "position", "values" FROM pgcopy_words ORDER BY 1')
        assert cursor.fetchall() == [
            (1, "a\tb\\c\nd"),
            (2, None),
            (3, 'x,"y"'),
            (4, None),  # CSV: unquoted empty is NULL
            (5, ""),
        ]


def _copy_then_fail(cursor) -> None:
    with transaction.atomic():
        with pgcopy.copy_in(cursor, "pgcopy_typed", ["id"], format="binary") as copy:
            copy.write(next(pgcopy.row_blocks([pgcopy.fixed(np.arange(3), ">i8")])))
            raise RuntimeError("stop")


def test_an_error_inside_the_block_aborts_the_copy():
    with connection.cursor() as cursor:
        _typed_table(cursor)
        with pytest.raises(RuntimeError, match="stop"):
            _copy_then_fail(cursor)
        cursor.execute("SELECT count(*) FROM pgcopy_typed")
        assert cursor.fetchone() == (0,)
