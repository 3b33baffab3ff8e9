"""The one write of daily spend: a day from a source is replaced whole, so a second import of
the same day never doubles it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.audit import audit_log
from agency.errors import ServiceError
from clients.bulk import REQUIRED, VALUE_SHOWN, RowError

from .models import SpendDay


@transaction.atomic
def spend_day_replace(
    *, client: Any, source: str, day: date, rows: Iterable[dict[str, Any]]
) -> int:
    """Replace ``source``'s rows of ``day`` with ``rows`` (dicts of SpendDay fields other than
    client, source and day); rows of one campaign are summed. Returns the rows written."""
    merged: dict[str, dict[str, Any]] = {}
    additive = ("cost", "clicks", "impressions", "visits", "leads", "sales", "revenue")
    for row in rows:
        key = str(row["campaign"])
        if key in merged:
            for field in additive:
                merged[key][field] = merged[key].get(field, 0) + row.get(field, 0)
        else:
            merged[key] = dict(row, campaign=key)
    SpendDay.objects.for_client(client).filter(source=source, day=day).delete()
    SpendDay.objects.for_client(client).bulk_create(
        [SpendDay(client=client, source=source, day=day, **row) for row in merged.values()]
    )
    return len(merged)


# --------------------------------------------------------------------------------------------
# A CSV file of spend for any other source


SPEND_CSV_REQUIRED = ("day", "campaign", "cost")
SPEND_CSV_OPTIONAL = (
    "campaign_name",
    "channel",
    "clicks",
    "impressions",
    "visits",
    "leads",
    "sales",
    "revenue",
)
SPEND_CSV_MAX_BYTES = 20 * 1024 * 1024
SPEND_CSV_MAX_ROWS = 100_000
_COUNTS = ("clicks", "impressions", "visits", "leads", "sales")
_TEXT_LIMITS = {"campaign": 200, "campaign_name": 300, "channel": 100}
_MONEY_LIMIT = Decimal("999999999999.99")
_DAY_FORMATS = ("%Y-%m-%d", "%d.%m.%Y")


@dataclass
class SpendCsvResult:
    rows_total: int = 0
    rows_ok: int = 0
    rows_rejected: int = 0
    days: list[str] = field(default_factory=list)
    written: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_total": self.rows_total,
            "rows_ok": self.rows_ok,
            "rows_rejected": self.rows_rejected,
            "days": self.days,
            "written": self.written,
            "errors": [error.as_dict() for error in self.errors],
        }


def _csv_refuse(code: str, message: str) -> ServiceError:
    return ServiceError(code, message, field="file")


def _parse_day(value: str, today: date) -> tuple[date | None, str, str]:
    for pattern in _DAY_FORMATS:
        try:
            day = datetime.strptime(value, pattern).date()  # noqa: DTZ007 - a date, no time
        except ValueError:
            continue
        if day > today:
            return None, "future_day", _("день в будущем")
        if day.year < 2000:
            return None, "invalid_day", _("день раньше 2000 года")
        return day, "", ""
    return None, "invalid_day", _("день в формате ГГГГ-ММ-ДД или ДД.ММ.ГГГГ")


def _parse_money(value: str) -> tuple[Decimal | None, str, str]:
    text = value.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None, "invalid_amount", _("не число")
    if not number.is_finite() or number < 0 or number > _MONEY_LIMIT:
        return None, "invalid_amount", _("сумма от 0 до 999 999 999 999,99")
    if number != number.quantize(Decimal("0.01")):
        return None, "invalid_amount", _("не больше двух знаков после запятой")
    return number, "", ""


def _parse_count(value: str) -> tuple[int | None, str, str]:
    text = value.replace("\u00a0", "").replace(" ", "")
    if not text.isdigit() or len(text) > 15:
        return None, "invalid_count", _("целое число не меньше 0")
    return int(text), "", ""


def _read_csv_rows(content: bytes) -> tuple[list[str], list[list[str]]]:
    if len(content) > SPEND_CSV_MAX_BYTES:
        raise _csv_refuse(
            "file_too_large", _("Файл больше %(mb)s МБ.") % {"mb": SPEND_CSV_MAX_BYTES >> 20}
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _csv_refuse("invalid_encoding", _("Файл не в кодировке UTF-8.")) from exc
    if "\x00" in text:
        raise _csv_refuse("invalid_file", _("В файле есть нулевые символы: это не CSV."))
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise _csv_refuse("empty_file", _("Файл пуст: нужна строка заголовка.")) from None
    except csv.Error as exc:
        raise _csv_refuse("invalid_file", _("Файл не читается как CSV.")) from exc
    columns = [name.strip().lower() for name in header]
    unknown = [c for c in columns if c not in SPEND_CSV_REQUIRED + SPEND_CSV_OPTIONAL]
    missing = [c for c in SPEND_CSV_REQUIRED if c not in columns]
    if missing or unknown or len(set(columns)) != len(columns):
        raise ServiceError(
            "invalid_columns",
            _(
                "Столбцы: обязательны %(required)s, можно %(optional)s; нет %(missing)s, "
                "неизвестны %(unknown)s."
            )
            % {
                "required": ", ".join(SPEND_CSV_REQUIRED),
                "optional": ", ".join(SPEND_CSV_OPTIONAL),
                "missing": ", ".join(missing) or "—",
                "unknown": ", ".join(unknown) or "—",
            },
            field="file",
            extra={"missing": missing, "unknown": unknown},
        )
    rows = []
    try:
        for row in reader:
            rows.append(row)
            if len(rows) > SPEND_CSV_MAX_ROWS:
                raise _csv_refuse(
                    "too_many_rows",
                    _("В файле больше %(n)s строк.") % {"n": SPEND_CSV_MAX_ROWS},
                )
    except csv.Error as exc:
        raise _csv_refuse(
            "invalid_file",
            _("Строка %(row)s не читается как CSV.") % {"row": reader.line_num},
        ) from exc
    return columns, rows


def spend_csv_upload(
    *,
    client: Any,
    content: bytes,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> SpendCsvResult:
    """Spend from a CSV file (``day``, ``campaign``, ``cost``; optionally ``campaign_name``,
    ``channel``, ``clicks``, ``impressions``, ``visits``, ``leads``, ``sales``, ``revenue``;
    "," or ";" between values). Each bad row is reported with its row number (the header is
    row 1), field, code and reason; the good rows are written: every day with a good row is
    replaced (source ``csv``) by that day's good rows of the file."""
    columns, rows = _read_csv_rows(content)
    today = timezone.localdate(timezone=client.tzinfo)
    result = SpendCsvResult(rows_total=len(rows))
    by_day: dict[date, list[dict[str, Any]]] = {}
    for number, values in enumerate(rows, start=2):
        if not any(v.strip() for v in values):
            result.rows_total -= 1
            continue
        errors: list[RowError] = []
        if len(values) != len(columns):
            errors.append(
                RowError(
                    number,
                    "",
                    "invalid_row",
                    _("в строке %(got)s значений, а столбцов %(want)s")
                    % {"got": len(values), "want": len(columns)},
                )
            )
        record = dict(zip(columns, (v.strip() for v in values), strict=False))
        parsed: dict[str, Any] = {}
        for name in columns if not errors else ():
            value = record.get(name, "")
            if not value:
                if name in SPEND_CSV_REQUIRED:
                    errors.append(RowError(number, name, "required", REQUIRED, ""))
                continue
            if name == "day":
                clean, code, reason = _parse_day(value, today)
            elif name in ("cost", "revenue"):
                clean, code, reason = _parse_money(value)
            elif name in _COUNTS:
                clean, code, reason = _parse_count(value)
            elif len(value) > _TEXT_LIMITS[name]:
                clean, code, reason = (
                    None,
                    "too_long",
                    _("длиннее %(n)s символов") % {"n": _TEXT_LIMITS[name]},
                )
            else:
                clean, code, reason = value, "", ""
            if code:
                errors.append(RowError(number, name, code, reason, value[:VALUE_SHOWN]))
            else:
                parsed[name] = clean
        if errors:
            result.rows_rejected += 1
            result.errors.extend(errors)
            continue
        day = parsed.pop("day")
        by_day.setdefault(day, []).append(parsed)
    result.rows_ok = result.rows_total - result.rows_rejected
    with transaction.atomic():
        for day in sorted(by_day):
            result.written += spend_day_replace(
                client=client, source=SpendDay.Source.CSV, day=day, rows=by_day[day]
            )
        result.days = [day.isoformat() for day in sorted(by_day)]
        audit_log(
            action="spend_csv_uploaded",
            source=source,
            actor=actor,
            client=client,
            details={k: v for k, v in result.as_dict().items() if k != "errors"},
            ip=ip,
        )
    return result


# --------------------------------------------------------------------------------------------
# Reads


def spend_daily(*, client: Any, date_from: date, date_to: date) -> dict[str, Any]:
    """Daily spend rows of a period (every source) and the totals: overall and per source."""
    rows = list(
        SpendDay.objects.for_client(client)
        .filter(day__gte=date_from, day__lte=date_to)
        .order_by("day", "source", "campaign")
    )
    sums = ("cost", "clicks", "impressions", "visits", "leads", "sales", "revenue")
    totals: dict[str, Any] = dict.fromkeys(sums, 0)
    per_source: dict[str, dict[str, Any]] = {}
    for row in rows:
        bucket = per_source.setdefault(row.source, dict.fromkeys(sums, 0))
        for name in sums:
            totals[name] += getattr(row, name)
            bucket[name] += getattr(row, name)
    return {"rows": rows, "totals": totals, "per_source": per_source}
