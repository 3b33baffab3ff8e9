"""Attribution's reads: a client's touchpoints, paid orders and predicted CLV loaded set-based
into numpy/pandas, and :func:`attribution_report`, every model side by side per channel and per
campaign with the CLV-weighted view (the one entry point of the API, the admin and the portal).

Touchpoints are ``clients.Event`` rows of one client:
- message engagement: ``email_click`` → channel ``email``, ``sms_click`` → ``sms``,
  ``push_open`` → ``push``; the campaign is the trigger chain (``campaigns.tracking`` writes
  ``properties.chain_id`` and ``message_id`` on each click), ``chain:<id>``, shown by the chain's
  name; an engagement event without a chain falls back to its utm_campaign;
- ad clicks carried by a Yandex click id (``properties.yclid``, as Direct's autotagging passes
  it): channel ``yandex/cpc``, campaign the utm_campaign;
- any other event with utm tags: channel ``utm_source/utm_medium`` (lower-cased, ``(none)`` for a
  missing half), campaign ``utm_campaign``.
A missing campaign is ``(not set)``. Orders are the client's paid orders (refunds and
cancellations bring no revenue); predicted CLV is ``segments.CustomerScore.predicted_clv``.

On PostgreSQL each table is read by one query whose rows come back as a few whole-column arrays
(``array_agg`` over binary ``COPY``, ``agency.pgcopy``): int64 ids, microsecond times, and the
touches grouped by their (channel, campaign) pair, one row of arrays per pair, so no Python
object is made per row. SQLite (the embedded first run) reads the same columns through
the ORM in chunks.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils.translation import gettext as _

from agency import pgcopy
from campaigns.models import TriggerChain
from clients.models import Client, Event, Order
from segments.models import CustomerScore

from .attribution import DIRECT, MODELS, NOT_SET, AttributionResult, attribute
from .models import ReportSettings

ENGAGEMENT_CHANNELS = {"email_click": "email", "sms_click": "sms", "push_open": "push"}
YCLID_CHANNEL = "yandex/cpc"
CHAIN_PREFIX = "chain:"
NONE_PART = "(none)"

# Channel and campaign of an event, in SQL (PostgreSQL) and in Python (the SQLite path):
# the same rules, kept next to each other.
_CHANNEL_SQL = f"""
CASE
    WHEN e.type = 'email_click' THEN 'email'
    WHEN e.type = 'sms_click' THEN 'sms'
    WHEN e.type = 'push_open' THEN 'push'
    WHEN coalesce(e.properties ->> 'yclid', '') <> '' THEN '{YCLID_CHANNEL}'
    ELSE coalesce(nullif(lower(btrim(e.utm_source)), ''), '{NONE_PART}') || '/'
         || coalesce(nullif(lower(btrim(e.utm_medium)), ''), '{NONE_PART}')
END"""
_CAMPAIGN_SQL = f"""
CASE
    WHEN e.type IN ('email_click', 'sms_click', 'push_open')
         AND (e.properties ->> 'chain_id') ~ '^[0-9]{{1,18}}$'
    THEN '{CHAIN_PREFIX}' || (e.properties ->> 'chain_id')
    ELSE coalesce(nullif(btrim(e.utm_campaign), ''), '{NOT_SET}')
