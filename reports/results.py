"""A chain's results, treatment against holdout, and the client's month roll-up.

Who is counted: everyone enrolled in the period (the client's zone days), in the arm the hash
gave them, whatever happened to them afterwards (intent to treat: an exited or erased person
stays in their arm, as a holdout person does).

Conversion: the chain's goal reached within its conversion window after enrolment, read from the
orders (goal "purchase": a paid order placed in (enrolled_at, enrolled_at + window]) or the
events (goal "event": an event of the goal type in the same window) themselves, not from the
enrolment's state: the engine converts only active enrolments, so a person who left the chain
early and then bought would be missing from one arm more than the other.

Revenue per person: the sum of the person's paid orders (``Order.Status.PAID``; refunded and
cancelled ones are not revenue) placed within the window after enrolment, zeros included. Not
``Enrollment.conversion_value``: the engine records there the amount of the first order only
(and only for active enrolments of purchase goals), while a chain is meant to move all of the
window's revenue.

Everything is aggregated in the database, in one query: common table expressions of the
period's enrolments (arm, end of window, month in the client's zone: compiled by the ORM), their
window's paid orders (and goal events) joined once and grouped per enrolment (hash joins over
the client's rows, not a look-up per person), and three GROUP BYs over the people: arms, months,
steps (joined to the outbox, also counting the messages sent to the treatment arm for their
cost). Python sees a few dozen rows whatever the number of people; the bootstrap (when the
client chose it in ``ReportSettings.revenue_interval``) reads the buyers' revenues only. About
3.5 s for a million enrolments and 750k orders on the 2-core test machine (Welch; the bootstrap
about twice that).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Sum,
    Value,
)
from django.db.models.functions import TruncMonth
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.arms import SRM_ALERT_P, sample_ratio_p_value
from campaigns.models import Enrollment, Message, TriggerChain
from clients.models import Client, Event, Order

from . import uplift
from .models import ChainTestPlan, ReportSettings

ARMS = (Enrollment.Arm.TREATMENT, Enrollment.Arm.HOLDOUT)
MONEY = Decimal("0.01")
ZERO = Decimal("0")


def report_settings_for(client: Client | int) -> ReportSettings:
    """The client's report settings, or the defaults (unsaved) when none were set."""
    client_id = client if isinstance(client, int) else client.pk
    found = ReportSettings.objects.for_client(client_id).first()
    return found or ReportSettings(client_id=client_id)


def _day_start(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=tz)


def _period_people(
    chain: TriggerChain, start: dt.datetime | None, end: dt.datetime | None, tz: dt.tzinfo
) -> tuple[str, list]:
    """SQL and parameters of the period's people: ``id, arm, enrolled_at, month, converted
    (0/1), revenue``. The enrolments (and the end of each one's window, the month in the
    client's zone) are compiled by the ORM; orders and goal events are joined to them once and
    grouped per enrolment (a hash join on the client's rows, not a look-up per person)."""
    client_id = chain.client_id
    window = dt.timedelta(days=chain.conversion_window_days)
    enrolments = Enrollment.objects.for_client(client_id).filter(chain=chain)
    if start is not None:
        enrolments = enrolments.filter(enrolled_at__gte=start)
    if end is not None:
        enrolments = enrolments.filter(enrolled_at__lt=end)
    enrolments = enrolments.annotate(
        until=ExpressionWrapper(F("enrolled_at") + Value(window), output_field=DateTimeField()),
        month=TruncMonth("enrolled_at", tzinfo=tz),
    ).values("id", "arm", "customer_id", "enrolled_at", "until", "month")
    e_sql, e_params = enrolments.query.sql_with_params()
    params = [*e_params, client_id, Order.Status.PAID.value]
    # Names from the models' meta, the enrolments compiled by the ORM, values as parameters.
    if chain.goal == TriggerChain.Goal.EVENT:
        goal = f"""
 g AS (SELECT DISTINCT e.id FROM e JOIN {Event._meta.db_table} ev
        ON ev.client_id = %s AND ev.customer_id = e.customer_id AND ev.type = %s
       AND ev.occurred_at > e.enrolled_at AND ev.occurred_at <= e.until),"""  # noqa: S608
        params += [client_id, chain.goal_event_type]
        goal_key, goal_join = "g", " LEFT JOIN g ON g.id = e.id"
    else:  # a purchase: converted when the window has a paid order
        goal, goal_key, goal_join = "", "r", ""
    sql = f"""e AS ({e_sql}),
 r AS (SELECT e.id, SUM(o.amount) AS revenue FROM e JOIN {Order._meta.db_table} o
        ON o.client_id = %s AND o.customer_id = e.customer_id AND o.status = %s
       AND o.placed_at > e.enrolled_at AND o.placed_at <= e.until
       GROUP BY e.id),{goal}
 p AS (SELECT e.id, e.arm, e.enrolled_at, e.month,
              CASE WHEN {goal_key}.id IS NULL THEN 0 ELSE 1 END AS converted,
              COALESCE(r.revenue, 0) AS revenue
         FROM e LEFT JOIN r ON r.id = e.id{goal_join})"""  # noqa: S608
    return sql, params


