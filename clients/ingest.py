"""Ingestion of a client's customer base: one pipeline for the bulk API, CSV import and webhooks.

Rows arrive as columns of strings (a CSV chunk, or JSON records flattened to strings), are
validated column by column (vectorised: pandas), staged in a temporary table (PostgreSQL COPY;
executemany on SQLite) and written with two set-based statements: an UPDATE of the rows that
exist (only where something changed) and an INSERT of the new ones. Each rejected row gets a
:class:`clients.bulk.RowError`: its number, field, code, reason and the offending value. Without
``partial`` one rejected row rolls the whole batch back; with it, the good rows land and the bad
ones are reported.

Conventions: a column that is absent, or a NULL/missing value, leaves the stored value alone; an
empty string clears a text field. Within one batch the last row for an external_id wins.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import re
import sys
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency import pgcopy
from agency.errors import ServiceError
from agency.parsers import (
    NUL_MESSAGE,
    JsonContentError,
    json_loads_checked,
    json_path,
    printable,
)

from .bulk import NOT_AN_OBJECT, REQUIRED, UNKNOWN_FIELD, VALUE_SHOWN, RejectedRow, RowError
from .models import Client, Customer, Event, Order
from .normalize import NormalizationError, normalize_email, normalize_phone

KINDS = ("customers", "orders", "events")
# Event properties that carry the visitor's Yandex Metrica ClientID (the _ym_uid cookie), in the
# order they are looked at (Customer.metrica_client_id; see _Writer.take_metrica_client_ids).
METRICA_CLIENT_ID_PROPERTIES = ("_ym_uid", "ym_client_id", "metrica_client_id")
MAX_ERRORS_KEPT = 1000
FUTURE_TOLERANCE = timedelta(days=1)

# --------------------------------------------------------------------------------------------
# Field specifications


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # text | email | phone | datetime | decimal | choice | json_object | json_list
    required: bool = False
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    column: str | None = None  # target column when it differs from the name
    insert_default: str = "''"  # SQL used on insert when the value is missing (NULL)

    @property
    def target(self) -> str:
        return self.column or self.name


@dataclass(frozen=True)
class KindSpec:
    kind: str
    model: type
    fields: tuple[FieldSpec, ...]
    references_customer: bool
    seen_at: str | None = None  # the time that tells when the customer was seen (first_seen)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


_EXTERNAL_ID = FieldSpec("external_id", "text", required=True, max_length=100)
_CUSTOMER_REF = FieldSpec("customer_external_id", "text", required=True, max_length=100)

SPECS: dict[str, KindSpec] = {
    "customers": KindSpec(
        "customers",
        Customer,
        (
            _EXTERNAL_ID,
            FieldSpec("email", "email", max_length=254),
            FieldSpec("phone", "phone", max_length=16),
            FieldSpec("first_name", "text", max_length=100),
            FieldSpec("last_name", "text", max_length=100),
            FieldSpec("city", "text", max_length=100),
            FieldSpec("attributes", "json_object", insert_default="'{}'"),
            FieldSpec("first_seen", "datetime", insert_default=":now"),
            FieldSpec("source", "text", max_length=50),
        ),
        references_customer=False,
    ),
    "orders": KindSpec(
        "orders",
        Order,
        (
            _EXTERNAL_ID,
            _CUSTOMER_REF,
            FieldSpec("placed_at", "datetime", required=True),
            FieldSpec("amount", "decimal", required=True),
            FieldSpec(
                "status",
                "choice",
                choices=tuple(Order.Status.values),
                insert_default=f"'{Order.Status.PAID}'",
            ),
            FieldSpec("channel", "text", max_length=50),
            FieldSpec("items", "json_list", insert_default="'[]'"),
        ),
        references_customer=True,
        seen_at="placed_at",
    ),
    "events": KindSpec(
        "events",
        Event,
        (
            FieldSpec("external_id", "text", max_length=100),
            _CUSTOMER_REF,
            FieldSpec("type", "event_type", required=True, max_length=50),
            FieldSpec("occurred_at", "datetime", required=True),
            FieldSpec("properties", "json_object", insert_default="'{}'"),
            FieldSpec("utm_source", "text", max_length=100),
            FieldSpec("utm_medium", "text", max_length=100),
            FieldSpec("utm_campaign", "text", max_length=200),
        ),
        references_customer=True,
        seen_at="occurred_at",
    ),
}


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class IngestResult:
    kind: str
    total: int = 0
    created: int = 0
    updated: int = 0  # rows that changed a stored record
    unchanged: int = 0  # accepted rows that changed nothing (see IngestBatch.finish)
    rejected: int = 0
    committed: bool = False
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.total - self.rejected


class BatchError(ServiceError, ValueError):
    """The batch as a whole is malformed (wrong header, unknown kind): nothing was read."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)


