"""The scoring pipeline: extract a client's orders, compute every score, write them in bulk.

On PostgreSQL, paid orders come as whole-column binary arrays from ``COPY ... TO STDOUT`` (no
per-row parsing), read in block ranges over two connections sharing one exported snapshot; the
scores go back with one binary ``COPY`` built by numpy, replacing the client's rows in one
transaction on a helper connection that works while this process computes. On SQLite (the
embedded first run) the same steps go through plain queries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency import pgcopy
from agency.audit import audit_log
from agency.errors import ConflictError, ServiceError
from agency.jobs import ACTIVE_STATES, JobLost, enqueue_after_commit, job_audit_source
from agency.recovery import job_recover
from clients.models import Client, Customer, Event, Order

from . import lifecycle, recommend
from .models import CustomerRecommendation, CustomerScore, ScoringRun, ScoringSettings
from .scoring import SCORE_COLUMNS, ScoringConfig, compute_scores, holdout_check

logger = logging.getLogger(__name__)

Progress = Callable[[int, str], None]


def scoring_settings_for(client: Client) -> ScoringSettings:
    found = ScoringSettings.objects.for_client(client).first()
    return found or ScoringSettings(client=client)


class ScoringSettingsError(ServiceError):
    """Scoring settings that make no sense; ``field`` names the setting."""

    default_code = "invalid_scoring_settings"


# What each setting may be: (lowest, highest, why). Days up to ten years.
SCORING_SETTING_BOUNDS: dict[str, tuple[Decimal, Decimal, Any]] = {
    "onboarding_days": (Decimal(1), Decimal(3650), gettext_lazy("от 1 до 3650 дней")),
    "at_risk_after_days": (Decimal(1), Decimal(3650), gettext_lazy("от 1 до 3650 дней")),
    "win_back_after_days": (Decimal(1), Decimal(3650), gettext_lazy("от 1 до 3650 дней")),
    "clv_months": (Decimal(1), Decimal(60), gettext_lazy("от 1 до 60 месяцев")),
    "monthly_discount_rate": (
        Decimal(0),
        Decimal("0.5"),
        gettext_lazy(
            "доля от 0 до 0,5 в месяц (0,01 — 1 % в месяц); отрицательная ставка завышает CLV"
        ),
    ),
    "gross_margin": (
        Decimal("0.0001"),
        Decimal(1),
        gettext_lazy(
            "доля больше 0 и не больше 1 (0,35 — 35 %): при нулевой марже CLV всех равен нулю"
        ),
    ),
    "holdout_days": (Decimal(7), Decimal(730), gettext_lazy("от 7 до 730 дней")),
    "recommendations_count": (Decimal(1), Decimal(20), gettext_lazy("от 1 до 20 товаров")),
}


def scoring_settings_validate(values: dict[str, Any]) -> None:
    """Refuse settings that make no sense (:class:`ScoringSettingsError` naming the first
    setting at fault): each within its bounds, the win-back threshold not below the at-risk
    one. The one check of the admin form, the API and every scoring run."""
    for name, (lowest, highest, rule) in SCORING_SETTING_BOUNDS.items():
        value = values.get(name)
        if value is None:
            continue
        try:
            number = Decimal(str(value))
        except ArithmeticError:
            number = None
        if number is None or not number.is_finite() or not lowest <= number <= highest:
            label = ScoringSettings._meta.get_field(name).verbose_name
            raise ScoringSettingsError(
                message=_("%(setting)s: %(rule)s.") % {"setting": label, "rule": rule},
                field=name,
            )
    at_risk, win_back = values.get("at_risk_after_days"), values.get("win_back_after_days")
    if at_risk is not None and win_back is not None and win_back < at_risk:
        raise ScoringSettingsError(
            message=_("Порог возврата (win-back) не может быть меньше порога зоны риска."),
            field="win_back_after_days",
        )


def scoring_settings_values(settings: ScoringSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in SCORING_SETTING_BOUNDS}


def scoring_settings_save(
    *,
    client: Client,
    values: dict[str, Any],
    actor: Any = None,
    source: str,
    ip: str | None = None,
) -> ScoringSettings:
    """Change the client's scoring settings (created on first change); settings not in
    ``values`` keep theirs. Refused with :class:`ScoringSettingsError` when they make no
    sense; audited."""
    unknown = set(values) - set(SCORING_SETTING_BOUNDS)
    if unknown:
        raise ScoringSettingsError(
            message=f"Неизвестная настройка: {', '.join(sorted(unknown))}.",
            field=sorted(unknown)[0],
        )
    with transaction.atomic():
        settings = ScoringSettings.objects.for_client(
            client
        ).select_for_update().first() or ScoringSettings(client=client)
        merged = {**scoring_settings_values(settings), **values}
        scoring_settings_validate(merged)
        for name, value in values.items():
            setattr(settings, name, value)
        settings.save()
        audit_log(
            action="scoring_settings_changed",
            source=source,
            actor=actor,
            client=client,
            obj=settings,
            details={name: str(value) for name, value in values.items()},
            ip=ip,
        )
    return settings


def scoring_config_for(client: Client) -> ScoringConfig:
    """The run's configuration from the client's settings, checked again (settings stored
    before the checks existed may not pass: the run then fails naming the setting)."""
    s = scoring_settings_for(client)
    scoring_settings_validate(scoring_settings_values(s))
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
        recommendations=s.recommendations_count,
    )


# --------------------------------------------------------------------------------------------
# Extraction


#: Reads of a table at least this big (8 kB blocks) are split by block range over this many
#: connections: PostgreSQL runs one COPY on one core, and the client only waits meanwhile.
_SPLIT_MIN_BLOCKS = 16_384
_SPLIT_PARTS = 2
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def _in_snapshot(snapshot: str, read: Callable[[], Any]) -> Any:
    """``read()`` on this thread's own connection, in the exported ``snapshot`` (then closed)."""
    if not _SNAPSHOT_ID.match(snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            return read()
    finally:
        connection.close()


def _paid_order_part(
    client_id: int, blocks: tuple[int, int | None] | None
) -> list[list[np.ndarray]]:
    """customer_id, placed_at (PostgreSQL microseconds, UTC) and amount in kopecks of the
    client's paid orders, optionally only those in a range of the table's blocks: per column,
    big-endian views of the received arrays."""
    where = "client_id = %s AND status = 'paid'"
    params: list[Any] = [client_id]
    if blocks is not None:
        first, end = blocks
        where += " AND ctid >= %s::tid"
        params.append(f"({first},0)")
        if end is not None:
            where += " AND ctid < %s::tid"
            params.append(f"({end},0)")
    # Whole columns as binary arrays: a few COPY messages, no per-row parsing (a row per
    # message costs the driver more than the server's aggregation).
    rows = pgcopy.copy_out_binary(
        "SELECT array_agg(customer_id), array_agg(placed_at), array_agg((amount * 100)::int8) "
        f"FROM {Order._meta.db_table} WHERE {where}",  # noqa: S608
        params,
    )
    return [[pgcopy.array_items(r[i], "i8") for r in rows] for i in range(3)]


def _customer_id_array(client_id: int) -> np.ndarray:
    rows = pgcopy.copy_out_binary(
        f"SELECT array_agg(id) FROM {Customer._meta.db_table} "  # noqa: S608
        "WHERE client_id = %s AND erased_at IS NULL",
        [client_id],
    )
    return np.sort(np.concatenate([pgcopy.array_values(r[0], "i8") for r in rows]))


def _wall_time(micros: np.ndarray, time_zone: str) -> np.ndarray:
    """Unix microseconds (UTC) as wall time in ``time_zone`` (datetime64[us]). In place when the
    zone's offset is the same all over the data's span (zones without DST since then, such as
    every Russian one since 2014); otherwise pandas converts each instant."""
    if len(micros):
        first, last = (
            pd.Timestamp(int(v), unit="us", tz="UTC") for v in (micros.min(), micros.max())
        )
        # Offsets change at most a few times a year: an hourly grid sees every change.
        grid = pd.date_range(first.floor("h"), last.ceil("h"), freq="h").tz_convert(time_zone)
        offsets = (grid.tz_localize(None) - grid.tz_convert(None)).unique()
        if len(offsets) == 1:
            micros += offsets[0] // pd.Timedelta(microseconds=1)
            return micros.view("datetime64[us]")
    local = (
        pd.DatetimeIndex(micros.view("datetime64[us]"))
        .tz_localize("UTC")
        .tz_convert(time_zone)
        .tz_localize(None)
    )
    return local.to_numpy()


def _orders_frame(parts: list[list[list[np.ndarray]]], time_zone: str) -> pd.DataFrame:
    """The orders frame from the parts' received arrays: each column allocated once and filled
    (byte order and type converted on the way), no intermediate copies of 10M rows."""
    chunks = [[chunk for part in parts for chunk in part[i]] for i in range(3)]
    total = sum(len(chunk) for chunk in chunks[0])
    customer_id = np.empty(total, dtype=np.int64)
    micros = np.empty(total, dtype=np.int64)
    amount = np.empty(total, dtype=np.float64)
    for out, column in zip((customer_id, micros, amount), chunks, strict=True):
        offset = 0
        for chunk in column:
            np.copyto(out[offset : offset + len(chunk)], chunk, casting="unsafe")
            offset += len(chunk)
    del chunks, parts
    micros += pgcopy.PG_EPOCH_US
    # Kopecks / 100 is the double nearest to the decimal amount, as amount::float8 would be.
    amount /= 100.0
    placed = _wall_time(micros, time_zone)
    return pd.DataFrame(
        {"customer_id": customer_id, "placed_at": placed, "amount": amount}, copy=False
    )


def _paid_orders_and_customers_pg(client: Client) -> tuple[pd.DataFrame, np.ndarray]:
    """Paid orders and customer ids from PostgreSQL, in one snapshot.

    A big orders table is read in block ranges over several connections at once, all in the
    snapshot this connection exports (so no order is seen twice or missed while rows move).
    Inside a caller's transaction, whose rows no other connection can see, everything is read
    here."""
    if connection.in_atomic_block:
        parts = [_paid_order_part(client.pk, None)]
        return _orders_frame(parts, client.time_zone), _customer_id_array(client.pk)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute(
            "SELECT pg_export_snapshot(), "
            "pg_relation_size(%s::regclass) / current_setting('block_size')::int8",
            [Order._meta.db_table],
        )
        snapshot, blocks = cursor.fetchone()
        if blocks < _SPLIT_MIN_BLOCKS:
            parts = [_paid_order_part(client.pk, None)]
            return _orders_frame(parts, client.time_zone), _customer_id_array(client.pk)
        step = -(-blocks // _SPLIT_PARTS)
        ranges = [(k * step, (k + 1) * step) for k in range(_SPLIT_PARTS)]
        ranges[-1] = (ranges[-1][0], None)  # blocks added since are read too
        with ThreadPoolExecutor(_SPLIT_PARTS - 1) as pool:
            others = [
                pool.submit(_in_snapshot, snapshot, partial(_paid_order_part, client.pk, r))
                for r in ranges[1:]
            ]
            parts = [_paid_order_part(client.pk, ranges[0])]
            customers = _customer_id_array(client.pk)
            parts += [future.result() for future in others]
    return _orders_frame(parts, client.time_zone), customers


def load_paid_orders(client: Client) -> pd.DataFrame:
    """customer_id, placed_at (wall time in the client's zone), amount: paid orders only."""
    if connection.vendor == "postgresql":
        return _paid_orders_and_customers_pg(client)[0]
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


def load_paid_orders_and_customers(client: Client) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`load_paid_orders` and :func:`load_customer_ids`, read in one snapshot."""
    if connection.vendor == "postgresql":
        return _paid_orders_and_customers_pg(client)
    return load_paid_orders(client), load_customer_ids(client)


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
    """Ids of the client's customers (not erased), ascending."""
    if connection.vendor == "postgresql":
        return _customer_id_array(client.pk)
    ids = (
        Customer.objects.for_client(client)
        .filter(erased_at__isnull=True)
        .values_list("pk", flat=True)
    )
    return np.fromiter(ids.iterator(chunk_size=100_000), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Writing


def _previous_segments(client: Client) -> list[tuple[str, np.ndarray]]:
    """The customers of each RFM segment in the client's current scores (the previous run)."""
    if connection.vendor == "postgresql":
        # One row per segment with its customers as a binary array, not one row per customer.
        rows = pgcopy.copy_out_binary(
            f"SELECT rfm_segment, array_agg(customer_id) FROM {CustomerScore._meta.db_table} "  # noqa: S608
            f"WHERE client_id = %s AND rfm_segment <> '' GROUP BY rfm_segment",
            [client.pk],
        )
        old = [(bytes(r[0]).decode(), pgcopy.array_values(r[1], "i8")) for r in rows]
    else:
        pairs = (
            CustomerScore.objects.for_client(client)
            .exclude(rfm_segment="")
            .values_list("rfm_segment", "customer_id")
        )
        by_segment: dict[str, list[int]] = {}
        for segment, customer_id in pairs.iterator(chunk_size=100_000):
            by_segment.setdefault(segment, []).append(customer_id)
        old = [(segment, np.array(ids, dtype=np.int64)) for segment, ids in by_segment.items()]
    return old


def _transitions(old: list[tuple[str, np.ndarray]], new: pd.Series) -> dict[str, dict[str, int]]:
    """How many customers moved from each RFM segment of the previous run to each of this one."""
    if not old:
        return {}
    new_codes, names = pd.factorize(new.fillna(""))
    out: dict[str, dict[str, int]] = {}
    for segment, ids in sorted(old):
        position = new.index.get_indexer(ids)
        counts = np.bincount(new_codes[position[position >= 0]], minlength=len(names))
        moved = {str(names[k]): int(counts[k]) for k in np.flatnonzero(counts) if names[k] != ""}
        if moved:
            out[segment] = dict(sorted(moved.items()))
    return out


def _numeric(column: Callable[[str], pd.Series], name: str) -> pgcopy.Field:
    return pgcopy.numeric_2(column(name), max_digits=CustomerScore._meta.get_field(name).max_digits)


def _score_fields(*, client: Client, run: ScoringRun, scores: pd.DataFrame) -> list[pgcopy.Field]:
    """The fields of ``_WRITE_COLUMNS``, in that order."""
    n = len(scores)
    since_2000 = timezone.now() - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    micros = since_2000 // dt.timedelta(microseconds=1)
    column = scores.__getitem__
    return [
        pgcopy.fixed(scores.index.to_numpy(), ">i8"),
        pgcopy.fixed(np.full(n, client.pk), ">i8"),
        pgcopy.fixed(np.full(n, run.pk), ">i8"),
        pgcopy.fixed(column("recency_days"), ">i4"),
        pgcopy.fixed(column("frequency"), ">i4"),
        _numeric(column, "monetary"),
        pgcopy.fixed(column("r_score"), ">i2"),
        pgcopy.fixed(column("f_score"), ">i2"),
        pgcopy.fixed(column("m_score"), ">i2"),
        pgcopy.text(column("rfm_segment")),
        pgcopy.text(column("lifecycle_stage")),
        pgcopy.fixed(column("at_risk"), "u1"),
        pgcopy.fixed(column("p_alive"), ">f8"),
        pgcopy.fixed(column("churn_probability"), ">f8"),
        pgcopy.fixed(column("expected_purchases_90d"), ">f8"),
        _numeric(column, "expected_order_value"),
        _numeric(column, "predicted_clv"),
        pgcopy.fixed(column("clv_percentile"), ">i2"),
        pgcopy.fixed(np.full(n, micros), ">i8"),
    ]


_WRITE_COLUMNS = ("customer_id", "client_id", "run_id", *SCORE_COLUMNS, "computed_at")


def write_scores(*, client: Client, run: ScoringRun, scores: pd.DataFrame) -> None:
    """Replace the client's score rows with ``scores`` in one transaction."""
    with transaction.atomic():
        _delete_scores(client)
        _insert_scores(client=client, run=run, scores=scores)


def _delete_scores(client: Client) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {CustomerScore._meta.db_table} WHERE client_id = %s",  # noqa: S608
            [client.pk],
        )


def _insert_scores(*, client: Client, run: ScoringRun, scores: pd.DataFrame) -> None:
    """Insert the rows of ``scores`` (the client's old rows already deleted)."""
    if connection.vendor == "postgresql":
        fields = _score_fields(client=client, run=run, scores=scores)
        with connection.cursor() as cursor:
            pgcopy.copy_in_fields(cursor, CustomerScore._meta.db_table, _WRITE_COLUMNS, fields)
        return
    frame = scores.copy()
    frame["monetary"] = frame["monetary"].round(2)
    for money in ("expected_order_value", "predicted_clv"):
        frame[money] = frame[money].round(2)
    for name in ("r_score", "f_score", "m_score", "clv_percentile", "recency_days"):
        frame[name] = frame[name].astype("Int64")
    frame["rfm_segment"] = frame["rfm_segment"].fillna("")
    frame["lifecycle_stage"] = frame["lifecycle_stage"].fillna("")
    frame.insert(0, "run_id", run.pk)
    frame.insert(0, "client_id", client.pk)
    frame.insert(0, "customer_id", frame.index.astype("int64"))
    frame["computed_at"] = timezone.now()
    frame = frame[list(_WRITE_COLUMNS)]
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    CustomerScore.objects.bulk_create([CustomerScore(**row) for row in records], batch_size=2000)


# --------------------------------------------------------------------------------------------
# Recommendations (next best offer): a step of the scoring run

# The client's paid order lines, read once: a product is an item's SKU (trimmed; items without
# one, or that are not objects, are skipped); a quantity that is not a whole number counts 1.
# One row comes back: the catalogue (each SKU's code, last name and last price as JSON, codes
# in SKU order) and the lines as whole-column binary arrays (a row per line would cost the
# driver a message each, see _paid_order_part).
_ORDER_LINES_SQL = rf"""
WITH lines AS MATERIALIZED (
    SELECT o.id AS order_id, o.customer_id, o.placed_at, i.sku,
           CASE jsonb_typeof(i.qty)
               WHEN 'number' THEN greatest(floor(i.qty::numeric), 1)::int8
               WHEN 'string' THEN CASE WHEN i.qty #>> '{{}}' ~ '^\s*[0-9]{{1,9}}(\.0*)?\s*$'
                                       THEN greatest(floor((i.qty #>> '{{}}')::numeric), 1)::int8
                                  END
           END AS qty,
           i.name,
           CASE jsonb_typeof(i.price)
               WHEN 'number' THEN CASE WHEN i.price::numeric >= 0 THEN i.price END
               WHEN 'string' THEN CASE WHEN i.price #>> '{{}}' ~ '^\s*[0-9]{{1,12}}(\.[0-9]+)?\s*$'
                                       THEN i.price END
           END AS price
    FROM {Order._meta.db_table} o
    CROSS JOIN LATERAL (
        SELECT btrim(e.item ->> 'sku') AS sku, e.item -> 'qty' AS qty,
               nullif(btrim(e.item ->> 'name'), '') AS name, e.item -> 'price' AS price
        FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(o.items) = 'array' THEN o.items ELSE '[]'::jsonb END
        ) AS e(item)
        WHERE jsonb_typeof(e.item) = 'object'
    ) AS i
    WHERE o.client_id = %s AND o.status = 'paid' AND i.sku <> ''
),
-- The last name and price of each SKU: those of its latest line with one (by time, then order,
-- then the greater value), found by the latest time per SKU and a join back to those lines.
latest AS (
    SELECT sku, row_number() OVER (ORDER BY sku COLLATE "C") - 1 AS code,
           max(placed_at) FILTER (WHERE name IS NOT NULL) AS named_at,
           max(placed_at) FILTER (WHERE price IS NOT NULL) AS priced_at
    FROM lines GROUP BY sku
),
named AS (
    SELECT l.sku, (max(ARRAY[lpad(l.order_id::text, 20, '0'), l.name]))[2] AS name
    FROM lines l JOIN latest t ON t.sku = l.sku AND t.named_at = l.placed_at
    WHERE l.name IS NOT NULL GROUP BY l.sku
),
priced AS (
    SELECT l.sku, (max(ARRAY[l.order_id::numeric, (l.price #>> '{{}}')::numeric]))[2] AS price
    FROM lines l JOIN latest t ON t.sku = l.sku AND t.priced_at = l.placed_at
    WHERE l.price IS NOT NULL GROUP BY l.sku
)
SELECT (SELECT coalesce(json_agg(json_build_array(t.sku, n.name, p.price) ORDER BY t.code), '[]')
        FROM latest t LEFT JOIN named n USING (sku) LEFT JOIN priced p USING (sku)),
       array_agg(l.order_id), array_agg(l.customer_id),
       array_agg((extract(epoch FROM l.placed_at) * 1000000)::int8), array_agg(t.code),
       array_agg(coalesce(l.qty, 1))
FROM lines l JOIN latest t USING (sku)
"""  # noqa: S608 (the table name only)


def load_order_lines(client: Client) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lines of the client's paid orders and the products' catalogue.

    Lines (every customer's, erased ones' too: anonymised orders count in what is bought
    together): ``order_id``, ``customer_id``, ``placed_at`` (UTC, naive), ``product`` (the SKU),
    ``qty``. The catalogue, indexed by product: ``name`` and ``price`` (the unit price as
    sent, a float) as last seen in the orders (``segments.recommend.product_catalog``; on
    PostgreSQL the same rule in the query)."""
    if connection.vendor == "postgresql":
        ((catalog, *columns),) = pgcopy.copy_out_binary(_ORDER_LINES_SQL, [client.pk])
        # json, not jsonb: the text as PostgreSQL wrote it.
        products = json.loads(bytes(catalog).decode()) if catalog is not None else []
        skus = np.array([p[0] for p in products], dtype=object)
        order_id, customer_id, micros, code, qty = (
            pgcopy.array_values(column, "i8") for column in columns
        )
        lines = pd.DataFrame(
            {
                "order_id": order_id,
                "customer_id": customer_id,
                "placed_at": micros.view("datetime64[us]"),  # Unix microseconds, UTC
                "product": skus[code] if len(skus) else np.empty(0, dtype=object),
                "qty": qty,
            }
        )
        table = pd.DataFrame(
            {
                "name": pd.Series([p[1] for p in products], index=skus, dtype=object),
                "price": pd.to_numeric(
                    pd.Series([p[2] for p in products], index=skus, dtype=object),
                    errors="coerce",
                ),
            },
            index=pd.Index(skus, name="product"),
        )
        return lines, table
    rows = []
    orders = (
        Order.objects.for_client(client)
        .filter(status=Order.Status.PAID)
        .values_list("pk", "customer_id", "placed_at", "items")
    )
    for order_id, customer_id, placed_at, items in orders.iterator(chunk_size=20_000):
        for item in items if isinstance(items, list) else []:
            sku = item.get("sku") if isinstance(item, dict) else None
            if sku is None or not str(sku).strip():
                continue
            qty = pd.to_numeric(item.get("qty"), errors="coerce")
            rows.append(
                (
                    order_id,
                    customer_id,
                    placed_at,
                    str(sku).strip(),
                    int(qty) if pd.notna(qty) and qty >= 1 and qty == int(qty) else 1,
                    item.get("name"),
                    item.get("price"),
                )
            )
    frame = pd.DataFrame(
        rows,
        columns=["order_id", "customer_id", "placed_at", "product", "qty", "name", "price"],
    )
    frame["placed_at"] = (
        pd.to_datetime(frame["placed_at"], utc=True).dt.tz_localize(None).astype("M8[us]")
    )
    frame["product"] = frame["product"].astype(object)
    frame["price"] = pd.to_numeric(frame["price"], errors="coerce")
    lines = frame[["order_id", "customer_id", "placed_at", "product", "qty"]]
    return lines, recommend.product_catalog(frame)


def _recommended_products(chosen: pd.DataFrame, catalog: pd.DataFrame) -> pd.Series:
    """One JSON list per customer (``CustomerRecommendation.products``), indexed by customer
    id: each distinct product's object is written once, then each customer's joined (``chosen``
    comes by customer, then rank)."""
    if chosen.empty:
        return pd.Series([], index=pd.Index([], dtype=np.int64), dtype=object)
    codes, products = pd.factorize(chosen["product"])
    names = catalog["name"].reindex(products)
    prices = catalog["price"].reindex(products)
    objects = np.array(
        [
            json.dumps(
                {
                    "id": str(product),
                    "name": name if isinstance(name, str) and name else str(product),
                    "price": None if pd.isna(price) else f"{price:.2f}",
                },
                ensure_ascii=False,
            )[:-1]
            for product, name, price in zip(products, names, prices, strict=True)
        ],
        dtype=object,
    )
    sources = np.array([', "source": "' + s + '"}' for s in recommend.SOURCES], dtype=object)
    items = objects[codes] + sources[chosen["source"].cat.codes.to_numpy()]
    customer = chosen["customer_id"].to_numpy()
    last = np.r_[customer[1:] != customer[:-1], True]
    first = np.r_[True, last[:-1]]
    items = np.where(first, "[", "") + items + np.where(last, "]", ", ")
    starts = np.flatnonzero(first)
    return pd.Series(np.add.reduceat(items, starts), index=customer[starts])


def write_recommendations(*, client: Client, run: ScoringRun, products: pd.Series) -> None:
    """Replace the client's recommendation rows with ``products`` (JSON lists of the customers
    of its index) in one transaction."""
    table = CustomerRecommendation._meta.db_table
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE client_id = %s", [client.pk])  # noqa: S608
        if connection.vendor == "postgresql":
            n = len(products)
            micros = (now - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
            fields = [
                pgcopy.fixed(products.index.to_numpy(dtype=np.int64), ">i8"),
                pgcopy.fixed(np.full(n, client.pk), ">i8"),
                pgcopy.fixed(np.full(n, run.pk), ">i8"),
                pgcopy.jsonb(products),
                pgcopy.fixed(np.full(n, micros), ">i8"),
            ]
            columns = ("customer_id", "client_id", "run_id", "products", "computed_at")
            with connection.cursor() as cursor:
                pgcopy.copy_in_fields(cursor, table, columns, fields)
            return
        CustomerRecommendation.objects.bulk_create(
            [
                CustomerRecommendation(
                    client=client,
                    customer_id=int(customer_id),
                    run=run,
                    products=json.loads(text),
                    computed_at=now,
                )
                for customer_id, text in products.items()
            ],
            batch_size=2000,
        )


def _timed_order_lines(client: Client) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    t = time.perf_counter()
    lines, catalog = load_order_lines(client)
    return lines, catalog, round(time.perf_counter() - t, 3)


def _order_lines_on_own_connection(client: Client) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    try:
        return _timed_order_lines(client)
    finally:
        connection.close()  # this thread's own connection


def order_lines_ahead(client: Client) -> Future:
    """:func:`load_order_lines` (and how long it took) started now: on PostgreSQL outside a
    transaction, on a helper thread's own connection, so that the database unpacks the items
    while the run computes the scores; otherwise here."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        pool = ThreadPoolExecutor(1, thread_name_prefix="scoring-order-lines")
        future = pool.submit(_order_lines_on_own_connection, client)
        pool.shutdown(wait=False)  # the thread ends with its read
        return future
    future = Future()
    try:
        future.set_result(_timed_order_lines(client))
    except Exception as exc:
        future.set_exception(exc)
    return future


def recommendations_compute(
    *,
    client: Client,
    customers: np.ndarray,
    as_of: dt.date,
    n: int,
    order_lines: Future | None = None,
) -> tuple[pd.Series, dict[str, Any], dict[str, float]]:
    """Each customer's products (:func:`segments.recommend.recommend` on the client's paid
    order lines up to the end of ``as_of`` in the client's zone): (JSON lists by customer id,
    a summary for the run's parameters, stage seconds). ``order_lines``: the read started
    ahead (:func:`order_lines_ahead`), else it is done here."""
    seconds: dict[str, float] = {}
    lines, catalog, seconds["recommend_extract"] = (
        order_lines or order_lines_ahead(client)
    ).result()
    t = time.perf_counter()
    end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time.min, tzinfo=client.tzinfo)
    now = pd.Timestamp(end.astimezone(dt.UTC).replace(tzinfo=None))
    chosen = recommend.recommend(lines, customers=customers, now=now, n=n)
    products = _recommended_products(chosen, catalog)
    seconds["recommend"] = round(time.perf_counter() - t, 3)
    from_co_purchase = chosen["source"].cat.codes.to_numpy() == 0
    summary = {
        "per_customer": n,
        "order_lines": len(lines),
        "products": len(catalog),
        "customers": len(products),
        "customers_with_co_purchase": int(
            len(np.unique(chosen["customer_id"].to_numpy()[from_co_purchase]))
        ),
        "co_purchase": int(from_co_purchase.sum()),
        "best_seller": int((~from_co_purchase).sum()),
    }
    return products, summary, seconds