END"""
# The cheap column tests first: the JSON look-up only for the events none of them takes.
_TOUCH_FILTER_SQL = """(
    e.type IN ('email_click', 'sms_click', 'push_open')
    OR e.utm_source <> '' OR e.utm_medium <> '' OR e.utm_campaign <> ''
    OR coalesce(e.properties ->> 'yclid', '') <> ''
)"""

# One row per distinct (channel, campaign) with its touches' customers and times as arrays: the
# grouping is a hash of a few keys, no string per touch crosses the wire or is materialised, and
# rows come in a fixed order of the pairs (ties in time resolve the same way on every run).
_TOUCHES_SQL = f"""
SELECT channel, campaign, array_agg(customer_id), array_agg(at)
FROM (
    SELECT e.customer_id, e.occurred_at AS at,
           {_CHANNEL_SQL} AS channel, {_CAMPAIGN_SQL} AS campaign
    FROM {Event._meta.db_table} e
    WHERE e.client_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s
      AND {_TOUCH_FILTER_SQL}
) s
GROUP BY channel, campaign
ORDER BY channel COLLATE "C", campaign COLLATE "C"
"""  # noqa: S608 (table names only)

# In (customer, time, id) order, as the covering index ``order_client_customer_cover`` holds
# them (an index-only scan, no sort; the aggregate keeps its input's order): ``orders_load``
# then only checks the order instead of sorting millions of rows (it sorts when it is not).
_ORDERS_SQL = f"""
SELECT array_agg(id), array_agg(customer_id), array_agg(placed_at), array_agg(kop)
FROM (
    SELECT o.id, o.customer_id, o.placed_at, (o.amount * 100)::int8 AS kop
    FROM {Order._meta.db_table} o
    WHERE o.client_id = %s AND o.status = 'paid' AND o.placed_at >= %s AND o.placed_at < %s
    ORDER BY o.customer_id, o.placed_at, o.id
) s
"""  # noqa: S608

# One probe of the (client, customer, placed_at) index per candidate (LATERAL … LIMIT 1 keeps
# it a nested loop: with an EXISTS the planner, under-estimating the distinct customers, hashes
# every earlier order of the client instead: 2.8 s against 1.1 s for 660k candidates).
_EARLIER_BUYERS_SQL = f"""
SELECT array_agg(c.id) FROM unnest(%s::int8[]) AS c(id)
CROSS JOIN LATERAL (
    SELECT 1 FROM {Order._meta.db_table} o
    WHERE o.client_id = %s AND o.customer_id = c.id AND o.status = 'paid' AND o.placed_at < %s
    LIMIT 1
) earlier
"""  # noqa: S608

_CLV_SQL = f"""
SELECT array_agg(s.customer_id), array_agg((s.predicted_clv * 100)::int8)
FROM {CustomerScore._meta.db_table} s
WHERE s.client_id = %s AND s.predicted_clv IS NOT NULL AND s.customer_id = ANY(%s::int8[])
"""  # noqa: S608

EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _unix_us(timestamps: memoryview | None) -> np.ndarray:
    """A binary ``timestamptz[]`` (microseconds since PostgreSQL's epoch, 2000-01-01 UTC) as
    Unix microseconds: sent as it is stored, no per-row ``extract(epoch …)`` in numeric."""
    micros = pgcopy.array_values(timestamps, "i8")
    micros += pgcopy.PG_EPOCH_US
    return micros


def _utc_us(micros: np.ndarray) -> np.ndarray:
    return micros.view("datetime64[us]")  # Unix microseconds, UTC, naive


def event_touch(
    event_type: str, properties: Any, source: str, medium: str, campaign: str
) -> tuple[str, str]:
    """(channel, campaign) of one event: the rules of the module's docstring (the SQLite path;
    PostgreSQL applies the same rules in ``_CHANNEL_SQL`` / ``_CAMPAIGN_SQL``)."""
    props = properties if isinstance(properties, dict) else {}
    chain_id = str(props.get("chain_id", ""))
    utm_campaign = (campaign or "").strip() or NOT_SET
    if event_type in ENGAGEMENT_CHANNELS:
        if chain_id.isdigit() and len(chain_id) <= 18:
            return ENGAGEMENT_CHANNELS[event_type], CHAIN_PREFIX + chain_id
        return ENGAGEMENT_CHANNELS[event_type], utm_campaign
    if str(props.get("yclid") or ""):
        return YCLID_CHANNEL, utm_campaign
    source_part = (source or "").strip().lower() or NONE_PART
    medium_part = (medium or "").strip().lower() or NONE_PART
    return f"{source_part}/{medium_part}", utm_campaign


def _parallel_read(cursor: Any) -> None:
    """For the rest of the transaction: parallel workers for a read of millions of rows whose
    result is one row of arrays (PostgreSQL's default costs count every row handed over from a
    worker, and the touches' filter is over-estimated), and no JIT (one pass: compiling costs
    more than it saves)."""
    cursor.execute("SET LOCAL parallel_setup_cost = 0")
    cursor.execute("SET LOCAL parallel_tuple_cost = 0.001")
    cursor.execute("SET LOCAL jit = off")


def touchpoints_load(
    *, client: Client, since: dt.datetime | None, until: dt.datetime
) -> pd.DataFrame:
    """The client's touchpoints with ``since <= at < until`` (``since`` None: from the start):
    ``customer_id`` (int64), ``at`` (datetime64[us], UTC), ``channel`` and ``campaign``
    (categoricals)."""
    since = since or EARLIEST
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            # The scan of the period's events is the cost (20M rows at 1M customers). The planner
            # over-estimates the touches (the OR of the filter: 14.6M where 3.8M come) and so
            # judges handing them over from parallel workers too dear; it is not: 12.1 → 8.5 s
            # on 2 cores. JIT compiles longer than it saves on one pass.
            _parallel_read(cursor)
            rows = pgcopy.copy_out_binary(_TOUCHES_SQL, [client.pk, since, until])
        customers = [pgcopy.array_values(row[2], "i8") for row in rows]
        pair = np.repeat(np.arange(len(rows)), [len(c) for c in customers])
        channels = pd.Categorical([bytes(row[0]).decode() for row in rows])
        campaigns = pd.Categorical([bytes(row[1]).decode() for row in rows])
        return pd.DataFrame(
            {
                "customer_id": np.concatenate(customers) if rows else np.empty(0, np.int64),
                "at": _utc_us(
                    np.concatenate([_unix_us(row[3]) for row in rows])
                    if rows
                    else np.empty(0, np.int64)
                ),
                "channel": pd.Categorical.from_codes(
                    np.asarray(channels.codes)[pair], channels.categories
                ),
                "campaign": pd.Categorical.from_codes(
                    np.asarray(campaigns.codes)[pair], campaigns.categories
                ),
            }
        )
    rows = (
        Event.objects.for_client(client)
        .filter(occurred_at__gte=since, occurred_at__lt=until)
        .values_list(
            "customer_id",
            "occurred_at",
            "type",
            "properties",
            "utm_source",
            "utm_medium",
            "utm_campaign",
        )
    )
    customer_ids, times, channels, campaigns = [], [], [], []
    for customer_id, at, event_type, props, source, medium, campaign in rows.iterator(
        chunk_size=20_000
    ):
        touch = (
            event_type in ENGAGEMENT_CHANNELS
            or (isinstance(props, dict) and props.get("yclid"))
            or source
            or medium
            or campaign
        )
        if not touch:
            continue
        channel, campaign_key = event_touch(event_type, props, source, medium, campaign)
        customer_ids.append(customer_id)
        times.append(at)
        channels.append(channel)
        campaigns.append(campaign_key)
    return pd.DataFrame(
        {
            "customer_id": np.array(customer_ids, dtype=np.int64),
            "at": pd.to_datetime(pd.Series(times, dtype=object), utc=True)
            .dt.tz_localize(None)
            .astype("datetime64[us]"),
            "channel": pd.Categorical(channels),
            "campaign": pd.Categorical(campaigns),
        }
    )


def orders_load(
    *, client: Client, since: dt.datetime | None, start: dt.datetime, until: dt.datetime
) -> pd.DataFrame:
    """The client's paid orders with ``since <= placed_at < until``: ``order_id``,
    ``customer_id``, ``placed_at`` (datetime64[us], UTC), ``amount`` (RUB), ``in_period``
    (``placed_at >= start``; earlier ones only bound journeys) and ``is_first`` (the customer's
    first paid order ever: checked against the orders before ``since`` for the candidates)."""
    since = since or EARLIEST
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            # Two workers read halves of the index and a Gather Merge keeps the order (7.3 →
            # 6.4 s for 6.6M orders on 2 cores); see touchpoints_load for the settings.
            _parallel_read(cursor)
            ((ids, customers, micros, kopecks),) = pgcopy.copy_out_binary(
                _ORDERS_SQL, [client.pk, since, until]
            )
        frame = pd.DataFrame(
            {
                "order_id": pgcopy.array_values(ids, "i8"),
                "customer_id": pgcopy.array_values(customers, "i8"),
                "placed_at": _utc_us(_unix_us(micros)),
                "amount": pgcopy.array_values(kopecks, "i8") / 100,
            }
        )
    else:
        rows = list(
            Order.objects.for_client(client)
            .filter(status=Order.Status.PAID, placed_at__gte=since, placed_at__lt=until)
            .values_list("pk", "customer_id", "placed_at", "amount")
            .iterator(chunk_size=20_000)
        )
        frame = pd.DataFrame(rows, columns=["order_id", "customer_id", "placed_at", "amount"])
        frame["order_id"] = frame["order_id"].astype(np.int64)
        frame["customer_id"] = frame["customer_id"].astype(np.int64)
        frame["placed_at"] = (
            pd.to_datetime(frame["placed_at"], utc=True)
            .dt.tz_localize(None)
            .astype("datetime64[us]")
        )
        frame["amount"] = np.rint(frame["amount"].map(float).astype(np.float64) * 100) / 100
    customers = frame["customer_id"].to_numpy()
    if not _sorted(customers, frame["placed_at"].to_numpy(), frame["order_id"].to_numpy()):
        order = np.lexsort((frame["order_id"].to_numpy(), frame["placed_at"].to_numpy(), customers))
        frame = frame.take(order).reset_index(drop=True)
        customers = customers[order]
    in_period = frame["placed_at"].to_numpy() >= np.datetime64(
        start.astimezone(dt.UTC).replace(tzinfo=None), "us"
    )
    first_loaded = np.ones(len(frame), dtype=bool)
    first_loaded[1:] = customers[1:] != customers[:-1]
    candidates = customers[first_loaded & in_period]
    earlier = _earlier_buyers(client=client, customer_ids=candidates, before=since)
    frame["in_period"] = in_period
    frame["is_first"] = first_loaded & ~np.isin(customers, earlier)
    return frame


def _sorted(customers: np.ndarray, times: np.ndarray, ids: np.ndarray) -> bool:
    """Are the rows in (customer, time, id) order? One pass instead of a sort."""
    if len(customers) < 2:
        return True
    step_c = customers[1:] - customers[:-1]
    if (step_c < 0).any():
        return False
    same = step_c == 0
    step_t = times[1:][same] - times[:-1][same]
    if (step_t < np.timedelta64(0)).any():
        return False
    tie = step_t == np.timedelta64(0)
    return bool((ids[1:][same][tie] > ids[:-1][same][tie]).all())


def _earlier_buyers(*, client: Client, customer_ids: np.ndarray, before: dt.datetime) -> np.ndarray:
    """Which of ``customer_ids`` have a paid order before ``before``."""
    if not len(customer_ids) or before <= EARLIEST:
        return np.empty(0, dtype=np.int64)
    if connection.vendor == "postgresql":
        # The ids as one array literal built by numpy (no Python int per id to adapt).
        ids_literal = "{" + ",".join(np.asarray(customer_ids, dtype=np.int64).astype(str)) + "}"
        ((found,),) = pgcopy.copy_out_binary(_EARLIER_BUYERS_SQL, [ids_literal, client.pk, before])
        return pgcopy.array_values(found, "i8")
    found = (
        Order.objects.for_client(client)
        .filter(
            status=Order.Status.PAID,
            placed_at__lt=before,
            customer_id__in=[int(c) for c in customer_ids],
        )
        .values_list("customer_id", flat=True)
        .distinct()
    )
    return np.fromiter(found, dtype=np.int64)


def predicted_clv_load(*, client: Client, customer_ids: np.ndarray) -> pd.Series:
    """Predicted CLV (RUB, float) of those of ``customer_ids`` that have one, by customer id."""
    if not len(customer_ids):
        return pd.Series(dtype=np.float64)
    if connection.vendor == "postgresql":
        ((ids, kopecks),) = pgcopy.copy_out_binary(
            _CLV_SQL, [client.pk, np.asarray(customer_ids, dtype=np.int64).tolist()]
        )
        return pd.Series(
            pgcopy.array_values(kopecks, "i8") / 100, index=pgcopy.array_values(ids, "i8")
        )
    rows = (
        CustomerScore.objects.for_client(client)
        .filter(predicted_clv__isnull=False, customer_id__in=[int(c) for c in customer_ids])
        .values_list("customer_id", "predicted_clv")
    )
    data = dict(rows)
    return pd.Series([float(v) for v in data.values()], index=list(data), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# The report


def _period_bounds(
    client: Client, date_from: dt.date, date_to: dt.date
) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight of date_from, local midnight after date_to) in the client's zone."""
    zone = client.tzinfo
    start = dt.datetime.combine(date_from, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start, end


def _money(kopecks: Any) -> Decimal:
    return Decimal(int(kopecks)).scaleb(-2)


def _label(key: str, chains: dict[str, str]) -> str:
    if key == DIRECT:
        return _("Прямые заказы (без касаний)")
    if key == NOT_SET:
        return _("(кампания не указана)")
    return chains.get(key, key)


def _rows(frame: pd.DataFrame, dim: str, chains: dict[str, str]) -> list[dict]:
    rows = []
    for key, values in frame.iterrows():
        rows.append(
            {
                "key": key,
                dim: key,
                "label": _label(str(key), chains),
                "models": {
                    model: {
                        "orders": round(float(values[f"{model}_orders"]), 4),
                        "revenue": _money(values[f"{model}_revenue"]),
                    }
                    for model in MODELS
                },
            }
        )
    return rows


def _clv_rows(frame: pd.DataFrame, dim: str, chains: dict[str, str]) -> list[dict]:
    rows = []
    for key, values in frame.iterrows():
        customers = int(values["customers"])
        clv = Decimal(str(round(float(values["predicted_clv"]), 2))).quantize(Decimal("0.01"))
        rows.append(
            {
                "key": key,
                dim: key,
                "label": _label(str(key), chains),
                "customers": customers,
                "customers_with_clv": int(values["customers_with_clv"]),
                "first_order_revenue": _money(values["first_order_revenue"]),
                "predicted_clv": clv,
                "predicted_clv_per_customer": (clv / customers).quantize(Decimal("0.01"))
                if customers
                else None,
            }
        )
    return rows


def _chain_names(client: Client, keys: pd.Index) -> dict[str, str]:
    ids = [int(k[len(CHAIN_PREFIX) :]) for k in keys if str(k).startswith(CHAIN_PREFIX)]
    if not ids:
        return {}
    names = TriggerChain.objects.for_client(client).filter(pk__in=ids).values_list("pk", "name")
    return {f"{CHAIN_PREFIX}{pk}": name for pk, name in names}


def attribution_compute(
    *,
    client: Client,
    date_from: dt.date,
    date_to: dt.date,
    half_life_days: float | None = None,
    lookback_days: float | None = 30,
) -> AttributionResult:
    """Load and attribute (see :func:`attribution_report`); the raw result with kopecks."""
    if half_life_days is None:
        settings_row = ReportSettings.objects.for_client(client).first()
        half_life_days = settings_row.attribution_half_life_days if settings_row else 7
    start, end = _period_bounds(client, date_from, date_to)
    since = start - dt.timedelta(days=lookback_days) if lookback_days is not None else None
    orders = orders_load(client=client, since=since, start=start, until=end)
    touches = touchpoints_load(client=client, since=since, until=end)
    acquired = orders["customer_id"].to_numpy()[
        orders["is_first"].to_numpy() & orders["in_period"].to_numpy()
    ]
    clv = predicted_clv_load(client=client, customer_ids=acquired)
    return attribute(
        touches,
        orders,
        half_life_days=float(half_life_days),
        lookback_days=lookback_days,
        reset_on_order=True,
        clv=clv,
    )


def attribution_report(
    *,
    client: Client,
    date_from: dt.date,
    date_to: dt.date,
    half_life_days: float | None = None,
    lookback_days: float | None = 30,
) -> dict:
    """Orders and revenue of the client's paid orders placed from ``date_from`` to ``date_to``
    (inclusive, in the client's time zone), credited under every model of
    :data:`reports.attribution.MODELS` per channel and per campaign, and the CLV-weighted view
    (customers acquired in the period and their predicted CLV per channel and campaign).

    ``half_life_days``: the time-decay half-life (default: the client's
    ``ReportSettings.attribution_half_life_days``, 7 without settings). ``lookback_days``: how
    far before an order its journey reaches (None: back to the previous order only). Journeys
    also stop at the customer's previous paid order. Revenue figures are ``Decimal`` RUB; each
    model's revenue sums to ``totals.revenue`` exactly, orders without touches under
    ``direct/none``."""
    result = attribution_compute(
        client=client,
        date_from=date_from,
        date_to=date_to,
        half_life_days=half_life_days,
        lookback_days=lookback_days,
    )
    chains = _chain_names(
        client, result.by_campaign.index.append(result.clv_by_campaign.index).unique()
    )
    return {
        "period": {
            "from": date_from.isoformat(),
            "to": date_to.isoformat(),
            "time_zone": client.time_zone,
        },
        "settings": {
            "half_life_days": result.settings["half_life_days"],
            "lookback_days": result.settings["lookback_days"],
            "journey_stops_at_previous_order": True,
        },
        "models": list(MODELS),
        "totals": {
            "orders": result.orders,
            "revenue": _money(result.revenue),
            "orders_with_touches": result.orders_with_touches,
            "touches_in_journeys": result.touches_in_journeys,
        },
        "by_channel": _rows(result.by_channel, "channel", chains),
        "by_campaign": _rows(result.by_campaign, "campaign", chains),
        "clv": {
            "by_channel": _clv_rows(result.clv_by_channel, "channel", chains),
            "by_campaign": _clv_rows(result.clv_by_campaign, "campaign", chains),
        },
    }
