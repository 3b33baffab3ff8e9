"""The one CSV writer: formula injection neutralised, numbers kept, BOM, responses."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agency.exports import (
    BOM,
    CsvWriter,
    csv_bytes,
    csv_cell,
    csv_file_response,
    csv_response,
    csv_stream,
    csv_streaming_response,
)

# OWASP's list, written out here: the property below must not trust the module's own constant.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def read_back(data: bytes, delimiter: str = ",") -> list[list[str]]:
    assert data.startswith(BOM.encode()), "no BOM: Excel would not read UTF-8"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+7 999 123-45-67", "'+7 999 123-45-67"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1+2", "'\t=1+2"),
        ("\r=1+2", "'\r=1+2"),
        ("-50", "'-50"),  # text that looks like a number is still text
        ("'already quoted", "'already quoted"),
        (" =1+2", " =1+2"),  # a formula cannot start after a space
        ("a=b", "a=b"),
        ("Иван", "Иван"),
        ("", ""),
        (None, ""),
        (-50, -50),
        (0, 0),
        (-1.25, -1.25),
        (Decimal("-9000.50"), Decimal("-9000.50")),
        (float("nan"), "nan"),
        (float("-inf"), "'-inf"),
        (Decimal("-Infinity"), "'-Infinity"),
        (True, "True"),
        (dt.date(2026, 3, 1), "2026-03-01"),
        (dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC), "2026-03-01T09:30:00+00:00"),
        (dt.time(9, 30), "09:30:00"),
    ],
)
def test_cells(value, written):
    cell = csv_cell(value)
    assert cell == written
    assert type(cell) is type(written)


def test_file_text_numbers_bare_and_text_quoted():
    data = csv_bytes(
        [["=1+2", -50, Decimal("12.30"), "a;=b", None], ['x"y', 7, 0.5, "+7999", ""]],
        header=["name", "bid", "sum", "note", "empty"],
    )
    assert data == (
        BOM.encode()
        + b'"name","bid","sum","note","empty"\r\n'
        + b'"\'=1+2",-50,12.30,"a;=b",""\r\n'
        + b'"x""y",7,0.5,"\'+7999",""\r\n'
    )


def test_semicolon_and_refused_delimiter():
    data = csv_bytes([["a;b", -1]], header=["x", "y"], delimiter=";")
    assert read_back(data, ";") == [["x", "y"], ["a;b", "-1"]]
    with pytest.raises(ValueError, match="delimiter"):
        csv_bytes([["a"]], delimiter="\t")


def test_writer_to_a_file(tmp_path):
    path = tmp_path / "out.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = CsvWriter(handle, header=["row", "value"])
        writer.writerow([2, "@evil"])
        writer.writerows([[3, "ok"], [4, "-x"]])
    assert writer.rows == 3
    assert read_back(path.read_bytes()) == [
        ["row", "value"],
        ["2", "'@evil"],
        ["3", "ok"],
        ["4", "'-x"],
    ]


def test_stream_is_lazy_chunked_and_equals_the_whole_file():
    rows = [[k, f"=cmd{k}", f"имя {k}"] for k in range(2000)]
    consumed = []

    def lazily():
        for row in rows:
            consumed.append(row)
            yield row

    stream = csv_stream(lazily(), header=["id", "formula", "name"], chunk_size=4096)
    first = next(stream)
    assert first.startswith(BOM.encode())
    assert len(consumed) < len(rows)  # the first chunk left before every row was read
    chunks = [first, *stream]
    assert len(chunks) > 2
    assert all(chunks)
    assert b"".join(chunks) == csv_bytes(rows, header=["id", "formula", "name"])


def test_responses_are_attachments_with_bom():
    response = csv_response([["=1", -5]], "bid-modifiers-shop-20260301.csv", header=["a", "b"])
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="bid-modifiers-shop-20260301.csv"'
    )
    assert read_back(response.content) == [["a", "b"], ["'=1", "-5"]]

    streaming = csv_streaming_response(iter([["@x"]]), "сегмент.csv", header=["h"])
    assert streaming.streaming
    assert streaming["Content-Type"] == "text/csv; charset=utf-8"
    assert streaming["Content-Disposition"].startswith("attachment; filename*=utf-8''")
    assert read_back(b"".join(streaming.streaming_content)) == [["h"], ["'@x"]]

    stored = csv_file_response(io.BytesIO(csv_bytes([["x"]])), "import-7-errors.csv")
    assert stored["Content-Type"] == "text/csv; charset=utf-8"
    assert stored["Content-Disposition"] == 'attachment; filename="import-7-errors.csv"'


# Text that reaches a spreadsheet in practice, with the triggers and separators over-represented.
texts = st.text(
    alphabet=st.one_of(
        st.sampled_from([*TRIGGERS, ",", ";", '"', "'", "\n", " ", "A", "(", ")"]),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=12,
)
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
)
cells = st.one_of(texts, numbers, st.none(), st.dates(), st.booleans())


def _finite_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


@given(rows=st.lists(st.lists(cells, min_size=1, max_size=6), max_size=5), semicolon=st.booleans())
def test_no_cell_read_back_starts_a_formula_unless_it_is_a_number(rows, semicolon):
    delimiter = ";" if semicolon else ","
    read = read_back(csv_bytes(rows, delimiter=delimiter), delimiter)
    assert len(read) == len(rows)
    for written, values in zip(read, rows, strict=True):
        assert len(written) == len(values)
        for cell, value in zip(written, values, strict=True):
            if _finite_number(value):
                assert cell == str(value)  # a number stays a number, never prefixed
                continue
            assert not cell.startswith(TRIGGERS), (value, cell)
            # Nothing else is changed: the text is there after the one added quote.
            text = "" if value is None else str(value)
            assert cell in (text, "'" + text)
