"""PostgreSQL ``COPY``, in one place: opening it on the driver's cursor, and the binary format.

- :func:`copy_in`: ``COPY table (columns) FROM STDIN`` in text, CSV or binary format on the
  psycopg cursor under Django's wrapper; the caller writes bytes (``copy.write``) or rows that
  psycopg escapes in C (``copy.write_row``, text format). In binary format the stream's header
  and trailer are written here, the caller writes only rows.
- Binary rows built by numpy, whole columns at a time (no Python work per row): a column is a
  :class:`Field` made by :func:`fixed` (integers, floats, booleans, timestamps as microseconds
  since :data:`PG_EPOCH_US`), :func:`numeric_2` (``numeric(p, 2)``), :func:`text` or
  :func:`jsonb`; :func:`copy_in_fields` writes equal-length fields into a table.
- :func:`copy_out_binary`: the rows of ``COPY (query) TO STDOUT (FORMAT binary)`` as raw field
  values, meant for a few rows of whole-column arrays (``array_agg``) decoded by
  :func:`array_items` / :func:`array_values` without copying.

PostgreSQL only: callers keep their own path for SQLite (the embedded first run).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + struct.pack(">ii", 0, 0)  # no flags, no header extension
TRAILER = struct.pack(">h", -1)
PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 (PostgreSQL's epoch) in Unix microseconds
FORMATS = ("text", "csv", "binary")


def _raw(cursor: Any) -> Any:
    """The psycopg cursor under Django's wrapper (or the cursor itself)."""
    return getattr(cursor, "cursor", cursor)


@contextmanager
def copy_in(cursor: Any, table: str, columns: Sequence[str], *, format: str = "text") -> Iterator:
    """``COPY table (columns) FROM STDIN`` in ``format``; yields psycopg's ``Copy``. Names are
    quoted here. Binary: the header is written on entry and the trailer after the block, so the
    caller writes rows only. An exception inside the block aborts the COPY."""
    if format not in FORMATS:
        raise ValueError(f"COPY format must be one of {FORMATS}, not {format!r}")
    quote = connection.ops.quote_name
    sql = f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    if format != "text":
        sql += f" (FORMAT {format})"
    with _raw(cursor).copy(sql) as copy:
        if format == "binary":
            copy.write(HEADER)
        yield copy
        if format == "binary":
            copy.write(TRAILER)


# --------------------------------------------------------------------------------------------
# Reading: COPY (query) TO STDOUT (FORMAT binary)


def copy_out_binary(sql: str, params: Sequence[Any]) -> list[list[memoryview | None]]:
    """The rows of ``COPY (sql) TO STDOUT (FORMAT binary)`` on the default connection, each a
    list of raw field values (``None`` for NULL).

    Meant for queries returning a few rows of whole-column arrays (``array_agg``): the driver
    then handles a few large messages instead of one message per row."""
    with connection.cursor() as cursor:
        with _raw(cursor).copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)", params) as copy:
            data = memoryview(b"".join(copy))
    return binary_rows(data)