_AGGREGATE_SQL = """
WITH {people}
SELECT 'arm' AS kind, p.arm, CAST(NULL AS timestamp) AS month, CAST(NULL AS bigint) AS step_id,
       COUNT(*) AS n, SUM(p.converted) AS conversions,
       SUM(p.revenue) AS revenue, SUM(p.revenue * p.revenue) AS revenue_squares,
       MAX(p.enrolled_at) AS last_at, 0 AS sent
  FROM p GROUP BY p.arm
UNION ALL
SELECT 'month', p.arm, p.month, NULL,
       COUNT(*), SUM(p.converted),
       SUM(p.revenue), SUM(p.revenue * p.revenue), NULL, 0
  FROM p GROUP BY p.arm, p.month
UNION ALL
SELECT 'step', p.arm, NULL, m.step_id,
       COUNT(*), SUM(p.converted),
       SUM(p.revenue), SUM(p.revenue * p.revenue), NULL,
       SUM(CASE WHEN m.sent_at IS NOT NULL THEN 1 ELSE 0 END)
  FROM p JOIN {message} m ON m.enrollment_id = p.id AND m.client_id = %s AND m.chain_id = %s
 GROUP BY p.arm, m.step_id
"""


def _as_datetime(value: Any, tz: dt.tzinfo) -> dt.datetime | None:
    """A timestamp as the database returned it (SQLite gives text) as an aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(tz)


def _local_date(value: Any, tz: dt.tzinfo) -> dt.date:
    """A truncated month as the database returned it: PostgreSQL and SQLite give the local wall
    time (naive, or text on SQLite); an aware value is brought to the zone first."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(tz).date() if timezone.is_aware(value) else value.date()
    return value


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else ZERO


class _Arms(dict):
    """{arm: [n, conversions, revenue, revenue_squares]} of one group (all, a month, a step)."""

    def add(self, arm: str, n: int, conversions: int, revenue: Any, squares: Any) -> None:
        self[arm] = [int(n), int(conversions or 0), _decimal(revenue), _decimal(squares)]

    def get_arm(self, arm: str) -> list:
        return self.get(arm, [0, 0, ZERO, ZERO])


def _money(value: Decimal | float | None) -> str | None:
    if value is None:
        return None
    return str(Decimal(str(value)).quantize(MONEY))


def _pair(values: tuple[float, float] | None) -> list[float] | None:
    return list(values) if values is not None else None


