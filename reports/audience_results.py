"""An ad audience's uplift: the people it uploaded (treatment) against the people its holdout
kept out (control), measured the way a chain's arms are (``reports.uplift``).

Who is measured (intent to treat): everyone who was a member of the audience's segment while the
test ran (a membership open at some moment between ``holdout_started_at`` and the end of the
period), split by the audience's own rule (``audiences.holdout``: the hash of (client, audience,
customer), or of the region for the geo split, where people with no region are not in the test).
Consent, suppression and erasure are not applied: they hold people back from the upload on both
sides alike, so leaving them in dilutes the effect but cannot bias it, and it keeps the split
reproducible from the hash alone whenever it is measured (a person's consent then and now may
differ). Nothing is stored per person: the held-out set is recomputed here.

A conversion is an order (not cancelled) placed from the later of the period's start, the test's
start and the person's entry into the segment, to the period's end (the client's days); revenue
per person counts everyone, zeros included. The conversion uplift and the data guard come from
``reports.uplift``; the revenue difference gets a normal (Welch) interval from the arms' sums
and sums of squares. The sample-ratio check is the chains' chi-square on the measured people
(person-level holdouts only: regions differ in size, so the geo split's share of people is not
planned). For the geo split the intervals treat people as independent although whole regions
were assigned: they are too narrow and say so (``clustered``).

Set-based: one statement reads the population's ids (and regions), the hash marks the held-out
ones in one vectorised pass, and one aggregate statement over a temporary table of them counts
the arms. No per-person query.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

from django.db import connection, transaction
from django.utils.translation import gettext as _
from scipy.stats import norm

from agency.arms import sample_ratio_p_value
from agency.errors import ServiceError
from audiences.holdout import held_out_flags, holdout_running, ids_temp_table, region_sql
from audiences.models import Audience
from clients.models import Customer, Order
from segments.models import SegmentMembership

from .uplift import conversion_uplift, enough_data

_MEMBERSHIPS = connection.ops.quote_name(SegmentMembership._meta.db_table)
_CUSTOMERS = connection.ops.quote_name(Customer._meta.db_table)
_ORDERS = connection.ops.quote_name(Order._meta.db_table)


class AudienceResultsError(ServiceError):
    default_code = "invalid_period"


def _period(audience: Audience, date_from: dt.date, date_to: dt.date) -> tuple:
    if date_from > date_to:
        raise AudienceResultsError(
            "invalid_period", _("начало периода позже его конца"), field="from"
        )
    if not holdout_running(audience):
        raise AudienceResultsError(
            "no_holdout",
            _("у аудитории нет контрольной группы: задайте её долю, чтобы начать тест"),
        )
    tz = audience.client.tzinfo
    start = dt.datetime.combine(date_from, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return start, end


def _population_sql(audience: Audience, start: dt.datetime, end: dt.datetime) -> tuple[str, list]:
    """SQL of ``(id, since, region)``: the people measured and when their window opens."""
    later = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    geo = audience.holdout_unit == Audience.HoldoutUnit.REGION
    test_start = audience.holdout_started_at
    sql = (
        f"SELECT m.customer_id AS id, {later}(m.entered_at, %s, %s) AS since, "  # noqa: S608
        f"{region_sql('c')} AS region "
        f"FROM {_MEMBERSHIPS} m JOIN {_CUSTOMERS} c ON c.id = m.customer_id "
        "WHERE m.client_id = %s AND c.client_id = %s AND m.segment_id = %s "
        "AND m.entered_at < %s AND (m.left_at IS NULL OR m.left_at >= %s)"
        + (f" AND {region_sql('c')} <> ''" if geo else "")
    )
    client_id = audience.client_id
    return sql, [start, test_start, client_id, client_id, audience.segment_id, end, test_start]


def _revenue_difference(
    arms: dict[str, dict], *, alpha: float
) -> tuple[float | None, tuple[float, float] | None]:
    """Mean revenue per person, treatment minus control, with a normal (Welch) interval."""
    stats = {}
    for name, arm in arms.items():
        n = arm["n"]
        if n < 2:
            return None, None
        mean = arm["_sum"] / n
        variance = max(arm["_sumsq"] - n * mean * mean, 0.0) / (n - 1)
        stats[name] = (mean, variance, n)
    (m_t, v_t, n_t), (m_c, v_c, n_c) = stats["treatment"], stats["holdout"]
    difference = m_t - m_c
    se = math.sqrt(v_t / n_t + v_c / n_c)
    z = float(norm.ppf(1 - alpha / 2))
    return difference, (difference - z * se, difference + z * se)


def audience_results(
    *, audience: Audience, date_from: dt.date, date_to: dt.date, alpha: float = 0.05
) -> dict:
    """The audience's treatment (uploaded) against its holdout over ``[date_from, date_to]``.

    Returns ``{"audience", "holdout_percent", "holdout_unit", "holdout_started_at", "from",
    "to", "treatment", "holdout" (each {"n", "conversions", "revenue", "conversion_rate",
    "revenue_per_person"}), "uplift": {"absolute", "absolute_ci", "relative", "relative_ci",
    "p_value", "incremental_conversions", "incremental_revenue", "revenue_per_person",
    "revenue_per_person_ci"}, "srm_p_value", "enough_data", "clustered"}``. Raises
    :class:`AudienceResultsError` (400) for a reversed period or an audience without a running
    holdout."""
    start, end = _period(audience, date_from, date_to)
    population, params = _population_sql(audience, start, end)
    held_table = f"audience_results_held_{int(audience.pk)}"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT id, region FROM ({population}) p", params)  # noqa: S608
        rows = cursor.fetchall()
        ids = [row[0] for row in rows]
        flags = held_out_flags(audience, ids, [row[1] for row in rows])
        ids_temp_table(cursor, held_table, [pk for pk, f in zip(ids, flags, strict=True) if f])
        cursor.execute(
            f"WITH pop AS ({population}), bought AS ("  # noqa: S608 - names built here
            "SELECT p.id, COUNT(*) AS orders, SUM(o.amount) AS revenue FROM pop p "
            f"JOIN {_ORDERS} o ON o.client_id = %s AND o.customer_id = p.id "
            "AND o.placed_at >= p.since AND o.placed_at < %s AND o.status <> %s "
            "GROUP BY p.id) "
            "SELECT CASE WHEN h.id IS NULL THEN 0 ELSE 1 END AS held, COUNT(*), "
            "SUM(CASE WHEN b.orders > 0 THEN 1 ELSE 0 END), COALESCE(SUM(b.revenue), 0), "
            "COALESCE(SUM(b.revenue * b.revenue), 0) "
            f"FROM pop p LEFT JOIN bought b ON b.id = p.id LEFT JOIN {held_table} h "
            "ON h.id = p.id GROUP BY 1",
            [*params, audience.client_id, end, Order.Status.CANCELLED],
        )
        found = {held: row for held, *row in cursor.fetchall()}
        cursor.execute(f"DROP TABLE {held_table}")
    arms: dict[str, dict] = {}
    for name, held in (("treatment", 0), ("holdout", 1)):
        n, conversions, revenue, sumsq = found.get(held, (0, 0, 0, 0))
        revenue = Decimal(revenue or 0).quantize(Decimal("0.01"))
        arms[name] = {
            "n": int(n),
            "conversions": int(conversions or 0),
            "revenue": revenue,
            "conversion_rate": (conversions or 0) / n if n else None,
            "revenue_per_person": float(revenue) / n if n else None,
            "_sum": float(revenue),
            "_sumsq": float(sumsq or 0),
        }
    t, c = arms["treatment"], arms["holdout"]
    uplift = conversion_uplift(t["conversions"], t["n"], c["conversions"], c["n"], alpha=alpha)
    difference, difference_ci = _revenue_difference(arms, alpha=alpha)
    for arm in arms.values():
        del arm["_sum"], arm["_sumsq"]
    person = audience.holdout_unit == Audience.HoldoutUnit.PERSON
    return {
        "audience": audience.pk,
        "holdout_percent": audience.holdout_percent,
        "holdout_unit": audience.holdout_unit,
        "holdout_started_at": audience.holdout_started_at,
        "from": date_from,
        "to": date_to,
        # Per arm at the top level, as in the chains' results (reports.results).
        "treatment": arms["treatment"],
        "holdout": arms["holdout"],
        "uplift": {
            "absolute": uplift.absolute,
            "absolute_ci": uplift.absolute_ci,
            "relative": uplift.relative,
            "relative_ci": uplift.relative_ci,
            "p_value": uplift.p_value,
            "incremental_conversions": uplift.incremental_conversions,
            "incremental_revenue": difference * t["n"] if difference is not None else None,
            "revenue_per_person": difference,
            "revenue_per_person_ci": difference_ci,
        },
        "srm_p_value": (
            sample_ratio_p_value(c["n"], t["n"], audience.holdout_percent) if person else None
        ),
        "enough_data": enough_data(t["conversions"], t["n"], c["conversions"], c["n"]),
        "clustered": not person,
    }