def binary_rows(data: memoryview) -> list[list[memoryview | None]]:
    """The rows of a whole binary COPY stream (views into ``data``, not copies)."""
    if bytes(data[:11]) != SIGNATURE:
        raise ValueError("unexpected COPY binary header")
    (extension,) = struct.unpack_from(">i", data, 15)
    pos = 19 + extension
    rows = []
    while True:
        (count,) = struct.unpack_from(">h", data, pos)
        pos += 2
        if count == -1:
            return rows
        row: list[memoryview | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if length < 0:
                row.append(None)
            else:
                row.append(data[pos : pos + length])
                pos += length
        rows.append(row)


def array_items(field: memoryview | None, dtype: str) -> np.ndarray:
    """A one-dimensional, NULL-free PostgreSQL array of 8-byte values (binary), as a big-endian
    view of the received bytes (no copy)."""
    if field is None:
        return np.empty(0, dtype=">" + dtype)
    ndim, has_null, _oid = struct.unpack_from(">iii", field, 0)
    if ndim == 0:
        return np.empty(0, dtype=">" + dtype)
    if ndim != 1 or has_null:
        raise ValueError("expected a one-dimensional array without NULLs")
    (size,) = struct.unpack_from(">i", field, 12)
    items = np.frombuffer(
        field, dtype=np.dtype([("length", ">i4"), ("value", ">" + dtype)]), count=size, offset=20
    )
    return items["value"]


def array_values(field: memoryview | None, dtype: str) -> np.ndarray:
    """:func:`array_items` as a native array."""
    return array_items(field, dtype).astype(dtype)


# --------------------------------------------------------------------------------------------
# Writing: COPY ... FROM STDIN (FORMAT binary), rows built by numpy
#
# Every field's bytes are built by numpy. Each row is first laid out with a fixed slot per field
# (its length word and room for its longest value), then the bytes a row does not use (a NULL's
# value, the rest of a shorter text) are dropped with one boolean mask: rows come out in the
# given order (so PostgreSQL inserts into a primary key in order when the caller sorted by it).


def _numeric_2_dtype(groups: int) -> np.dtype:
    """PostgreSQL's binary numeric with ``groups`` base-10000 digits before the point and one
    after it (two decimal places)."""
    return np.dtype(
        [
            ("ndigits", ">i2"),
            ("weight", ">i2"),
            ("sign", ">u2"),
            ("dscale", ">u2"),
            ("digits", ">i2", groups + 1),
        ]
    )


class Field:
    """One column of a binary COPY: big-endian values (NULL where ``null``), or text given as
    codes into ``texts``."""

    def __init__(
        self,
        values: np.ndarray | None = None,
        null: np.ndarray | None = None,
        *,
        codes: np.ndarray | None = None,
        texts: list[str] | None = None,
    ):
        self.values, self.null = values, null
        self.codes = codes
        if codes is not None:
            encoded = [t.encode() for t in texts or []]
            self.width = max((len(t) for t in encoded), default=0)
            self.values = np.array(encoded, dtype=f"S{max(self.width, 1)}")
            self.lengths = np.array([len(t) for t in encoded], dtype=np.int32)
        else:
            self.width = values.dtype.itemsize


def fixed(values: Any, dtype: str) -> Field:
    """Numbers (or booleans) as big-endian ``dtype`` (``>i8`` bigint or timestamptz in
    microseconds since 2000, ``>i4`` integer, ``>i2`` smallint, ``>f8`` double precision, ``u1``
    boolean); NaN or a missing value is NULL."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)  # nullable integers
    array = np.asarray(values)
    null = np.isnan(array) if array.dtype.kind == "f" else None
    if null is not None and not null.any():
        null = None
    if null is not None and np.dtype(dtype).kind != "f":
        array = np.where(null, 0, array)
    return Field(array.astype(dtype), null)


def numeric_2(values: Any, max_digits: int = 14) -> Field:
    """numeric(max_digits, 2) (up to 18) in PostgreSQL's binary form: base-10000 digits, the
    last one the two places after the point (rounded half to even, like ``round(2)``); NaN is
    NULL. A value that does not fit raises ValueError. (A double holds kopecks exactly up to
    about 9·10^13 roubles; beyond that the last places are the double's.)"""
    if not 3 <= max_digits <= 18:  # kopecks of 10**16 roubles still fit an int64
        raise ValueError("numeric_2 writes numeric(3..18, 2)")
    groups = -(-(max_digits - 2) // 4)
    array = np.asarray(values, dtype=np.float64)
    null = np.isnan(array)
    magnitude = np.abs(np.where(null, 0.0, array))
    if len(array) and not (magnitude.max() < 10 ** (max_digits - 2) - 0.005):  # inf too
        raise ValueError(f"an amount does not fit numeric({max_digits}, 2)")
    cents = np.rint(magnitude * 100).astype(np.int64)
    units, fraction = np.divmod(cents, 100)
    out = np.zeros(len(array), dtype=_numeric_2_dtype(groups))
    out["ndigits"], out["weight"], out["dscale"] = groups + 1, groups - 1, 2
    out["sign"] = np.where(array < 0, 0x4000, 0)
    digits = out["digits"]
    for k in range(groups):
        digits[:, k] = units // 10 ** (4 * (groups - 1 - k)) % 10**4
    digits[:, groups] = fraction * 100
    return Field(out, null if null.any() else None)


def text(values: pd.Series) -> Field:
    """Text (never NULL: a missing value is ""), each distinct value encoded once."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # codes as they are, -1 (missing) as ""
        return Field(codes=values.cat.codes.to_numpy() + 1, texts=["", *values.cat.categories])
    codes, texts = pd.factorize(values.astype(object).where(values.notna(), ""))
    return Field(codes=codes, texts=[str(t) for t in texts])


def jsonb(values: pd.Series) -> Field:
    """JSON documents given as text (never NULL) as ``jsonb``: its binary form is a version
    byte (1) followed by the text; each distinct document encoded once."""
    codes, texts = pd.factorize(values.astype(object))
    return Field(codes=codes, texts=["\x01" + str(t) for t in texts])


def row_blocks(fields: Sequence[Field], rows_per_chunk: int = 1 << 14) -> Iterator[memoryview]:
    """The rows of a binary COPY of ``fields`` (equal lengths), without the header and trailer
    (:func:`copy_in` writes them), in chunks of rows (so the server parses one while the next is
    built)."""
    spec: list[tuple[str, Any]] = [("count", ">i2")]
    for i, field in enumerate(fields):
        spec.append((f"l{i}", ">i4"))
        if field.width:
            spec.append((f"v{i}", field.values.dtype if field.codes is None else f"S{field.width}"))
    slots = np.dtype(spec)
    n = len(fields[0].codes if fields[0].codes is not None else fields[0].values)
    for start in range(0, n, rows_per_chunk):
        rows = slice(start, min(n, start + rows_per_chunk))
        size = rows.stop - rows.start
        block = np.zeros(size, dtype=slots)
        block["count"] = len(fields)
        used = np.ones((size, slots.itemsize), dtype=bool)
        for i, field in enumerate(fields):
            if field.codes is not None:
                codes = field.codes[rows]
                length = field.lengths[codes]
                block[f"l{i}"] = length
                if field.width:
                    block[f"v{i}"] = field.values[codes]
                    at = slots.fields[f"v{i}"][1]
                    used[:, at : at + field.width] = np.arange(field.width) < length[:, None]
                continue
            block[f"v{i}"] = field.values[rows]
            if field.null is None:
                block[f"l{i}"] = field.width
            else:
                null = field.null[rows]
                block[f"l{i}"] = np.where(null, -1, field.width)
                at = slots.fields[f"v{i}"][1]
                used[:, at : at + field.width] = ~null[:, None]
        yield memoryview(block.view(np.uint8).reshape(size, slots.itemsize)[used])


def copy_in_fields(
    cursor: Any,
    table: str,
    columns: Sequence[str],
    fields: Sequence[Field],
    *,
    rows_per_chunk: int = 1 << 14,
) -> None:
    """Insert the rows of ``fields`` (one per column, equal lengths) by binary COPY."""
    if len(fields) != len(columns):
        raise ValueError(f"{len(columns)} columns but {len(fields)} fields")
    with copy_in(cursor, table, columns, format="binary") as copy:
        for block in row_blocks(fields, rows_per_chunk):
            copy.write(block)