class _Rollback(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Column validators (vectorised). Each returns (clean values, reasons) where ``reasons`` holds a
# :class:`Reason` (its code and message) for each bad row and NaN/None for good ones. Missing
# values stay None.

Series = pd.Series

FUTURE_DATE = gettext_lazy("дата в будущем")
ANCIENT_DATE = gettext_lazy("дата раньше 1990 года")
NEGATIVE_AMOUNT = gettext_lazy("отрицательная сумма")
BAD_JSON = gettext_lazy("некорректный JSON")

# The code of a reason that does not say its own (there should be none): the field's type's.
_TYPE_CODES = {
    "text": "too_long",
    "email": "invalid_email",
    "phone": "invalid_phone",
    "datetime": "invalid_time",
    "decimal": "invalid_amount",
    "choice": "invalid_choice",
    "event_type": "invalid_event_type",
    "json_object": "invalid_json",
    "json_list": "invalid_items",
}


class Reason(str):
    """Why a row's value is refused: its message (in the active language, translated where the
    fault is found) that carries the row error's code, given there too: the code never
    depends on the words, which follow the language of the request."""

    code: str

    def __new__(cls, code: str, text: str) -> Reason:
        reason = super().__new__(cls, str(text))
        reason.code = code
        return reason


def _code(spec: FieldSpec, reason: str) -> str:
    return getattr(reason, "code", None) or _TYPE_CODES[spec.type]


# Set on a frame (``frame.attrs``) whose text cannot hold NUL characters or lone surrogates
# (read from bytes without a NUL byte, strictly decoded): validate_frame then skips that check.
TEXT_CHECKED = "text_checked"


def _forbidden_text_reasons(values: Series) -> Series:
    """The reason for each value holding a NUL character (PostgreSQL refuses it in text), NaN
    for the others. (Lone surrogates cannot be in the frame: its strings are Arrow's, UTF-8.)"""
    found = values.str.contains("\x00", regex=False)
    reasons = pd.Series(None, index=values.index, dtype=object)
    for row in values.index[found.to_numpy(dtype=bool)]:
        reasons[row] = Reason("nul_character", NUL_MESSAGE)
    return reasons


def _strip(values: Series) -> Series:
    return values.str.strip()


def _validate_text(spec: FieldSpec, values: Series, _ctx: dict) -> tuple[Series, Series]:
    clean = _strip(values)
    reasons = pd.Series(None, index=values.index, dtype=object)
    if spec.max_length:
        too_long = clean.str.len() > spec.max_length
        reasons[too_long] = Reason(
            "too_long", _("длиннее %(max)s символов") % {"max": spec.max_length}
        )
    return clean, reasons


def _map_normalizer(func: Callable[[str], str], values: Series) -> tuple[Series, Series]:
    cache: dict[str, tuple[str | None, str | None]] = {}

    def one(value: str) -> tuple[str | None, str | None]:
        hit = cache.get(value)
        if hit is None:
            if value is None or value.strip() == "":
                hit = ("", None)  # an empty value clears the field
            else:
                try:
                    hit = (func(value), None)
                except NormalizationError as exc:
                    hit = (None, Reason(exc.code, exc.message))
            cache[value] = hit
        return hit

    pairs = [one(v) for v in values.tolist()]
    clean = pd.Series([p[0] for p in pairs], index=values.index, dtype=object)
    reasons = pd.Series([p[1] for p in pairs], index=values.index, dtype=object)
    return clean, reasons


def _validate_email(spec: FieldSpec, values: Series, _ctx: dict) -> tuple[Series, Series]:
    return _map_normalizer(normalize_email, values)


def _validate_phone(spec: FieldSpec, values: Series, _ctx: dict) -> tuple[Series, Series]:
    return _map_normalizer(normalize_phone, values)


_OFFSET_RE = r"(?:[zZ]|[+-]\d\d:?\d\d)$"
# UTC offsets beyond ±15:59 are no time zone (and PostgreSQL refuses them): as agency.parsers.
_BAD_OFFSET_RE = r"[+-](?:1[6-9]|[2-9]\d):?\d\d$|[+-]\d\d:?[6-9]\d$"
BAD_OFFSET = gettext_lazy("смещение часового пояса вне ±15:59")
_RU_DATE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y")


def parse_datetimes(values: Series, tz: zoneinfo.ZoneInfo) -> Series:
    """ISO 8601 (with or without offset) or Russian "ДД.ММ.ГГГГ [чч:мм[:сс]]"; naive values are
    read in the client's time zone. Unparseable values become NaT. Returns UTC timestamps."""
    text = values.str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if text.empty:
        return out
    aware_mask = text.str.contains(_OFFSET_RE, regex=True)
    if aware_mask.any():
        aware_text = text[aware_mask]
        aware = pd.to_datetime(aware_text, format="ISO8601", utc=True, errors="coerce")
        aware[aware_text.str.contains(_BAD_OFFSET_RE, regex=True)] = pd.NaT
        out[aware_mask] = aware.astype("datetime64[us, UTC]")
    naive_mask = ~aware_mask
    if naive_mask.any():
        naive_text = text[naive_mask]
        naive = pd.to_datetime(naive_text, format="ISO8601", errors="coerce")
        for fmt in _RU_DATE_FORMATS:
            missing = naive.isna()
            if not missing.any():
                break
            naive[missing] = pd.to_datetime(naive_text[missing], format=fmt, errors="coerce")
        localized = (
            naive.astype("datetime64[us]")
            .dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
            .dt.tz_convert("UTC")
        )
        out[naive_mask] = localized
    return out


def _validate_datetime(spec: FieldSpec, values: Series, ctx: dict) -> tuple[Series, Series]:
    present = values.str.strip() != ""
    parsed = parse_datetimes(values, ctx["tz"])
    reasons = pd.Series(None, index=values.index, dtype=object)
    bad = present & parsed.isna()
    reasons[bad] = Reason(
        "invalid_time",
        _("не дата: ожидается ISO 8601 (2024-05-31T14:30:00+03:00) или ДД.ММ.ГГГГ чч:мм"),
    )
    if bad.any():
        bad_offset = bad & values.str.strip().str.contains(_BAD_OFFSET_RE, regex=True)
        reasons[bad_offset] = Reason("invalid_time", BAD_OFFSET)
    future = present & (parsed > pd.Timestamp(ctx["now"] + FUTURE_TOLERANCE))
    reasons[future] = Reason("future_time", FUTURE_DATE)
    ancient = present & (parsed < pd.Timestamp("1990-01-01", tz="UTC"))
    reasons[ancient] = Reason("invalid_time", ANCIENT_DATE)
    return parsed.where(present & reasons.isna()), reasons


def decimal_pattern(max_digits: int, decimal_places: int) -> str:
    """A sum that fits ``numeric(max_digits, decimal_places)``, in ASCII digits only: Python's
    ``\\d`` and ``Decimal`` also take "١٢٣" (Arabic-Indic digits), which PostgreSQL refuses."""
    whole = max_digits - decimal_places
    return rf"-?[0-9]{{1,{whole}}}(?:\.[0-9]{{1,{decimal_places}}})?"


_AMOUNT_FIELD = Order._meta.get_field("amount")
AMOUNT_PATTERN = decimal_pattern(_AMOUNT_FIELD.max_digits, _AMOUNT_FIELD.decimal_places)
_DECIMAL_RE = AMOUNT_PATTERN


def _amount_format() -> str:
    return _(
        "не сумма: ожидается число из цифр 0-9, до %(whole)s знаков до и не более 2 после запятой"
    ) % {"whole": _AMOUNT_FIELD.max_digits - 2}


def _validate_decimal(spec: FieldSpec, values: Series, _ctx: dict) -> tuple[Series, Series]:
    text = values.str.replace(r"[\s\u00a0]", "", regex=True).str.replace(",", ".", regex=False)
    present = text != ""
    reasons = pd.Series(None, index=values.index, dtype=object)
    well_formed = text.str.fullmatch(_DECIMAL_RE)
    reasons[present & ~well_formed] = Reason("invalid_amount", _amount_format())
    reasons[present & well_formed & text.str.startswith("-")] = Reason(
        "invalid_amount", NEGATIVE_AMOUNT
    )
    clean = text.where(present & reasons.isna(), None)
    return clean, reasons


def _validate_choice(spec: FieldSpec, values: Series, _ctx: dict) -> tuple[Series, Series]:
    clean = _strip(values).str.lower()
    present = clean != ""
    reasons = pd.Series(None, index=values.index, dtype=object)
    reasons[present & ~clean.isin(spec.choices)] = Reason(
        "invalid_choice", _("допустимо: %(choices)s") % {"choices": ", ".join(spec.choices)}
    )
    return clean.where(present, None), reasons


def _validate_event_type(spec: FieldSpec, values: Series, _ctx: dict) -> tuple[Series, Series]:
    clean = _strip(values).str.lower()
    reasons = pd.Series(None, index=values.index, dtype=object)
    reasons[~clean.str.fullmatch(r"[a-z][a-z0-9_]{0,49}")] = Reason(
        "invalid_event_type",
        _("тип события: латиница в нижнем регистре, цифры и _, до 50 символов"),
    )
    return clean, reasons


_ITEM_PRICE_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _check_items(items: Any) -> Reason | None:
    if not isinstance(items, list):
        return Reason("invalid_items", _("ожидается JSON-массив позиций"))
    for i, item in enumerate(items):
        at = {"i": i}
        if not isinstance(item, dict):
            return Reason("invalid_items", _("позиция %(i)s: ожидается объект") % at)
        qty = item.get("qty", 1)
        if isinstance(qty, bool) or not isinstance(qty, int | float) or qty != int(qty):
            return Reason("invalid_items", _("позиция %(i)s: qty должно быть целым числом") % at)
        if qty <= 0:
            return Reason("invalid_items", _("позиция %(i)s: qty должно быть больше нуля") % at)
        price = item.get("price", 0)
        if isinstance(price, bool) or not isinstance(price, int | float | str):
            return Reason("invalid_items", _("позиция %(i)s: price должно быть числом") % at)
        if isinstance(price, str) and not _ITEM_PRICE_RE.fullmatch(price.strip()):
            return Reason(
                "invalid_items", _("позиция %(i)s: price должно быть числом (цифры 0-9)") % at
            )
        try:
            if float(price) < 0:
                return Reason("invalid_items", _("позиция %(i)s: отрицательная цена") % at)
        except ValueError:
            return Reason("invalid_items", _("позиция %(i)s: price должно быть числом") % at)
    return None


def _json_validator(expected: type, check: Callable[[Any], Reason | None] | None):
    def validate(spec: FieldSpec, values: Series, _ctx: dict) -> tuple[Series, Series]:
        clean: list[str | None] = []
        reasons: list[str | None] = []
        for raw in values.tolist():
            if raw is None or raw.strip() == "":
                clean.append(None)
                reasons.append(None)
                continue
            try:
                parsed = json_loads_checked(raw)
            except JsonContentError as exc:  # nested too deep, NUL, lone surrogate, 1e400
                problem = exc.problems[0]
                where = json_path(problem.path, root=spec.name)
                clean.append(None)
                reasons.append(Reason(problem.code, f"{BAD_JSON}: {where}: {problem.message}"))
                continue
            except ValueError:
                clean.append(None)
                reasons.append(Reason("invalid_json", BAD_JSON))
                continue
            problem = (
                _not_expected(expected)
                if not isinstance(parsed, expected)
                else (check(parsed) if check else None)
            )
            clean.append(None if problem else json.dumps(parsed, ensure_ascii=False))
            reasons.append(problem)
        index = values.index
        return pd.Series(clean, index=index, dtype=object), pd.Series(
            reasons, index=index, dtype=object
        )

    return validate


def _not_expected(expected: type) -> Reason:
    if expected is dict:
        return Reason("invalid_json", _("ожидается JSON-объект"))
    return Reason("invalid_items", _("ожидается JSON-массив"))


VALIDATORS: dict[str, Callable[[FieldSpec, Series, dict], tuple[Series, Series]]] = {
    "text": _validate_text,
    "email": _validate_email,
    "phone": _validate_phone,
    "datetime": _validate_datetime,
    "decimal": _validate_decimal,
    "choice": _validate_choice,
    "event_type": _validate_event_type,
    "json_object": _json_validator(dict, None),
    "json_list": _json_validator(list, _check_items),
}


def check_columns(kind: str, columns: Iterable[str]) -> None:
    """Refuse a header with unknown columns or without the required ones, naming them."""
    spec = SPECS[kind]
    columns = [c.strip() for c in columns]
    unknown = [printable(c)[:100] for c in columns if c not in spec.field_names]
    missing = [c for c in spec.required if c not in columns]
    problems = []
    if missing:
        problems.append(_("нет обязательных колонок: %(names)s") % {"names": ", ".join(missing)})
    if unknown:
        problems.append(_("неизвестные колонки: %(names)s") % {"names": ", ".join(unknown)})
    if problems:
        raise BatchError(
            "bad_header",
            _("%(problems)s. Колонки для %(kind)s: %(columns)s")
            % {
                "problems": "; ".join(problems),
                "kind": kind,
                "columns": ", ".join(spec.field_names),
            },
        )


def validate_frame(
    kind: str, frame: pd.DataFrame, *, tz: zoneinfo.ZoneInfo, now=None
) -> tuple[pd.DataFrame, list[RowError]]:
    """Validate a frame of strings (None = not provided). Returns the clean frame (only good
    rows) and the errors (row = frame index)."""
    spec = SPECS[kind]
    ctx = {"tz": tz, "now": now or timezone.now()}
    check_text = not frame.attrs.get(TEXT_CHECKED, False)
    good = pd.Series(True, index=frame.index)
    clean_columns: dict[str, Series] = {}
    errors: list[RowError] = []
    for fs in spec.fields:
        if fs.name not in frame.columns:
            continue
        raw = frame[fs.name]
        provided = raw.notna()
        as_text = raw.where(provided, "").astype(str)
        clean, reasons = VALIDATORS[fs.type](fs, as_text, ctx)
        if fs.required:
            empty = as_text.str.strip() == ""
            if empty.any():
                reasons = reasons.copy()
                reasons[empty] = Reason("required", REQUIRED)
        if check_text:
            forbidden = _forbidden_text_reasons(as_text)
            reasons = forbidden.where(forbidden.notna(), reasons)
        bad = reasons.notna()
        if bad.any():
            for row, reason, value in zip(
                frame.index[bad], reasons[bad], as_text[bad], strict=True
            ):
                errors.append(
                    RowError(
                        int(row),
                        fs.name,
                        _code(fs, reason),
                        str(reason),
                        printable(value[:VALUE_SHOWN]),
                    )
                )
            good &= ~bad
        clean_columns[fs.name] = clean.where(provided)
    clean_frame = pd.DataFrame(clean_columns, index=frame.index)[good]
    if kind == "events":
        clean_frame = _fill_event_ids(clean_frame)
    errors.sort(key=lambda e: e.index)
    return clean_frame, errors


def _fill_event_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """An event without an id gets one derived from its content, so a replay is idempotent."""
    frame = frame.copy()
    if "external_id" not in frame.columns:
        frame["external_id"] = None
    missing = frame["external_id"].isna() | (frame["external_id"] == "")
    if missing.any():
        subset = frame[missing]
        props = (
            subset["properties"] if "properties" in subset else pd.Series(None, index=subset.index)
        )
        derived = [
            "auto:"
            + hashlib.sha1(  # noqa: S324 (an identifier, not a security hash)
                f"{c}|{t}|{o.isoformat()}|{p if isinstance(p, str) else ''}".encode()
            ).hexdigest()[:40]
            for c, t, o, p in zip(
                subset["customer_external_id"],
                subset["type"],
                subset["occurred_at"],
                props,
                strict=True,
            )
        ]
        frame.loc[missing, "external_id"] = derived
    return frame


# --------------------------------------------------------------------------------------------
# Staging and writing


class _Writer:
    """Stages one chunk of clean rows in a temporary table and merges it into the target.

    Chunks are merged one after another in the caller's transaction, so a later row for the same
    external_id updates what an earlier chunk inserted (last row wins) and a rollback undoes all.
    """

    def __init__(
        self,
        spec: KindSpec,
        client: Client,
        present: list[str],
        vendor: str,
        now: datetime.datetime,
    ):
        self.spec = spec
        self.client = client
        self.present = [f for f in spec.fields if f.name in present or f.name == "external_id"]
        self.vendor = vendor
        self.table = spec.model._meta.db_table
        self.customer_table = Customer._meta.db_table
        self.now = now  # the batch's one timestamp: validation and created/updated_at agree

    # SQL dialect differences, kept here and nowhere else.
    def _stage_type(self, fs: FieldSpec) -> str:
        if self.vendor == "postgresql":
            return {"datetime": "timestamptz", "decimal": "numeric(14,2)"}.get(fs.type, "text")
        return "text"

    def _value_sql(self, fs: FieldSpec, expr: str) -> str:
        if self.vendor == "postgresql" and fs.type in ("json_object", "json_list"):
            return f"({expr})::jsonb"
        return expr

    def _distinct(self, left: str, right: str) -> str:
        op = "IS DISTINCT FROM" if self.vendor == "postgresql" else "IS NOT"
        return f"{left} {op} {right}"

    def _now_param(self):
        if self.vendor == "postgresql":
            return self.now
        return self.now.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def start(self, cursor) -> None:
        """Create the staging table; on PostgreSQL also serialise writers of this client+kind."""
        columns = ", ".join(f"{f.name} {self._stage_type(f)}" for f in self.present)
        cursor.execute("DROP TABLE IF EXISTS ingest_stage")
        cursor.execute(f"CREATE TEMP TABLE ingest_stage (row_no bigint, {columns})")
        if self.vendor == "postgresql":
            # Two imports of one client's orders at once would race between "does it exist"
            # and INSERT; the lock makes them take turns (released at commit). Orders and
            # events also move their customers' first_seen, so they take the customers' lock
            # first (always in this order: customers, then the kind; no two writers of one
            # client's customers can then wait for each other's rows).
            kinds = [self.spec.kind]
            if self.spec.seen_at:
                kinds.insert(0, "customers")
            for kind in kinds:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", [self.client.pk, KINDS.index(kind)]
                )
            # Hash joins of a 500k-row chunk against the target stay in memory.
            cursor.execute("SET LOCAL work_mem = '256MB'")
        else:
            cursor.execute("CREATE INDEX ingest_stage_ext ON ingest_stage (external_id)")

    def _stage_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        data = pd.DataFrame({"row_no": frame.index.astype("int64")}, index=frame.index)
        for fs in self.present:
            if fs.name in frame.columns:
                col = frame[fs.name]
            else:
                col = pd.Series(None, index=frame.index, dtype=object)
            if fs.type == "datetime" and self.vendor != "postgresql":
                col = col.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
            data[fs.name] = col
        return data

    def load(self, cursor, frame: pd.DataFrame) -> None:
        """Replace the staging table's contents with this chunk."""
        names = [f.name for f in self.present]
        data = self._stage_frame(frame)
        if self.vendor == "postgresql":
            cursor.execute("TRUNCATE ingest_stage")
            buffer = pa.BufferOutputStream()
            # Every value quoted and NULL left unquoted-empty: COPY's CSV mode then tells NULL
            # (keep the stored value) from "" (clear it).
            pa_csv.write_csv(
                pa.Table.from_pandas(data, preserve_index=False),
                buffer,
                pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"),
            )
            with pgcopy.copy_in(cursor, "ingest_stage", ["row_no", *names], format="csv") as copy:
                copy.write(buffer.getvalue().to_pybytes())
            cursor.execute("ANALYZE ingest_stage")
        else:
            cursor.execute("DELETE FROM ingest_stage")
            placeholders = ", ".join(["%s"] * (len(names) + 1))
            rows = [
                (int(r[0]), *(None if (v is None or v is pd.NA or v != v) else v for v in r[1:]))
                for r in data.itertuples(index=False, name=None)
            ]
            cursor.executemany(
                f"INSERT INTO ingest_stage (row_no, {', '.join(names)}) VALUES ({placeholders})",
                rows,
            )

    def unknown_customers(self, cursor) -> list[tuple[int, str]]:
        cursor.execute(
            f"""SELECT s.row_no, s.customer_external_id FROM ingest_stage s
                WHERE NOT EXISTS (SELECT 1 FROM {self.customer_table} c
                                  WHERE c.client_id = %s AND c.external_id = s.customer_external_id)
                ORDER BY s.row_no""",
            [self.client.pk],
        )
        return cursor.fetchall()

    def drop_rows_with_unknown_customers(self, cursor) -> None:
        cursor.execute(
            f"""DELETE FROM ingest_stage WHERE NOT EXISTS (
                    SELECT 1 FROM {self.customer_table} c
                    WHERE c.client_id = %s
                      AND c.external_id = ingest_stage.customer_external_id)""",
            [self.client.pk],
        )

    def collapse_duplicates(self, cursor) -> None:
        cursor.execute(
            """DELETE FROM ingest_stage WHERE EXISTS (
                   SELECT 1 FROM ingest_stage s2
                   WHERE s2.external_id = ingest_stage.external_id
                     AND s2.row_no > ingest_stage.row_no)"""
        )

    def _source_sql(self) -> tuple[str, list]:
        """The staged rows joined to their customers (when the kind references one)."""
        if self.spec.references_customer:
            return (
                f"""ingest_stage s JOIN {self.customer_table} c
                    ON c.client_id = %s AND c.external_id = s.customer_external_id""",
                [self.client.pk],
            )
        return "ingest_stage s", []

    def merge(self, cursor) -> tuple[int, int]:
        """Update existing rows (only those that change), insert new ones; returns how many
        were created and how many updated (a row equal to the stored one is neither)."""
        source, source_params = self._source_sql()
        client_id = self.client.pk
        columns = [f for f in self.present if f.name != "customer_external_id"]
        assignments, changes = [], []
        for fs in columns:
            if fs.name == "external_id":
                continue
            new_value = self._value_sql(fs, f"s.{fs.name}")
            if fs.name == "first_seen":
                least = "LEAST" if self.vendor == "postgresql" else "MIN"
                value = f"{least}(t.first_seen, COALESCE({new_value}, t.first_seen))"
            else:
                value = f"COALESCE({new_value}, t.{fs.target})"
            assignments.append((fs.target, value))
            changes.append(self._distinct(f"t.{fs.target}", value))
        if self.spec.references_customer:
            assignments.append(("customer_id", "c.id"))
            changes.append(self._distinct("t.customer_id", "c.id"))

        updated = 0
        if assignments:
            set_sql = ", ".join(f"{col} = {val}" for col, val in assignments)
            cursor.execute(
                f"""UPDATE {self.table} AS t SET {set_sql}, updated_at = %s
                    FROM {source}
                    WHERE t.client_id = %s AND t.external_id = s.external_id
                      AND ({" OR ".join(changes)})""",
                [self._now_param(), *source_params, client_id],
            )
            updated = max(cursor.rowcount, 0)

        insert_columns = ["client_id", "created_at", "updated_at"]
        select_values = ["%s", "%s", "%s"]
        params: list[Any] = [client_id, self._now_param(), self._now_param()]
        for fs in self.spec.fields:
            if fs.name == "customer_external_id":
                continue
            insert_columns.append(fs.target)
            if fs in columns and fs.required:
                select_values.append(self._value_sql(fs, f"s.{fs.name}"))
            elif fs in columns:
                value = self._value_sql(fs, f"s.{fs.name}")
                default = (
                    self._value_sql(fs, fs.insert_default) if fs.insert_default != ":now" else "%s"
                )
                select_values.append(f"COALESCE({value}, {default})")
            else:
                default = fs.insert_default
                select_values.append(self._value_sql(fs, default) if default != ":now" else "%s")
            if fs.insert_default == ":now":
                params.append(self._now_param())
        if self.spec.references_customer:
            insert_columns.append("customer_id")
            select_values.append("c.id")
        # Sorted by external_id: the unique index then grows mostly at its right edge.
        cursor.execute(
            f"""INSERT INTO {self.table} ({", ".join(insert_columns)})
                SELECT {", ".join(select_values)} FROM {source}
                WHERE NOT EXISTS (SELECT 1 FROM {self.table} t
                                  WHERE t.client_id = %s AND t.external_id = s.external_id)
                ORDER BY s.external_id""",
            [*params, *source_params, client_id],
        )
        created = max(cursor.rowcount, 0)
        if self.spec.seen_at:
            self.move_first_seen(cursor)
        if self.spec.kind == "events" and any(f.name == "properties" for f in self.present):
            self.take_metrica_client_ids(cursor)
        return created, updated

    def take_metrica_client_ids(self, cursor) -> None:
        """The one place a customer gets their Yandex Metrica ClientID: from the properties
        ``_ym_uid`` / ``ym_client_id`` / ``metrica_client_id`` (the first given, in that order)
        of their latest event of this chunk that carries one. An erased customer gets none."""
        keys = METRICA_CLIENT_ID_PROPERTIES
        if self.vendor == "postgresql":
            picks = [f"NULLIF(BTRIM((s.properties)::jsonb ->> '{key}'), '')" for key in keys]
            value = f"LEFT(COALESCE({', '.join(picks)}), 64)"
        else:
            picks = [
                f"NULLIF(TRIM(CAST(json_extract(s.properties, '$.{key}') AS TEXT)), '')"
                for key in keys
            ]
            value = f"SUBSTR(COALESCE({', '.join(picks)}), 1, 64)"
        # A cheap filter first: most events carry none of the keys ("_" is LIKE's any-char,
        # so the filter lets through a superset).
        mentioned = " OR ".join(f"s.properties LIKE '%%{key}%%'" for key in keys)
        cursor.execute(
            f"""UPDATE {self.customer_table} AS t SET metrica_client_id = m.cid, updated_at = %s
                FROM (SELECT x.customer_external_id, x.cid FROM (
                        SELECT s.customer_external_id, {value} AS cid,
                               ROW_NUMBER() OVER (PARTITION BY s.customer_external_id
                                                  ORDER BY s.occurred_at DESC, s.row_no DESC) AS n
                        FROM ingest_stage s
                        WHERE s.properties IS NOT NULL AND ({mentioned})
                          AND {value} IS NOT NULL) x
                      WHERE x.n = 1) AS m
                WHERE t.client_id = %s AND t.external_id = m.customer_external_id
                  AND t.erased_at IS NULL AND {self._distinct("t.metrica_client_id", "m.cid")}""",
            [self._now_param(), self.client.pk],
        )

    def move_first_seen(self, cursor) -> None:
        """A customer was first seen no later than their earliest order or event: move
        ``first_seen`` back to the earliest of this chunk where that is earlier (a customer
        ingested today with orders from 2019 was first seen in 2019, whichever came first)."""
        when = f"s.{self.spec.seen_at}"
        cursor.execute(
            f"""UPDATE {self.customer_table} AS t SET first_seen = m.first_seen, updated_at = %s
                FROM (SELECT c.id, MIN({when}) AS first_seen
                      FROM ingest_stage s JOIN {self.customer_table} c
                        ON c.client_id = %s AND c.external_id = s.customer_external_id
                      GROUP BY c.id) AS m
                WHERE t.id = m.id AND t.first_seen > m.first_seen""",
            [self._now_param(), self.client.pk],
        )


