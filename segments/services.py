"""The scoring pipeline: extract a client's orders, compute every score, write them in bulk.

Extraction uses PostgreSQL ``COPY ... TO STDOUT`` parsed by Arrow (10M orders in seconds, no
per-row Python); scores are written by replacing the client's rows with one ``COPY``. On SQLite
(the embedded first run) the same steps go through plain queries.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import connection, transaction
from django.utils import timezone

from agency.audit import audit_log
from agency.recovery import stalled_jobs_reset
from clients.models import Client, Customer, Event, Order

from . import lifecycle
from .models import CustomerScore, ScoringRun, ScoringSettings
from .scoring import SCORE_COLUMNS, ScoringConfig, compute_scores

logger = logging.getLogger(__name__)

Progress = Callable[[int, str], None]


def scoring_settings_for(client: Client) -> ScoringSettings:
    found = ScoringSettings.objects.for_client(client).first()
    return found or ScoringSettings(client=client)


def scoring_config_for(client: Client) -> ScoringConfig:
    s = scoring_settings_for(client)
    return ScoringConfig(
        thresholds=lifecycle.LifecycleThresholds(
            onboarding_days=s.onboarding_days,
            at_risk_after_days=s.at_risk_after_days,
            winback_after_days=s.win_back_after_days,
        ),
        clv_months=s.clv_months,
        monthly_discount_rate=float(s.monthly_discount_rate),
        gross_margin=float(s.gross_margin),
        holdout_days=s.holdout_days,
    )


# --------------------------------------------------------------------------------------------
# Extraction


def _copy_out(sql: str, params: list[Any], schema: dict[str, pa.DataType]) -> pd.DataFrame:
    """Run ``COPY (sql) TO STDOUT`` and parse the CSV with Arrow (multi-threaded)."""
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
            for chunk in copy:
                buffer.write(chunk)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({name: pd.Series(dtype=_pandas_dtype(t)) for name, t in schema.items()})
    table = pa_csv.read_csv(
        buffer,
        read_options=pa_csv.ReadOptions(column_names=list(schema)),
        convert_options=pa_csv.ConvertOptions(column_types=schema),
    )
    return table.to_pandas()


_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 (PostgreSQL's epoch) in Unix microseconds
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _binary_copy_rows(sql: str, params: list[Any]) -> list[list[memoryview | None]]:
    """The rows of ``COPY (sql) TO STDOUT (FORMAT binary)``, each a list of raw field values.

    Meant for queries returning a few rows of whole-column arrays (``array_agg``): the driver
    then handles a few large messages instead of one message per order."""
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)", params) as copy:
            data = memoryview(b"".join(copy))
    if bytes(data[:11]) != _COPY_SIGNATURE:
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


def _array_values(field: memoryview | None, dtype: str) -> np.ndarray:
    """A one-dimensional, NULL-free PostgreSQL array of 8-byte values (binary) as numpy."""
    if field is None:
        return np.empty(0, dtype=dtype)
    ndim, has_null, _oid = struct.unpack_from(">iii", field, 0)
    if ndim == 0:
        return np.empty(0, dtype=dtype)
    if ndim != 1 or has_null:
        raise ValueError("expected a one-dimensional array without NULLs")
    (size,) = struct.unpack_from(">i", field, 12)
    items = np.frombuffer(
        field, dtype=np.dtype([("length", ">i4"), ("value", ">" + dtype)]), count=size, offset=20
    )
    return items["value"].astype(dtype)


def _pandas_dtype(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "datetime64[us]"
    if pa.types.is_integer(arrow_type):
        return "int64"
    if pa.types.is_floating(arrow_type):
        return "float64"
    return "object"


def load_paid_orders(client: Client) -> pd.DataFrame:
    """customer_id, placed_at (wall time in the client's zone), amount: paid orders only."""
    table = Order._meta.db_table
    if connection.vendor == "postgresql":
        # Whole columns as binary arrays (a few COPY messages, no per-row parsing); instants
        # are converted to the client's wall time here, vectorised, not by the server.
        rows = _binary_copy_rows(
            f"SELECT array_agg(customer_id), array_agg(placed_at), array_agg(amount::float8) "
            f"FROM {table} WHERE client_id = %s AND status = 'paid'",  # noqa: S608
            [client.pk],
        )
        customer_id = np.concatenate([_array_values(r[0], "i8") for r in rows])
        micros = np.concatenate([_array_values(r[1], "i8") for r in rows])
        amount = np.concatenate([_array_values(r[2], "f8") for r in rows])
        placed = (
            pd.DatetimeIndex((micros + _PG_EPOCH_US).view("datetime64[us]"))
            .tz_localize("UTC")
            .tz_convert(client.time_zone)
            .tz_localize(None)
        )
        return pd.DataFrame({"customer_id": customer_id, "placed_at": placed, "amount": amount})
    rows = Order.objects.for_client(client).filter(status=Order.Status.PAID)
    frame = pd.DataFrame(
        list(rows.values_list("customer_id", "placed_at", "amount")),
        columns=["customer_id", "placed_at", "amount"],
    )
    frame["placed_at"] = (
        pd.to_datetime(frame["placed_at"], utc=True)
        .dt.tz_convert(client.time_zone)
        .dt.tz_localize(None)
    )
    frame["amount"] = frame["amount"].astype(float)
    return frame


def load_intent_events(
    client: Client, *, since: dt.datetime, types: tuple[str, ...]
) -> pd.DataFrame:
    """Recent purchase-intent events (cart, product view, ...) for lifecycle stages."""
    rows = (
        Event.objects.for_client(client)
        .filter(type__in=types, occurred_at__gte=since)
        .values_list("customer_id", "occurred_at", "type")
    )
    frame = pd.DataFrame(
        list(rows.iterator(chunk_size=20_000)), columns=["customer_id", "occurred_at", "type"]
    )
    if len(frame):
        frame["occurred_at"] = (
            pd.to_datetime(frame["occurred_at"], utc=True)
            .dt.tz_convert(client.time_zone)
            .dt.tz_localize(None)
        )
    return frame


def load_customer_ids(client: Client) -> np.ndarray:
    ids = (
        Customer.objects.for_client(client)
        .filter(erased_at__isnull=True)
        .values_list("pk", flat=True)
    )
    return np.fromiter(ids.iterator(chunk_size=100_000), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Writing


def _transitions(client: Client, new: pd.Series) -> dict[str, dict[str, int]]:
    """How many customers moved from each RFM segment of the previous run to each of this one."""
    if connection.vendor == "postgresql":
        # One row per segment with its customers as a binary array, not one row per customer.
        rows = _binary_copy_rows(
            f"SELECT rfm_segment, array_agg(customer_id) FROM {CustomerScore._meta.db_table} "  # noqa: S608
            f"WHERE client_id = %s AND rfm_segment <> '' GROUP BY rfm_segment",
            [client.pk],
        )
        ids = [_array_values(r[1], "i8") for r in rows]
        old = pd.Series(
            np.repeat(
                np.array([bytes(r[0]).decode() for r in rows], dtype=object),
                [len(i) for i in ids],
            ),
            index=np.concatenate(ids) if ids else np.empty(0, dtype=np.int64),
            dtype=object,
        )
    else:
        old = pd.Series(
            dict(
                CustomerScore.objects.for_client(client)
                .exclude(rfm_segment="")
                .values_list("customer_id", "rfm_segment")
                .iterator(chunk_size=100_000)
            ),
            dtype=object,
        )
    if old.empty:
        return {}
    both = pd.DataFrame({"old": old, "new": new.reindex(old.index)}).dropna()
    both = both[both["new"] != ""]
    matrix = pd.crosstab(both["old"], both["new"])
    return {
        str(src): {str(dst): int(n) for dst, n in row.items() if n}
        for src, row in matrix.iterrows()
    }


_WRITE_COLUMNS = ("customer_id", "client_id", "run_id", *SCORE_COLUMNS, "computed_at")


def write_scores(*, client: Client, run: ScoringRun, scores: pd.DataFrame) -> None:
    """Replace the client's score rows with ``scores`` in one transaction."""
    frame = scores.copy()
    frame["monetary"] = frame["monetary"].round(2)
    for money in ("expected_order_value", "predicted_clv"):
        frame[money] = frame[money].round(2)
    for column in ("r_score", "f_score", "m_score", "clv_percentile", "recency_days"):
        frame[column] = frame[column].astype("Int64")
    frame["rfm_segment"] = frame["rfm_segment"].fillna("")
    frame["lifecycle_stage"] = frame["lifecycle_stage"].fillna("")
    frame.insert(0, "run_id", run.pk)
    frame.insert(0, "client_id", client.pk)
    frame.insert(0, "customer_id", frame.index.astype("int64"))
    now = timezone.now()
    frame["computed_at"] = now
    frame = frame[list(_WRITE_COLUMNS)]
    table = CustomerScore._meta.db_table
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {table} WHERE client_id = %s", [client.pk])  # noqa: S608
                buffer = pa.BufferOutputStream()
                pa_csv.write_csv(
                    pa.Table.from_pandas(frame, preserve_index=False),
                    buffer,
                    pa_csv.WriteOptions(include_header=False, quoting_style="needed"),
                )
                columns = ", ".join(_WRITE_COLUMNS)
                with cursor.cursor.copy(
                    f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)"
                ) as copy:
                    copy.write(buffer.getvalue().to_pybytes())
        else:
            CustomerScore.objects.for_client(client).delete()
            records = frame.astype(object).where(frame.notna(), None).to_dict("records")
            CustomerScore.objects.bulk_create(
                [CustomerScore(**row) for row in records], batch_size=2000
            )


# --------------------------------------------------------------------------------------------
# Runs


def scoring_run_create(*, client: Client, actor: Any = None, source: str = "admin") -> ScoringRun:
    """A pending run; the caller enqueues it (after commit) or executes it in the foreground."""
    run = ScoringRun.objects.create(
        client=client,
        triggered_by=actor if getattr(actor, "pk", None) else None,
        source=source,
    )
    audit_log(action="scoring_run_started", source=source, actor=actor, client=client, obj=run)
    return run


def _update_run(run: ScoringRun, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    ScoringRun.objects.for_client(run.client_id).filter(pk=run.pk).update(**fields)


def scoring_run_execute(
    *, run: ScoringRun, as_of: dt.date | None = None, on_progress: Progress | None = None
) -> ScoringRun:
    """Compute and write every score of the run's client. A failure is recorded on the run (and
    re-raised), never silent. A run already taken by another worker is left alone."""
    claimed = (
        ScoringRun.objects.for_client(run.client_id)
        .filter(pk=run.pk, status=ScoringRun.Status.PENDING)
        .update(status=ScoringRun.Status.RUNNING, started_at=timezone.now(), progress=1)
    )
    if not claimed:
        run.refresh_from_db()
        return run
    run.refresh_from_db()
    client = run.client
    as_of = as_of or timezone.localtime(timezone.now(), client.tzinfo).date()
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def progress(percent: int, stage: str) -> None:
        _update_run(run, progress=percent, stage=stage)
        if on_progress:
            on_progress(percent, stage)

    try:
        config = scoring_config_for(client)
        progress(5, "выгрузка заказов")
        t = time.perf_counter()
        orders = load_paid_orders(client)
        customers = load_customer_ids(client)
        since = timezone.now() - dt.timedelta(days=config.thresholds.intent_window_days + 1)
        events = load_intent_events(
            client, since=since, types=tuple(config.thresholds.intent_event_types)
        )
        orders = orders[orders["customer_id"].isin(customers)]
        seconds["extract"] = round(time.perf_counter() - t, 3)
        progress(30, "RFM, жизненный цикл, модели CLV")
        result = compute_scores(
            orders=orders, customers=customers, events=events, as_of=as_of, config=config
        )
        seconds.update(result.stage_seconds)
        progress(80, "запись оценок")
        t = time.perf_counter()
        transitions = _transitions(client, result.scores["rfm_segment"])
        write_scores(client=client, run=run, scores=result.scores)
        seconds["write"] = round(time.perf_counter() - t, 3)
        _update_run(
            run,
            status=ScoringRun.Status.SUCCEEDED,
            as_of=as_of,
            finished_at=timezone.now(),
            duration_seconds=round(time.perf_counter() - started, 3),
            progress=100,
            stage="готово",
            customers=len(result.scores),
            orders=len(orders),
            parameters=result.parameters,
            holdout=_json_safe(result.holdout),
            stage_seconds=seconds,
            rfm_transitions=transitions,
        )
    except Exception as exc:
        logger.exception("scoring run %s of client %s failed", run.pk, client.pk)
        _update_run(
            run,
            status=ScoringRun.Status.FAILED,
            finished_at=timezone.now(),
            duration_seconds=round(time.perf_counter() - started, 3),
            error=f"{type(exc).__name__}: {exc}",
            stage_seconds=seconds,
        )
        raise
    if on_progress:
        on_progress(100, "готово")
    return run


def _json_safe(value: Any) -> Any:
    """numpy scalars and arrays in model reports, made JSON-friendly."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def scoring_runs_recover(*, now: dt.datetime | None = None) -> list[int]:
    """Runs to send to a worker again: pending ones whose message was lost, running ones whose
    worker died (their write transaction rolled back, so a rerun starts clean)."""
    return stalled_jobs_reset(
        ScoringRun.objects.unscoped(),
        now=now,
        lost_after=dt.timedelta(minutes=30),
        reset={"progress": 0, "stage": ""},
    )


def scoring_runs_due(*, now: dt.datetime | None = None) -> list[int]:
    """Daily fan-out: a pending run for every active client without a run today."""
    now = now or timezone.now()
    created = []
    for client in Client.objects.active():
        today = timezone.localtime(now, client.tzinfo).date()
        start = dt.datetime.combine(today, dt.time.min, tzinfo=client.tzinfo)
        if ScoringRun.objects.for_client(client).filter(created_at__gte=start).exists():
            continue
        created.append(scoring_run_create(client=client, source="beat").pk)
    return created