def _figures(
    arms: _Arms,
    *,
    alpha: float,
    revenue_uplift: uplift.RevenueUplift | None = None,
) -> dict[str, Any]:
    """Per arm n, conversions, revenue, rate and revenue per person, and the uplift block."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        n, conversions, revenue, _squares = arms.get_arm(arm)
        out[arm] = {
            "n": n,
            "conversions": conversions,
            "conversion_rate": conversions / n if n else None,
            "revenue": _money(revenue),
            "revenue_per_person": _money(revenue / n) if n else None,
        }
    n_t, c_t, rev_t, sq_t = arms.get_arm(Enrollment.Arm.TREATMENT)
    n_c, c_c, rev_c, sq_c = arms.get_arm(Enrollment.Arm.HOLDOUT)
    conv = uplift.conversion_uplift(c_t, n_t, c_c, n_c, alpha=alpha)
    if revenue_uplift is None:
        revenue_uplift = uplift.revenue_uplift_welch(
            uplift.ArmMoments(n_t, float(rev_t), float(sq_t)),
            uplift.ArmMoments(n_c, float(rev_c), float(sq_c)),
            alpha=alpha,
        )
    out["uplift"] = {
        "absolute": conv.absolute,
        "absolute_ci": _pair(conv.absolute_ci),
        "relative": conv.relative,
        "relative_ci": _pair(conv.relative_ci),
        "p_value": conv.p_value,
        "incremental_conversions": conv.incremental_conversions,
        "incremental_revenue": _money(revenue_uplift.incremental_revenue),
        "revenue_per_person_difference": _money(revenue_uplift.difference),
        "revenue_per_person_difference_ci": (
            [_money(v) for v in revenue_uplift.difference_ci]
            if revenue_uplift.difference_ci is not None
            else None
        ),
        "revenue_p_value": revenue_uplift.p_value,
        "revenue_interval": revenue_uplift.method,
    }
    out["enough_data"] = uplift.enough_data(c_t, n_t, c_c, n_c)
    return out


def _bootstrap(
    people_sql: str, people_params: list, arms: _Arms, alpha: float, seed: int
) -> uplift.RevenueUplift:
    """The bootstrap from the buyers' revenues only (the others are zeros)."""
    buyers: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {people_sql} SELECT p.arm, p.revenue FROM p WHERE p.revenue > 0",  # noqa: S608
            people_params,
        )
        for arm, revenue in cursor.fetchall():
            buyers[arm].append(float(revenue))
    return uplift.revenue_uplift_bootstrap_nonzero(
        buyers[Enrollment.Arm.TREATMENT],
        arms.get_arm(Enrollment.Arm.TREATMENT)[0],
        buyers[Enrollment.Arm.HOLDOUT],
        arms.get_arm(Enrollment.Arm.HOLDOUT)[0],
        alpha=alpha,
        seed=seed,
    )


def _horizon(
    chain: TriggerChain,
    arms: _Arms,
    last_at: dt.datetime | None,
    now: dt.datetime,
    tz: dt.tzinfo,
) -> dict[str, Any]:
    plan = ChainTestPlan.objects.for_client(chain.client_id).filter(chain=chain).first()
    n_t = arms.get_arm(Enrollment.Arm.TREATMENT)[0]
    n_c = arms.get_arm(Enrollment.Arm.HOLDOUT)[0]
    if plan is not None:
        date = plan.planned_end
        reached = now.astimezone(tz).date() >= date
        sample = None
        if plan.planned_treatment_n is not None and plan.planned_control_n is not None:
            sample = n_t >= plan.planned_treatment_n and n_c >= plan.planned_control_n
        return {
            "source": "plan",
            "date": date.isoformat(),
            "reached": reached,
            "planned_treatment_n": plan.planned_treatment_n,
            "planned_control_n": plan.planned_control_n,
            "planned_sample_reached": sample,
        }
    if last_at is None:
        return {"source": "window", "date": None, "reached": False}
    end = last_at + dt.timedelta(days=chain.conversion_window_days)
    return {
        "source": "window",
        "date": end.astimezone(tz).date().isoformat(),
        "reached": now >= end,
    }


def _verdict(
    figures: dict[str, Any], horizon: dict[str, Any], srm_warning: bool, alpha: float
) -> dict[str, str]:
    """One sentence, never an early winner: before the horizon only "the test is running"."""
    if not horizon["reached"]:
        if horizon["date"] is None:
            return {"code": "no_data", "text": _("в периоде никто не вошёл в цепочку")}
        return {
            "code": "running",
            "text": _("тест идёт, вывод после %(date)s")
            % {"date": dt.date.fromisoformat(horizon["date"]).strftime("%d.%m.%Y")},
        }
    if srm_warning:
        return {
            "code": "sample_ratio_mismatch",
            "text": _(
                "размеры групп не совпадают с плановой долей контрольной группы: "
                "сравнение ненадёжно, проверьте правила входа"
            ),
        }
    if not figures["enough_data"]:
        return {"code": "not_enough_data", "text": _("недостаточно данных")}
    block = figures["uplift"]
    if block["p_value"] is not None and block["p_value"] < alpha:
        if block["absolute"] > 0:
            return {"code": "uplift", "text": _("цепочка повышает конверсию")}
        return {"code": "harm", "text": _("цепочка снижает конверсию")}
    return {"code": "no_difference", "text": _("разница между группами не доказана")}


