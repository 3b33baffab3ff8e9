"""Customer KPIs per client per calendar month, stored for trends (``reports.models.KpiMonth``).

:func:`kpis_compute` writes a client's months in one set-based statement: aggregates over the
client's orders by customer and month, window functions over customers and over months, no
per-customer Python. Months are calendar months of the client's time zone (an order at 23:30 in
Moscow on 31 January is January's). The nightly beat task runs it for every active client after
the scoring run (``reports.tasks.kpis_daily_task``); staff can recompute from the admin.

Definitions (month *m*; "orders" are paid orders only: cancelled and refunded orders are not
revenue, as in the scoring and the dashboard):

- ``revenue``, ``orders``: sums over the month's paid orders; ``buyers``: distinct customers with
  an order in the month.
- ``new_customers``: customers whose first paid order ever is in *m*.
- ``active_customers``: customers with a paid order in the 12 months ending with *m* (months
  *m*-11 … *m*); ``active_at_start``: the same at the end of *m*-1.
- ``churned_customers``: customers active at the end of *m*-1 and no longer at the end of *m*,
  i.e. whose last order was in *m*-12 (12 full months without a purchase).
- ``retention_rate`` = (active_at_start − churned) / active_at_start: the share of the customers
  active at the month's start who are still active at its end (who bought again within 12
  months of their previous purchase); ``churn_rate`` = churned / active_at_start = 1 −
  retention. Customers won back or new during the month do not enter either rate.
- ``repeat_purchase_rate`` = the month's buyers with ≥ 2 paid orders ever by the month's end /
  buyers.
- ``arpu`` = revenue / active_customers; ``aov`` = revenue / orders; ``purchase_frequency`` =
  orders / buyers.
- ``historical_clv`` = paid revenue to the month's end / customers with a paid order by then
  (``customers_to_date``).
- ``predicted_clv``: mean of the customers' predicted CLV (``segments.CustomerScore``) over the
  customers acquired by the month's end who have one. Scores exist only as of the latest scoring
  run, so every month uses today's predictions for its customer base (the nightly run recomputes
  every month: late orders, spend imported late and cohorts' revenue to date are never stale).
- ``spend``: ad spend of the month (``reports.SpendDay``, every source); null when no spend row
  of the month was imported (unknown is not zero).
- ``cac`` = spend / new_customers; ``ltv_cac`` = historical_clv / cac; ``roas`` = revenue /
  spend; ``clv_roas`` = the new customers' predicted CLV summed / spend.
- ``cohort_clv``: paid revenue to date (up to the computation) of the customers acquired in *m*
  / new_customers.

On a database other than PostgreSQL (SQLite, the embedded first run) the same figures come from
``reports.kpi_frames`` (pandas) over the rows read through the ORM.

Money in RUB (2 decimals), rates as fractions (4 decimals). A figure whose denominator is zero or
unknown is null. Tier rules are applied when reading (:func:`kpi_months`): ``predicted_clv`` and
``clv_roas`` need ``predictive``, ``cohort_clv`` needs ``cohorts``; for a lower tier they are null
with the reason in ``hidden``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from clients.models import Order
from clients.tiers import tier_has, tier_unlocking
from segments.models import CustomerScore

from .kpi_frames import kpi_rows, month_date, month_index
from .models import KpiMonth, SpendDay

WORK_MEM = "256MB"
#: Months are counted from here; an order placed earlier counts in the month before it.
FIRST_MONTH = dt.date(1970, 1, 1)

#: Figures hidden below a tier feature: {feature: (figures)}.
TIER_FIGURES: dict[str, tuple[str, ...]] = {
    "predictive": ("predicted_clv", "clv_roas"),
    "cohorts": ("cohort_clv",),
}

FIGURES = (
    "revenue",
    "orders",
    "buyers",
    "new_customers",
    "active_customers",
    "active_at_start",
    "churned_customers",
    "repeat_buyers",
    "customers_to_date",
    "spend",
    "repeat_purchase_rate",
    "retention_rate",
    "churn_rate",
    "arpu",
    "aov",
    "purchase_frequency",
    "historical_clv",
    "predicted_clv",
    "cac",
    "ltv_cac",
    "roas",
    "clv_roas",
    "cohort_clv",
)

# One statement: per customer and month (cm; months as integers year * 12 + month - 1, found by
# a binary search of the order's instant among the client's month starts, cheaper than a time
# zone conversion per order; money as integer kopecks), each customer's months in order (cmx,
# one window: the previous and next month with an order, orders and revenue to date, the first
# month), then one GROUPING SETS pass for the events per month (buyers, new, (re)activated),
# the churns (12 months after an order not followed within 12 months) and the cohorts (each
# customer's last row by first month), and a series of months with running sums over it.
# NULLIF makes every zero denominator a null.
_KPI_SQL = """
WITH cm AS (
    SELECT customer_id,
           %(base)s + width_bucket(placed_at, %(starts)s::timestamptz[]) - 1 AS month,
           count(*) AS n,
           (sum(amount) * 100)::bigint AS kop  -- amounts have 2 decimals: exact
    FROM {order} WHERE client_id = %(client)s AND status = %(paid)s
    GROUP BY 1, 2
),
cmx AS (
    SELECT customer_id, month, n, kop,
           lag(month) OVER w AS prev_month,
           lead(month) OVER w AS next_month,
           sum(n) OVER w AS orders_to_date,
           sum(kop) OVER w AS kop_to_date,
           first_value(month) OVER w AS first_month
    FROM cm
    WINDOW w AS (PARTITION BY customer_id ORDER BY month ROWS UNBOUNDED PRECEDING)
),
grouped AS (
    -- One pass, three groupings: by month (3), by the month of a churn (5), and each
    -- customer's last row by first month (6: the cohort's revenue to date and predictions).
    SELECT GROUPING(x.month, churn_month, cohort_month) AS g,
           x.month, churn_month, cohort_month,
           count(*) AS rows,
           sum(x.n) AS orders,
           sum(x.kop) AS kop,
           count(*) FILTER (WHERE x.prev_month IS NULL) AS new_customers,
           count(*) FILTER (WHERE x.orders_to_date >= 2) AS repeat_buyers,
           count(*) FILTER (
               WHERE x.prev_month IS NULL OR x.prev_month < x.month - 12
           ) AS activations,
           sum(x.kop_to_date) AS kop_to_date,
           sum(s.predicted_clv) AS predicted_sum,
           count(s.predicted_clv) AS predicted_n
    FROM cmx x
    CROSS JOIN LATERAL (
        SELECT CASE WHEN x.next_month IS NULL OR x.next_month > x.month + 12
                    THEN x.month + 12 END AS churn_month,
               CASE WHEN x.next_month IS NULL THEN x.first_month END AS cohort_month
    ) k
    LEFT JOIN {score} s
         ON x.next_month IS NULL AND s.customer_id = x.customer_id
            AND s.client_id = %(client)s
    GROUP BY GROUPING SETS ((x.month), (churn_month), (cohort_month))
),
per_month AS (
    SELECT month, rows AS buyers, orders, kop::numeric / 100 AS revenue, new_customers,
           repeat_buyers, activations
    FROM grouped WHERE g = 3
),
churns AS (
    SELECT churn_month AS month, rows AS churned
    FROM grouped WHERE g = 5 AND churn_month IS NOT NULL
),
cohorts AS (
    SELECT cohort_month AS month, kop_to_date::numeric / 100 AS revenue_to_date,
           predicted_sum, predicted_n
    FROM grouped WHERE g = 6 AND cohort_month IS NOT NULL
),
spend AS (
    SELECT (extract(year FROM day) * 12 + extract(month FROM day) - 1)::int AS month,
           sum(cost) AS spend
    FROM {spend} WHERE client_id = %(client)s GROUP BY 1
),
bounds AS (
    SELECT least((SELECT min(month) FROM per_month), (SELECT min(month) FROM spend))
           AS first_month
),
series AS (
    SELECT g AS month
    FROM bounds, generate_series(bounds.first_month, %(current)s) g
    WHERE bounds.first_month IS NOT NULL
),
running AS (
    SELECT s.month,
           coalesce(p.revenue, 0) AS revenue,
           coalesce(p.orders, 0) AS orders,
           coalesce(p.buyers, 0) AS buyers,
           coalesce(p.new_customers, 0) AS new_customers,
           coalesce(p.repeat_buyers, 0) AS repeat_buyers,
           coalesce(c.churned, 0) AS churned,
           sum(coalesce(p.activations, 0) - coalesce(c.churned, 0))
               OVER m AS active,
           sum(coalesce(p.revenue, 0)) OVER m AS revenue_cum,
           sum(coalesce(p.new_customers, 0)) OVER m AS customers_cum,
           sum(coalesce(h.predicted_sum, 0)) OVER m AS predicted_sum_cum,
           sum(coalesce(h.predicted_n, 0)) OVER m AS predicted_n_cum,
           h.revenue_to_date AS cohort_revenue,
           h.predicted_sum AS new_predicted_sum,
           sp.spend
    FROM series s
    LEFT JOIN per_month p ON p.month = s.month
    LEFT JOIN churns c ON c.month = s.month
    LEFT JOIN cohorts h ON h.month = s.month
    LEFT JOIN spend sp ON sp.month = s.month
    WINDOW m AS (ORDER BY s.month ROWS UNBOUNDED PRECEDING)
),
figures AS (
    SELECT *, coalesce(lag(active) OVER (ORDER BY month), 0) AS active_at_start,
           revenue_cum / NULLIF(customers_cum, 0) AS hist_clv,
           spend / NULLIF(new_customers, 0) AS cac_raw
    FROM running
)
INSERT INTO {kpi} (
    client_id, month, revenue, orders, buyers, new_customers, active_customers,
    active_at_start, churned_customers, repeat_buyers, customers_to_date, spend,
    repeat_purchase_rate, retention_rate, churn_rate, arpu, aov, purchase_frequency,
    historical_clv, predicted_clv, cac, ltv_cac, roas, clv_roas, cohort_clv, computed_at
)
SELECT %(client)s, make_date(month / 12, month %% 12 + 1, 1), revenue, orders, buyers,
       new_customers, active, active_at_start, churned, repeat_buyers, customers_cum, spend,
       round(repeat_buyers::numeric / NULLIF(buyers, 0), 4),
       round((active_at_start - churned)::numeric / NULLIF(active_at_start, 0), 4),
       round(churned::numeric / NULLIF(active_at_start, 0), 4),
       round(revenue / NULLIF(active, 0), 2),
       round(revenue / NULLIF(orders, 0), 2),
       round(orders::numeric / NULLIF(buyers, 0), 4),
       round(hist_clv, 2),
       round(predicted_sum_cum / NULLIF(predicted_n_cum, 0), 2),
       round(cac_raw, 2),
       round(hist_clv / NULLIF(cac_raw, 0), 4),
       round(revenue / NULLIF(spend, 0), 4),
       round(new_predicted_sum / NULLIF(spend, 0), 4),
       round(cohort_revenue / NULLIF(new_customers, 0), 2),
       %(now)s