@dataclass
class _ChunkOutcome:
    errors: list[RowError]
    created: int = 0
    updated: int = 0


class IngestBatch:
    """One all-or-nothing (or partial) ingestion: feed frames, then ``finish``.

    Use as a context manager; the database work happens inside one transaction. On PostgreSQL
    each chunk is written by a helper thread while the next one is validated, so Python and the
    database work at the same time; chunks are still written strictly in order.
    """

    def __init__(
        self,
        *,
        client: Client,
        kind: str,
        columns: Iterable[str],
        partial: bool = False,
        on_error: Callable[[RowError], None] | None = None,
    ):
        if kind not in SPECS:
            raise BatchError(
                "unknown_kind",
                _("неизвестный тип данных %(kind)s: %(kinds)s")
                % {"kind": repr(kind), "kinds": ", ".join(KINDS)},
            )
        self.client = client
        self.kind = kind
        self.spec = SPECS[kind]
        self.partial = partial
        self.on_error = on_error
        self.tz = client.tzinfo
        self.now = timezone.now()
        self.result = IngestResult(kind=kind)
        self._writer = _Writer(self.spec, client, list(columns), connection.vendor, self.now)
        self._atomic = transaction.atomic()
        self._cursor = None
        self._pending: Future | None = None
        self._pending_errors: list[RowError] = []
        self._executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> IngestBatch:
        self._atomic.__enter__()
        connection.ensure_connection()
        if connection.vendor == "postgresql":
            # The raw psycopg connection may be used from the helper thread; the Django wrapper
            # may not. Only one thread uses it at a time (see _submit).
            self._cursor = connection.connection.cursor()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        else:
            self._cursor = connection.cursor()
        self._writer.start(self._cursor)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._wait()
        except Exception:
            if exc_type is None:
                exc_type = sys.exc_info()[0]
                exc = sys.exc_info()[1]
                tb = sys.exc_info()[2]
        suppress = exc_type is _Rollback
        if suppress:
            transaction.set_rollback(True)
        try:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._cursor.close()
        finally:
            self._atomic.__exit__(None if suppress else exc_type, None if suppress else exc, tb)
        return suppress

    def _reject(self, error: RowError) -> None:
        if len(self.result.errors) < MAX_ERRORS_KEPT:
            self.result.errors.append(error)
        if self.on_error:
            self.on_error(error)

    @property
    def _failed(self) -> bool:
        return bool(self.result.rejected) and not self.partial

    def _write_chunk(self, clean: pd.DataFrame, merge: bool) -> _ChunkOutcome:
        cursor, writer = self._cursor, self._writer
        writer.load(cursor, clean)
        errors = []
        if self.spec.references_customer:
            unknown = writer.unknown_customers(cursor)
            errors = [
                RowError(
                    int(row_no),
                    "customer_external_id",
                    "unknown_customer",
                    _("нет покупателя с таким external_id у этого клиента"),
                    ext_id,
                )
                for row_no, ext_id in unknown
            ]
            if errors:
                writer.drop_rows_with_unknown_customers(cursor)
        if not merge or (errors and not self.partial):
            return _ChunkOutcome(errors)  # the batch will be rolled back: skip the work
        writer.collapse_duplicates(cursor)
        created, updated = writer.merge(cursor)
        return _ChunkOutcome(errors, created, updated)

    def _wait(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        self._collect(pending.result(), self._pending_errors)

    def _collect(self, outcome: _ChunkOutcome, invalid: list[RowError]) -> None:
        """Report a chunk's errors in row order: those of validation (``invalid``, already
        counted) merged with those the database found (unknown customers)."""
        errors = invalid + outcome.errors
        if outcome.errors and invalid:
            errors.sort(key=lambda e: e.index)  # stable: a row's fields keep their order
        for error in errors:
            self._reject(error)
        self.result.rejected += len({e.index for e in outcome.errors})
        self.result.created += outcome.created
        self.result.updated += outcome.updated

    def _submit(self, clean: pd.DataFrame, invalid: list[RowError]) -> None:
        self._wait()
        merge = not self._failed
        if clean.empty:
            self._collect(_ChunkOutcome([]), invalid)
        elif self._executor is None:
            self._collect(self._write_chunk(clean, merge), invalid)
        else:
            self._pending = self._executor.submit(self._write_chunk, clean, merge)
            self._pending_errors = invalid

    def add(self, frame: pd.DataFrame) -> None:
        """Validate one frame of strings (its index gives the row numbers) and write it."""
        clean, errors = validate_frame(self.kind, frame, tz=self.tz, now=self.now)
        self.result.total += len(frame)
        self.result.rejected += len({e.index for e in errors})  # decides whether to write on
        self._submit(clean, errors)

    def finish(self) -> IngestResult:
        """Wait for the last chunk and decide: commit, or roll back when rows were rejected in
        all-or-nothing mode. Row errors are reported in ``result``, never raised."""
        self._wait()
        self.result.errors.sort(key=lambda e: e.index)
        if self._failed:
            self.result.committed = False
            self.result.created = self.result.updated = 0
            raise _Rollback
        # Every other accepted row changed nothing: it matched a stored record with the same
        # values, or a later row of the batch for the same external_id took its place.
        self.result.unchanged = self.result.ok - self.result.created - self.result.updated
        self.result.committed = True
        return self.result


def ingest_frames(
    *,
    client: Client,
    kind: str,
    columns: list[str],
    frames: Iterable[pd.DataFrame],
    partial: bool = False,
    on_error: Callable[[RowError], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Validate and write frames of one kind in one transaction."""
    check_columns(kind, columns)
    batch = IngestBatch(
        client=client, kind=kind, columns=columns, partial=partial, on_error=on_error
    )
    with batch:
        for frame in frames:
            batch.add(frame)
            if on_progress:
                on_progress(len(frame))
        batch.finish()
    return batch.result


def records_to_frame(kind: str, records: list[Any]) -> tuple[pd.DataFrame, list[RowError]]:
    """JSON records -> a frame of strings (objects and arrays re-serialised as JSON text).

    A record that is not an object, or has unknown fields, is rejected here with its index.
    """
    spec = SPECS[kind]
    known = set(spec.field_names)
    seen_keys: set[str] = set()
    rows: list[dict[str, str | None]] = []
    index: list[int] = []
    errors: list[RowError] = []
    for i, record in enumerate(records):
        if isinstance(record, RejectedRow):  # a value the body reader refused
            errors.extend(record.errors)
            continue
        if not isinstance(record, dict):
            errors.append(RowError(i, "", "invalid_row", NOT_AN_OBJECT, str(record)[:VALUE_SHOWN]))
            continue
        unknown = [k for k in record if k not in known]
        if unknown:
            errors.extend(RowError(i, k, "unknown_field", UNKNOWN_FIELD) for k in unknown)
            continue
        row: dict[str, str | None] = {}
        seen_keys.update(record)
        for key, value in record.items():
            if value is None:
                row[key] = None
            elif isinstance(value, dict | list):
                row[key] = json.dumps(value, ensure_ascii=False)
            elif isinstance(value, bool):
                row[key] = "true" if value else "false"
            else:
                row[key] = str(value)
        rows.append(row)
        index.append(i)
    frame = pd.DataFrame.from_records(rows, index=index, columns=list(spec.field_names))
    frame = frame[[c for c in spec.field_names if c in seen_keys]]
    frame = frame.astype(object).where(frame.notna(), None)
    return frame, errors


def ingest_records(
    *, client: Client, kind: str, records: list[Any], partial: bool = False
) -> IngestResult:
    """The bulk API and webhooks: a list of JSON objects, row numbers are list indexes."""
    if kind not in SPECS:
        raise BatchError(
            "unknown_kind", _("неизвестный тип данных %(kind)s") % {"kind": repr(kind)}
        )
    frame, shape_errors = records_to_frame(kind, records)
    missing = [c for c in SPECS[kind].required if c not in frame.columns]
    for column in missing:
        frame[column] = None  # reported per row as "обязательное поле"
    batch = IngestBatch(client=client, kind=kind, columns=list(frame.columns), partial=partial)
    with batch:
        shape_rejected = {e.index for e in shape_errors}
        for error in shape_errors:
            batch._reject(error)
        batch.result.total += len(shape_rejected)
        batch.result.rejected += len(shape_rejected)
        batch.add(frame)
        batch.finish()
    return batch.result


class _NulWatch(io.RawIOBase):
    """A binary file read through, noting whether any NUL byte has gone by."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw
        self.seen_nul = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        if not self.seen_nul and b"\x00" in data:
            self.seen_nul = True
        return size


def read_csv_frames(
    file: Any,
    *,
    kind: str,
    delimiter: str = ",",
    encoding: str = "utf-8",
    chunk_rows: int = 500_000,
) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """Stream a CSV file as frames of strings indexed by spreadsheet row number (header = 1)."""
    watch = None
    if isinstance(file, io.BufferedIOBase | io.RawIOBase):
        watch = _NulWatch(file)  # binary: its bytes tell whether any text may hold a NUL
        file = io.BufferedReader(watch, 1 << 20)
    try:
        reader = pd.read_csv(
            file,
            sep=delimiter,
            encoding=encoding,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            chunksize=chunk_rows,
            encoding_errors="strict",
        )
        first = next(reader, None)
    except UnicodeDecodeError as exc:
        raise BatchError(
            "bad_encoding",
            _("файл не в кодировке %(encoding)s: укажите --encoding (например, cp1251)")
            % {"encoding": encoding},
        ) from exc
    except (pd.errors.EmptyDataError, StopIteration) as exc:
        raise BatchError("empty_file", _("пустой файл: нет строки заголовка")) from exc
    except pd.errors.ParserError as exc:
        raise BatchError("bad_csv", _("CSV не читается: %(error)s") % {"error": exc}) from exc
    if first is None:
        raise BatchError("empty_file", _("пустой файл"))
    columns = [str(c).strip().lstrip("\ufeff") for c in first.columns]
    check_columns(kind, columns)

    def frames() -> Iterator[pd.DataFrame]:
        offset = 2
        chunk = first
        while chunk is not None:
            chunk.columns = columns
            chunk.index = pd.RangeIndex(offset, offset + len(chunk))
            # Strictly decoded bytes hold no lone surrogate; without a NUL byte read so far
            # (pandas reads a chunk's bytes before it parses it), no value holds a NUL.
            chunk.attrs[TEXT_CHECKED] = watch is not None and not watch.seen_nul
            offset += len(chunk)
            yield chunk
            try:
                chunk = next(reader, None)
            except UnicodeDecodeError as exc:
                raise BatchError(
                    "bad_encoding",
                    _("строка ~%(row)s: файл не в кодировке %(encoding)s; укажите --encoding")
                    % {"row": offset, "encoding": encoding},
                ) from exc
            except pd.errors.ParserError as exc:
                raise BatchError(
                    "bad_csv",
                    _("CSV не читается около строки %(row)s: %(error)s")
                    % {"row": offset, "error": exc},
                ) from exc

    return columns, frames()