# --------------------------------------------------------------------------------------------
# Runs


class ScoringRunActive(ConflictError):
    """A run of the client is already pending or running: ``run`` is that one."""

    default_code = "scoring_run_active"

    def __init__(self, run: ScoringRun) -> None:
        super().__init__(
            message=_("Скоринг клиента уже идёт; дождитесь его окончания."), extra={"id": run.pk}
        )
        self.run = run


def _active_run(client: Client) -> ScoringRun | None:
    return (
        ScoringRun.objects.for_client(client)
        .filter(status__in=ACTIVE_STATES)
        .order_by("-created_at")
        .first()
    )


def scoring_run_request(
    *,
    client: Client,
    actor: Any = None,
    source: str,
    as_of: dt.date | None = None,
    ip: str | None = None,
    enqueue: bool = True,
) -> ScoringRun:
    """A pending run of every score of the client, audited and sent to a worker after commit
    (``enqueue=False``: the caller executes it in the foreground, as ``score_client`` does).

    At most one run of a client is pending or running (a partial unique constraint holds it):
    while one is, the request is refused with :class:`ScoringRunActive` naming it. A run whose
    worker is gone (``is_stalled``: no heartbeat, or never picked up) does not block: it ends
    as failed and the new one takes its place.
    """
    with transaction.atomic():
        # Requests of one client take turns; the constraint stays the last word.
        Client.objects.select_for_update(no_key=True).filter(pk=client.pk).first()
        active = _active_run(client)
        if active is not None:
            if not active.is_stalled():
                raise ScoringRunActive(active)
            ScoringRun.objects.for_client(client).filter(
                pk=active.pk, status__in=ACTIVE_STATES
            ).update(
                status=ScoringRun.Status.FAILED,
                finished_at=timezone.now(),
                error="Запуск потерян (исполнитель не отвечал); заменён новым запуском.",
            )
        try:
            with transaction.atomic():
                run = ScoringRun.objects.create(
                    client=client,
                    triggered_by=actor if getattr(actor, "pk", None) else None,
                    source=source,
                    as_of=as_of,
                )
        except IntegrityError:
            active = _active_run(client)  # created by a request that did not wait for the lock
            if active is None:
                raise
            raise ScoringRunActive(active) from None
        audit_log(
            action="scoring_run_started",
            source=job_audit_source(source),
            actor=actor,
            client=client,
            obj=run,
            details={"source": source},
            ip=ip,
        )
        if enqueue:
            from .tasks import scoring_run_task

            enqueue_after_commit(scoring_run_task, run.pk)
    return run