FROM figures
WHERE month >= %(since)s
"""


def month_starts(*, client: Any, until: dt.date) -> list[dt.datetime]:
    """The instants the client's months begin, from :data:`FIRST_MONTH` to the month after
    ``until`` (a first day), in the client's time zone."""
    zone = client.tzinfo
    return [
        dt.datetime.combine(month_date(index), dt.time.min, tzinfo=zone)
        for index in range(month_index(FIRST_MONTH), month_index(until) + 2)
    ]


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _months_back(month: dt.date, count: int) -> dt.date:
    """The first day of the month ``count`` months before ``month`` (a first day)."""
    index = month.year * 12 + month.month - 1 - count
    return dt.date(index // 12, index % 12 + 1, 1)


def kpis_compute(*, client: Any, months: int | None = None, now: dt.datetime | None = None) -> int:
    """Write (replace) the client's KPI months: all of them from the first order or spend
    month up to the current month (``months=None``), or only the last ``months`` months
    (the current one included). Returns the number of months written.

    One transaction: the months in range are deleted and inserted again from one aggregate
    statement, so a recomputation replaces (months that no longer have data disappear too).
    """
    if months is not None and months < 1:
        raise ValueError("months must be at least 1")
    now = now or timezone.now()
    current = _month_start(timezone.localtime(now, client.tzinfo).date())
    since = _months_back(current, months - 1) if months is not None else dt.date(1, 1, 1)
    if connection.vendor != "postgresql":
        return _kpis_compute_frames(client=client, current=current, since=since, now=now)
    sql, params = kpi_statement(client=client, current=current, since=since, now=now)
    with transaction.atomic(), connection.cursor() as cursor:
        # The statement sorts and hashes every customer-month of the client at once.
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cursor.execute("SET LOCAL jit = off")
        # The client's orders come in (customer, time) order from the covering index
        # ``order_client_customer_cover`` (an index-only scan: no heap, no sort of the orders;
        # 18.5 → 13.7 s at 10M orders). The planner keeps a sequential scan where the table's
        # visibility map is not yet set (vacuum sets it; then the index alone is not enough).
        KpiMonth.objects.for_client(client).filter(month__gte=since).delete()
        cursor.execute(sql, params)
        return cursor.rowcount


def kpi_statement(
    *, client: Any, current: dt.date, since: dt.date, now: dt.datetime
) -> tuple[str, dict[str, Any]]:
    """The INSERT of the client's KPI months from ``since`` to ``current`` (first days) and its
    parameters (PostgreSQL)."""
    quote = connection.ops.quote_name
    sql = _KPI_SQL.format(
        order=quote(Order._meta.db_table),
        score=quote(CustomerScore._meta.db_table),
        spend=quote(SpendDay._meta.db_table),
        kpi=quote(KpiMonth._meta.db_table),
    )
    params = {
        "client": client.pk,
        "paid": Order.Status.PAID,
        "base": month_index(FIRST_MONTH),
        "starts": month_starts(client=client, until=current),
        "current": month_index(current),
        "since": month_index(since),
        "now": now,
    }
    return sql, params


def kpi_frames_load(*, client: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The inputs of ``reports.kpi_frames.kpi_rows`` for ``client``, read through the ORM (the
    path where the SQL statement cannot run: SQLite, a small base)."""
    orders = pd.DataFrame(
        list(
            Order.objects.for_client(client)
            .filter(status=Order.Status.PAID)
            .values_list("customer_id", "placed_at", "amount")
        ),
        columns=["customer_id", "placed_at", "amount"],
    )
    local = pd.to_datetime(orders["placed_at"], utc=True).dt.tz_convert(client.time_zone)
    orders = pd.DataFrame(
        {
            "customer_id": orders["customer_id"].astype("int64"),
            "month": (local.dt.year * 12 + local.dt.month - 1).astype("int64"),
            "amount_kop": [int(a * 100) for a in orders["amount"]],
        }
    )
    scores = pd.DataFrame(
        [
            (pk, int(clv * 100))
            for pk, clv in CustomerScore.objects.for_client(client)
            .exclude(predicted_clv=None)
            .values_list("customer_id", "predicted_clv")
        ],
        columns=["customer_id", "predicted_kop"],
    )
    spend: dict[int, int] = {}
    for day, cost in SpendDay.objects.for_client(client).values_list("day", "cost"):
        key = month_index(day)
        spend[key] = spend.get(key, 0) + int(cost * 100)
    spend_frame = pd.DataFrame(
        {"month": list(spend), "spend_kop": list(spend.values())}, dtype="int64"
    )
    return orders, scores, spend_frame


def _kpis_compute_frames(*, client: Any, current: dt.date, since: dt.date, now) -> int:
    orders, scores, spend = kpi_frames_load(client=client)
    rows = kpi_rows(
        orders,
        scores,
        spend,
        current_month=month_index(current),
        since_month=month_index(since) if since.year > 1 else None,
    )
    with transaction.atomic():
        KpiMonth.objects.for_client(client).filter(month__gte=since).delete()
        KpiMonth.objects.bulk_create(
            KpiMonth(client=client, computed_at=now, **row) for row in rows
        )
    return len(rows)


# --------------------------------------------------------------------------------------------
# Reading


def hidden_figures(*, client: Any) -> dict[str, str]:
    """The figures the client's tier does not include: {figure: why}."""
    hidden: dict[str, str] = {}
    for feature, figures in TIER_FIGURES.items():
        if tier_has(client=client, feature=feature):
            continue
        upgrade = tier_unlocking(feature=feature)
        if upgrade is not None:
            reason = gettext("Доступно с тарифа %(tier)s; у клиента тариф %(current)s.") % {
                "tier": upgrade.name,
                "current": client.tier.name,
            }
        else:
            reason = gettext("Не входит ни в один тариф агентства.")
        for figure in figures:
            hidden[figure] = reason
    return hidden


def kpi_months(
    *, client: Any, since: dt.date | None = None, until: dt.date | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The client's stored KPI months from ``since`` to ``until`` (first days, inclusive),
    oldest first, as dicts of :data:`FIGURES` plus ``month`` ("YYYY-MM") and ``computed_at``;
    the figures the tier hides are null. Returns (rows, hidden: {figure: reason})."""
    hidden = hidden_figures(client=client)
    queryset = KpiMonth.objects.for_client(client).order_by("month")
    if since is not None:
        queryset = queryset.filter(month__gte=since)
    if until is not None:
        queryset = queryset.filter(month__lte=until)
    rows = []
    for row in queryset.values("month", "computed_at", *FIGURES):
        row["month"] = row["month"].strftime("%Y-%m")
        for figure in hidden:
            row[figure] = None
        rows.append(row)
    return rows, hidden