def chain_results(
    *,
    chain: TriggerChain,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The chain's results for people enrolled from ``date_from`` to ``date_to`` inclusive (the
    client's zone days; open ends take everyone): per arm ``n``, ``conversions``,
    ``conversion_rate``, ``revenue`` (RUB string), ``revenue_per_person``; ``uplift``
    (``absolute``, ``absolute_ci``, ``relative``, ``relative_ci``, ``p_value``,
    ``incremental_conversions``, ``incremental_revenue``, ``revenue_per_person_difference``,
    ``revenue_per_person_difference_ci``, ``revenue_p_value``, ``revenue_interval``, ``roi``,
    ``message_costs``); ``srm_p_value`` and ``srm_warning`` (the period's arms against the
    planned holdout share); ``enough_data``; ``horizon`` and ``verdict``; ``steps`` (the same
    figures for the people who reached each step: both arms have a message row per step) and
    ``months`` (per month of enrolment). See the module's docstring for what is counted."""
    client = chain.client
    tz = client.tzinfo
    now = now or timezone.now()
    settings = report_settings_for(client)
    alpha = 0.05
    start = _day_start(date_from, tz) if date_from else None
    end = _day_start(date_to + dt.timedelta(days=1), tz) if date_to else None
    people_sql, people_params = _period_people(chain, start, end, tz)
    sql = _AGGREGATE_SQL.format(people=people_sql, message=Message._meta.db_table)
    params = [*people_params, chain.client_id, chain.pk]
    totals = _Arms()
    months: dict[dt.date, _Arms] = {}
    steps: dict[int, _Arms] = {}
    sent_by_step: dict[int, int] = {}
    last_at = None
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A few grouped scans: compiling them (JIT) costs more than it saves (~1.5 s at 1M).
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        for kind, arm, month, step_id, n, conv, rev, squares, last, sent_n in cursor.fetchall():
            if kind == "arm":
                totals.add(arm, n, conv, rev, squares)
                last = _as_datetime(last, tz)
                if last is not None and (last_at is None or last > last_at):
                    last_at = last
            elif kind == "month":
                key = _local_date(month, tz)
                months.setdefault(key, _Arms()).add(arm, n, conv, rev, squares)
            else:
                steps.setdefault(int(step_id), _Arms()).add(arm, n, conv, rev, squares)
                if arm == Enrollment.Arm.TREATMENT and sent_n:
                    sent_by_step[int(step_id)] = int(sent_n)

    revenue_uplift = None
    if settings.revenue_interval == ReportSettings.RevenueInterval.BOOTSTRAP:
        revenue_uplift = _bootstrap(people_sql, people_params, totals, alpha, seed=chain.pk)
    figures = _figures(totals, alpha=alpha, revenue_uplift=revenue_uplift)
    chain_steps = list(chain.steps.select_related("template").order_by("position"))
    # Messages sent to the treated, per channel (a message goes over its step's channel).
    sent: dict[str, int] = {}
    for step in chain_steps:
        if sent_by_step.get(step.pk):
            sent[step.channel] = sent.get(step.channel, 0) + sent_by_step[step.pk]
    costs = {"email": settings.cost_email, "sms": settings.cost_sms, "push": settings.cost_push}
    message_costs = sum(
        (Decimal(count) * costs.get(channel, ZERO) for channel, count in sent.items()), ZERO
    )
    incremental = figures["uplift"]["incremental_revenue"]
    figures["uplift"]["message_costs"] = _money(message_costs)
    figures["uplift"]["messages_sent"] = sent
    figures["uplift"]["roi"] = uplift.roi(
        float(incremental) if incremental is not None else None, float(message_costs)
    )

    n_t = totals.get_arm(Enrollment.Arm.TREATMENT)[0]
    n_c = totals.get_arm(Enrollment.Arm.HOLDOUT)[0]
    srm_p_value = sample_ratio_p_value(n_c, n_t, chain.holdout_percent)
    srm_warning = srm_p_value is not None and srm_p_value < SRM_ALERT_P
    horizon = _horizon(chain, totals, last_at, now, tz)
    step_rows = []
    for step in chain_steps:
        row = _figures(steps.get(step.pk, _Arms()), alpha=alpha)
        step_rows.append(
            {
                "step": step.pk,
                "position": step.position,
                "channel": step.channel,
                "template": step.template.name,
                **row,
            }
        )
    return {
        "chain": chain.pk,
        "from": date_from.isoformat() if date_from else None,
        "to": date_to.isoformat() if date_to else None,
        "goal": chain.goal,
        "conversion_window_days": chain.conversion_window_days,
        "holdout_percent": chain.holdout_percent,
        **figures,
        "srm_p_value": srm_p_value,
        "srm_warning": srm_warning,
        "chain_srm_p_value": chain.srm_p_value,
        "horizon": horizon,
        "verdict": _verdict(figures, horizon, srm_warning, alpha),
        "steps": step_rows,
        "months": [
            {"month": month.strftime("%Y-%m"), **_figures(arms, alpha=alpha)}
            for month, arms in sorted(months.items())
        ],
    }


def _month_bounds(month: dt.date, tz: dt.tzinfo) -> tuple[dt.date, dt.date]:
    first = month.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following - dt.timedelta(days=1)


def client_month_rollup(*, client: Client, month: dt.date) -> dict[str, Any]:
    """One month of a client (``month``: any day of it, the client's zone): each chain's
    incremental revenue for the people enrolled that month, summed; the month's revenue (paid
    orders placed in it); the revenue from triggered messages (paid orders of the month placed
    within the chain's conversion window after a message sent to the person in the treatment
    arm, each order once) and its share of the month's revenue, next to the agency's benchmark
    (``ReportSettings.triggered_revenue_benchmark``, per cent)."""
    tz = client.tzinfo
    first, last = _month_bounds(month, tz)
    start, end = _day_start(first, tz), _day_start(last + dt.timedelta(days=1), tz)
    chains = []
    incremental_total = ZERO
    chain_ids = (
        Enrollment.objects.for_client(client)
        .filter(enrolled_at__gte=start, enrolled_at__lt=end)
        .order_by()
        .values_list("chain_id", flat=True)
        .distinct()
    )
    for chain in TriggerChain.objects.for_client(client).filter(pk__in=list(chain_ids)):
        chain.client = client
        result = chain_results(chain=chain, date_from=first, date_to=last)
        incremental = result["uplift"]["incremental_revenue"]
        if incremental is not None:
            incremental_total += Decimal(incremental)
        chains.append(
            {
                "chain": chain.pk,
                "name": chain.name,
                "treatment_n": result["treatment"]["n"],
                "holdout_n": result["holdout"]["n"],
                "incremental_revenue": incremental,
                "incremental_revenue_ci": result["uplift"]["revenue_per_person_difference_ci"]
                and [
                    _money(Decimal(v) * result["treatment"]["n"])
                    for v in result["uplift"]["revenue_per_person_difference_ci"]
                ],
                "enough_data": result["enough_data"],
                "horizon_reached": result["horizon"]["reached"],
            }
        )

    share = triggered_revenue_share(client=client, month=first)
    return {
        "month": first.strftime("%Y-%m"),
        **share,
        "incremental_revenue": _money(incremental_total),
        "chains": chains,
    }


def triggered_revenue_share(*, client: Client, month: dt.date) -> dict[str, Any]:
    """The month's revenue (paid orders placed in it, the client's zone), the part of it from
    triggered messages (orders placed within the chain's conversion window after a message sent
    to the person in the treatment arm; each order once) and its share, next to the benchmark."""
    tz = client.tzinfo
    first, last = _month_bounds(month, tz)
    start, end = _day_start(first, tz), _day_start(last + dt.timedelta(days=1), tz)
    settings = report_settings_for(client)
    orders = Order.objects.for_client(client).filter(
        status=Order.Status.PAID, placed_at__gte=start, placed_at__lt=end
    )
    revenue = orders.aggregate(total=Sum("amount"))["total"] or ZERO
    windows = set(
        TriggerChain.objects.for_client(client).values_list("conversion_window_days", flat=True)
    )
    triggered = ZERO
    if windows and revenue:
        condition = None
        for days in sorted(windows):
            sent = Exists(
                Message.objects.for_client(client).filter(
                    customer_id=OuterRef("customer_id"),
                    arm=Enrollment.Arm.TREATMENT,
                    chain__conversion_window_days=days,
                    sending_at__isnull=False,
                    sent_at__isnull=False,
                    sent_at__lt=OuterRef("placed_at"),
                    sent_at__gte=ExpressionWrapper(
                        OuterRef("placed_at") - Value(dt.timedelta(days=days)),
                        output_field=DateTimeField(),
                    ),
                )
            )
            condition = sent if condition is None else condition | sent
        triggered = orders.filter(condition).aggregate(total=Sum("amount"))["total"] or ZERO
    share = float(triggered / revenue) if revenue else None
    return {
        "month": first.strftime("%Y-%m"),
        "revenue": _money(revenue),
        "triggered_revenue": _money(triggered),
        "triggered_share": share,
        "triggered_share_percent": round(share * 100, 2) if share is not None else None,
        "benchmark_percent": float(settings.triggered_revenue_benchmark),
    }
