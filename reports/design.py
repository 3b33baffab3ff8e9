"""Incrementality test design: the sample-size calculator for a client (the API and the admin
form call :func:`experiment_design`), a chain's observed daily flow of eligible people, and the
chain's test plan (its horizon, fixed up front) set from a design.

The tier rule: test design is the ``incrementality`` feature (Enterprise in the agency's offer),
checked here once for every entry point. A chain's results are not: every tier with chains sees
them (``reports.results``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.audit import audit_log
from agency.errors import ServiceError
from campaigns.models import Enrollment, TriggerChain
from clients.models import Client
from clients.tiers import tier_require

from . import uplift
from .models import ChainTestPlan

FLOW_DAYS = 28

# What a refusal of the calculator says per field (the pure module's ValueError names it).
_FIELD_MESSAGES = {
    "baseline_rate": gettext_lazy("Конверсия контрольной группы должна быть строго между 0 и 1."),
    "mde_absolute": gettext_lazy(
        "Укажите один минимальный эффект (mde_absolute или mde_relative), не нулевой и такой, "
        "чтобы конверсия основной группы осталась строго между 0 и 1."
    ),
    "mde_relative": gettext_lazy(
        "Относительный эффект должен быть не нулевым, и конверсия основной группы должна "
        "остаться строго между 0 и 1."
    ),
    "alpha": gettext_lazy("Уровень значимости должен быть строго между 0 и 1."),
    "power": gettext_lazy("Мощность должна быть строго между 0 и 1."),
    "treatment_share": gettext_lazy("Доля основной группы должна быть строго между 0 и 1."),
    "eligible_per_day": gettext_lazy("Поток людей в день должен быть положительным."),
}


class DesignError(ServiceError):
    default_code = "invalid_design"


def chain_daily_flow(*, chain: TriggerChain, now: dt.datetime | None = None) -> float:
    """People entering the chain per day (both arms) over the last :data:`FLOW_DAYS` days."""
    now = now or timezone.now()
    entered = (
        Enrollment.objects.for_client(chain.client_id)
        .filter(chain=chain, enrolled_at__gt=now - dt.timedelta(days=FLOW_DAYS))
        .filter(enrolled_at__lte=now)
        .count()
    )
    return entered / FLOW_DAYS


def experiment_design(
    *,
    client: Client,
    baseline_rate: float,
    mde_absolute: float | None = None,
    mde_relative: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_share: float = 0.5,
    eligible_per_day: float | None = None,
    chain: TriggerChain | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """People needed per arm and in total, and the days at the given flow (or at the chain's
    observed flow over the last 28 days when ``chain`` is given and ``eligible_per_day`` is
    not). Refuses a tier without incrementality tests (403) and nonsense (400, with the field)."""
    tier_require(client=client, feature="incrementality")
    flow_source = "given" if eligible_per_day is not None else None
    if chain is not None and eligible_per_day is None:
        flow = chain_daily_flow(chain=chain, now=now)
        eligible_per_day = flow if flow > 0 else None
        flow_source = "chain" if flow > 0 else "chain_empty"
    try:
        size = uplift.sample_size_two_proportions(
            baseline_rate=baseline_rate,
            mde_absolute=mde_absolute,
            mde_relative=mde_relative,
            alpha=alpha,
            power=power,
            treatment_share=treatment_share,
            eligible_per_day=eligible_per_day,
        )
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise DesignError(
            message=str(_FIELD_MESSAGES.get(field, exc)), field=field, extra={"detail": str(exc)}
        ) from exc
    return {
        **size.as_dict(),
        "eligible_per_day": eligible_per_day,
        "eligible_per_day_source": flow_source,
        "chain": chain.pk if chain is not None else None,
    }


def chain_test_plan_set(
    *,
    chain: TriggerChain,
    design: dict[str, Any],
    today: dt.date | None = None,
    actor: Any = None,
    source: str = "admin",
    ip: str | None = None,
) -> ChainTestPlan:
    """Fix the chain's test horizon from a design: the days to gather the people plus the
    conversion window of the last of them. Needs the design's ``days`` (a flow of people)."""
    if not design.get("days"):
        raise DesignError(
            "design_needs_flow",
            _("Для плана нужен поток людей в день: укажите его или цепочку с входами."),
            field="eligible_per_day",
        )
    today = today or timezone.localdate(timezone=chain.client.tzinfo)
    planned_end = today + dt.timedelta(days=design["days"] + chain.conversion_window_days)
    with transaction.atomic():
        plan, _created = ChainTestPlan.objects.for_client(chain.client_id).update_or_create(
            chain=chain,
            defaults={
                "client_id": chain.client_id,
                "baseline_rate": design["baseline_rate"],
                "mde_absolute": design["mde_absolute"],
                "alpha": design["alpha"],
                "power": design["power"],
                "planned_treatment_n": design["treatment_n"],
                "planned_control_n": design["control_n"],
                "planned_end": planned_end,
            },
        )
        audit_log(
            actor=actor,
            action="reports.chain_test_plan_set",
            client=chain.client,
            obj=plan,
            source=source,
            ip=ip,
            details={"chain": chain.pk, "planned_end": planned_end.isoformat()},
        )
    return plan
