"""The one writer of files people download: CSV for Excel, safe against formula injection.

Every download (admin, portal, API, management commands) writes its rows through here:

- UTF-8 with a BOM, so that Excel opens Cyrillic correctly; ``,`` by default, ``;`` when asked
  (Excel in a Russian locale splits on ``;``).
- Formula injection (OWASP "CSV Injection"): a text cell that starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return gets a leading ``'``, so that the spreadsheet shows it as
  text instead of evaluating it (``=HYPERLINK(...)``, ``@SUM(...)``, ``+7 999 ...``). Every text
  cell is also quoted, so that a ``;`` or ``,`` inside it cannot start a new cell (and a formula)
  in a spreadsheet that splits on the other separator.
- Numbers (``int``, ``float``, ``Decimal``) are written as numbers, unquoted and never prefixed:
  a bid modifier of -50 stays -50. Not-a-number and infinities are text.
- ``None`` is an empty cell, dates and times are ISO 8601, anything else is its ``str()``.

Entry points: :class:`CsvWriter` (rows to a text file object), :func:`csv_bytes` (in memory),
:func:`csv_stream` (chunks for a ``StreamingHttpResponse``), and the responses
:func:`csv_response`, :func:`csv_streaming_response` and :func:`csv_file_response` (a stored
file written earlier by this module).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import IO, Any

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

BOM = "\ufeff"
CONTENT_TYPE = "text/csv; charset=utf-8"
DELIMITERS = (",", ";")
#: What a spreadsheet reads as the start of a formula (OWASP).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
#: Chunks of a streamed file, in characters: one write per chunk, not one per row.
STREAM_CHUNK = 64 * 1024

Row = Sequence[Any]


def csv_cell(value: Any) -> str | int | float | Decimal:
    """The cell written for ``value``: a finite number as it is, anything else as neutralised
    text."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if finite:
            return value
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        text = value.isoformat()
    else:
        text = str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def csv_row(values: Iterable[Any]) -> list[str | int | float | Decimal]:
    return [csv_cell(value) for value in values]


def _writer(file: Any, delimiter: str) -> Any:
    if delimiter not in DELIMITERS:
        raise ValueError(f"CSV delimiter must be one of {DELIMITERS}, not {delimiter!r}")
    # QUOTE_NONNUMERIC: text cells quoted, numbers bare (csv_cell returns nothing else).
    return csv.writer(
        file, delimiter=delimiter, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n"
    )


class CsvWriter:
    """Rows written one at a time to ``file``, a text file object (open it with
    ``newline=""``; for bytes use ``encoding="utf-8"``). The BOM is written first, then
    ``header`` if given."""

    def __init__(self, file: IO[str], *, header: Row | None = None, delimiter: str = ",") -> None:
        self._writer = _writer(file, delimiter)
        file.write(BOM)
        self.rows = 0  # data rows written, the header not counted
        if header is not None:
            self._writer.writerow(csv_row(header))

    def writerow(self, row: Row) -> None:
        self._writer.writerow(csv_row(row))
        self.rows += 1

    def writerows(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.writerow(row)


def csv_bytes(rows: Iterable[Row], *, header: Row | None = None, delimiter: str = ",") -> bytes:
    """The whole file in memory (UTF-8 with BOM)."""
    buffer = io.StringIO(newline="")
    CsvWriter(buffer, header=header, delimiter=delimiter).writerows(rows)
    return buffer.getvalue().encode("utf-8")


class _Chunks:
    """A file object that keeps what is written until :meth:`take`."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def take(self) -> bytes:
        data = "".join(self.parts).encode("utf-8")
        self.parts, self.size = [], 0
        return data


def csv_stream(
    rows: Iterable[Row],
    *,
    header: Row | None = None,
    delimiter: str = ",",
    chunk_size: int = STREAM_CHUNK,
) -> Iterator[bytes]:
    """The file as UTF-8 chunks of about ``chunk_size`` characters, rows read lazily: for a
    ``StreamingHttpResponse`` of a large export."""
    chunks = _Chunks()
    writer = CsvWriter(chunks, header=header, delimiter=delimiter)
    for row in rows:
        writer.writerow(row)
        if chunks.size >= chunk_size:
            yield chunks.take()
    if chunks.size:
        yield chunks.take()


def _attachment(response: HttpResponse | StreamingHttpResponse, filename: str) -> Any:
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


def csv_response(
    rows: Iterable[Row], filename: str, *, header: Row | None = None, delimiter: str = ","
) -> HttpResponse:
    """A small file built in memory, as an attachment named ``filename``."""
    response = HttpResponse(
        csv_bytes(rows, header=header, delimiter=delimiter), content_type=CONTENT_TYPE
    )
    return _attachment(response, filename)


def csv_streaming_response(
    rows: Iterable[Row], filename: str, *, header: Row | None = None, delimiter: str = ","
) -> StreamingHttpResponse:
    """A large file streamed while ``rows`` are read, as an attachment named ``filename``."""
    response = StreamingHttpResponse(
        csv_stream(rows, header=header, delimiter=delimiter), content_type=CONTENT_TYPE
    )
    return _attachment(response, filename)


def csv_file_response(file: IO[bytes], filename: str) -> FileResponse:
    """A stored file that this module wrote earlier (an import's rejected rows), as an
    attachment named ``filename``."""
    return FileResponse(file, as_attachment=True, filename=filename, content_type=CONTENT_TYPE)