class _ScoresReplacement:
    """Replaces a client's scores in one transaction on a helper thread's own connection, around
    the computation: the old rows' segments are read and the rows deleted while the new scores
    are computed, the new rows copied in and committed while the holdout check runs (the
    database works on its core while ours computes). Readers see the old rows until the commit.

    Inside a caller's transaction (another connection would not see its rows) and on SQLite
    (one writer at a time) the same steps run here: segments read first, delete and insert at
    the end in one transaction."""

    def __init__(self, client: Client) -> None:
        self.client = client
        inline = connection.vendor != "postgresql" or connection.in_atomic_block
        self._pool = None if inline else ThreadPoolExecutor(1, thread_name_prefix="scoring-db")
        self._previous = self._run(self._begin)

    def previous_segments(self) -> list[tuple[str, np.ndarray]]:
        return self._previous.result()

    def write(self, *, run: ScoringRun, scores: pd.DataFrame) -> Future:
        """Insert ``scores`` and commit (in the background when there is a helper thread)."""
        if self._pool is None:
            return self._run(write_scores, client=self.client, run=run, scores=scores)
        return self._run(self._finish, run=run, scores=scores)

    def close(self, *, failed: bool) -> None:
        """Wait for the helper; roll its transaction back if the run failed on the way."""
        if self._pool is None:
            return
        if failed:
            self._pool.submit(self._abort)
        self._pool.shutdown(wait=True)

    def _run(self, fn: Callable[..., Any], /, **kwargs: Any) -> Future:
        if self._pool is not None:
            return self._pool.submit(fn, **kwargs)
        future: Future = Future()
        try:
            future.set_result(fn(**kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def _begin(self) -> list[tuple[str, np.ndarray]]:
        if self._pool is None:
            return _previous_segments(self.client)
        transaction.set_autocommit(False)  # until _finish or _abort, on the helper's connection
        previous = _previous_segments(self.client)
        _delete_scores(self.client)
        return previous

    def _finish(self, *, run: ScoringRun, scores: pd.DataFrame) -> None:
        try:
            _insert_scores(client=self.client, run=run, scores=scores)
            connection.commit()
        finally:
            self._abort()  # a no-op after the commit; closes the helper's connection

    @staticmethod
    def _abort() -> None:
        if connection.connection is not None and not connection.get_autocommit():
            connection.rollback()
        connection.close()


def scoring_run_execute(
    *, run: ScoringRun, as_of: dt.date | None = None, on_progress: Progress | None = None
) -> ScoringRun:
    """Compute and write every score of the run's client. A failure is recorded on the run (and
    re-raised), never silent. A run already taken by another worker is left alone; one taken
    from this worker meanwhile (recovered, :class:`JobLost`) is left to the new attempt."""
    if not run.claim(progress=1):
        return run
    with run.beating():
        return _scoring_run_work(run, as_of=as_of, on_progress=on_progress)


def _scoring_run_work(
    run: ScoringRun, *, as_of: dt.date | None, on_progress: Progress | None
) -> ScoringRun:
    client = run.client
    as_of = as_of or run.as_of or timezone.localtime(timezone.now(), client.tzinfo).date()
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def progress(percent: int, stage: str) -> None:
        run.progress_write(progress=percent, stage=stage)
        if on_progress:
            on_progress(percent, stage)

    replacement: _ScoresReplacement | None = None
    order_lines: Future | None = None
    try:
        config = scoring_config_for(client)
        progress(5, "выгрузка заказов")
        t = time.perf_counter()
        orders, customers = load_paid_orders_and_customers(client)
        since = timezone.now() - dt.timedelta(days=config.thresholds.intent_window_days + 1)
        events = load_intent_events(
            client, since=since, types=tuple(config.thresholds.intent_event_types)
        )
        known = orders["customer_id"].isin(customers).to_numpy()
        if not known.all():  # orders of erased customers
            orders = orders[known]
        seconds["extract"] = round(time.perf_counter() - t, 3)
        # Items are unpacked by the database while the scores are computed here.
        order_lines = order_lines_ahead(client)
        replacement = _ScoresReplacement(client)
        progress(30, "RFM, жизненный цикл, модели CLV")
        result = compute_scores(
            orders=orders,
            customers=customers,
            events=events,
            as_of=as_of,
            config=config,
            check_holdout=False,
        )
        del orders
        _check_clv(result)
        out_of_range = _bound_money(result.scores)
        if out_of_range:
            result.parameters["out_of_range"] = out_of_range
        transitions = _transitions(replacement.previous_segments(), result.scores["rfm_segment"])
        progress(70, "рекомендации товаров")
        recommended, result.parameters["recommendations"], recommend_seconds = (
            recommendations_compute(
                client=client,
                customers=customers,
                as_of=as_of,
                n=config.recommendations,
                order_lines=order_lines,
            )
        )
        seconds.update(recommend_seconds)
        progress(80, "запись оценок")
        t = time.perf_counter()
        # The holdout check (a report no score depends on) runs while the database writes.
        written = replacement.write(run=run, scores=result.scores)
        try:
            holdout_check(result, as_of=as_of, config=config)
        finally:
            written.result()
        seconds.update(result.stage_seconds)
        seconds["write"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        write_recommendations(client=client, run=run, products=recommended)
        seconds["recommend_write"] = round(time.perf_counter() - t, 3)
        run.finish(
            ScoringRun.Status.SUCCEEDED,
            as_of=as_of,
            duration_seconds=round(time.perf_counter() - started, 3),
            progress=100,
            stage="готово",
            customers=len(result.scores),
            orders=int(known.sum()),
            parameters=result.parameters,
            holdout=_json_safe(result.holdout),
            stage_seconds=seconds,
            rfm_transitions=transitions,
        )
    except JobLost:
        if replacement is not None:
            replacement.close(failed=True)
        raise
    except ServiceError as exc:  # a refusal with its reason (settings, an empty CLV)
        if replacement is not None:
            replacement.close(failed=True)
        logger.warning("scoring run %s of client %s refused: %s", run.pk, client.pk, exc.message)
        run.finish(
            ScoringRun.Status.FAILED,
            duration_seconds=round(time.perf_counter() - started, 3),
            error=exc.message,
            stage_seconds=seconds,
        )
        return run
    except Exception as exc:
        if replacement is not None:
            replacement.close(failed=True)
        logger.exception("scoring run %s of client %s failed", run.pk, client.pk)
        run.finish(
            ScoringRun.Status.FAILED,
            duration_seconds=round(time.perf_counter() - started, 3),
            error=f"{type(exc).__name__}: {exc}",
            stage_seconds=seconds,
        )
        raise
    finally:
        if order_lines is not None:
            order_lines.exception()  # a run that failed first waits for the read to end
    replacement.close(failed=False)
    if on_progress:
        on_progress(100, "готово")
    return run


class ScoringRunRefused(ServiceError):
    """The run computed something no one should use (the scores are not written)."""

    default_code = "scoring_run_refused"


def _check_clv(result: Any) -> None:
    """A fitted CLV model that gives no customer a CLV is a failed run, not a success with an
    empty column (the previous scores stay). A model not fitted for want of repeat purchases is
    no failure: the run says so in its holdout report."""
    if "bgnbd" not in result.parameters:
        return
    clv = result.scores["predicted_clv"]
    if not np.isfinite(clv.to_numpy(dtype=float, na_value=np.nan)).any():
        raise ScoringRunRefused(
            message="Прогноз CLV пуст: модель не дала значения ни одному покупателю "
            "(проверьте суммы заказов и настройки скоринга: маржу, ставку дисконтирования); "
            "прежние оценки оставлены."
        )


_MONEY_COLUMNS = ("monetary", "expected_order_value", "predicted_clv")


def _bound_money(scores: pd.DataFrame) -> dict[str, int]:
    """Money beyond what the score columns hold (numeric(18, 2): sums of many huge orders, a
    model gone wild) never fails the client's run: such a prediction is left empty, such a sum
    is held at the column's limit. Returns how many values of each column were changed."""
    changed: dict[str, int] = {}
    for name in _MONEY_COLUMNS:
        field = CustomerScore._meta.get_field(name)
        limit = 10.0 ** (field.max_digits - field.decimal_places) - 1.0
        values = scores[name].to_numpy(dtype=float, na_value=np.nan)
        beyond = ~np.isnan(values) & ~(np.abs(values) <= limit)
        if beyond.any():
            if field.null:
                values = np.where(beyond, np.nan, values)
            else:
                values = np.clip(np.nan_to_num(values, nan=0.0), -limit, limit)
            scores[name] = values
            changed[name] = int(beyond.sum())
    return changed


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
    worker died (no heartbeat; their write transaction rolled back, so a rerun starts clean)."""
    return job_recover(ScoringRun, now=now)


def scoring_runs_due(*, now: dt.datetime | None = None) -> list[int]:
    """Daily fan-out: a run requested (and sent to a worker) for every active client without a
    run today; a client whose run is still under way is skipped."""
    now = now or timezone.now()
    created = []
    for client in Client.objects.active():
        today = timezone.localtime(now, client.tzinfo).date()
        start = dt.datetime.combine(today, dt.time.min, tzinfo=client.tzinfo)
        if ScoringRun.objects.for_client(client).filter(created_at__gte=start).exists():
            continue
        try:
            created.append(scoring_run_request(client=client, source="beat").pk)
        except ScoringRunActive:
            continue
    return created
