"""Segments: definitions checked against the client's tier, members computed per kind, and
memberships kept as a history (entered/left) by set-based refreshes.

Services (writes): :func:`segment_create`, :func:`segment_update`, :func:`segment_refresh`,
:func:`segment_memberships_refresh` (every active segment of a client, after each scoring run).
Selectors (reads): :func:`segment_members_query` (who belongs now, one place per kind),
:func:`segment_members_current` (who is stored as a member), :func:`transition_matrix`,
:func:`segment_movement`.

Ranking rules (``clv_top_percent``, ``clv_decile``, ``lookalike_seed``) rank the client's
non-erased customers with a positive value, in the order of ``segments.rfm`` (by value, ties by
customer id, worst first): the top N % are the last ``ceil(N × n / 100)`` of that order, decile
d is ``NTILE(10) = d`` of it (10 = best).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.audit import audit_log
from agency.errors import ServiceError
from clients.models import Client, Customer, Order
from clients.tiers import TierLimitError, tier_check_limit, tier_require
from consent.selectors import customers_consented_for, customers_not_erased
from consent.services import ConsentError, consent_purpose_get

from . import lifecycle, rfm
from .labels import lifecycle_stage_label, rfm_segment_label
from .models import CustomerScore, ScoringRun, Segment, SegmentMembership, SegmentSizeSnapshot
from .rules import (
    SCORE_FIELDS,
    RuleError,
    RuleInvalid,
    rule_describe,
    rule_score_fields,
    rule_to_q,
    rule_uses_predictive,
    validate_rule,
)

logger = logging.getLogger(__name__)

Kind = Segment.Kind

LOOKALIKE_MIN_MEMBERS = 1000
LOOKALIKE_DEFAULT_PERCENT = 20
LOOKALIKE_BY = ("predicted_clv", "monetary")
PREDICTIVE_KEYS = ("churn_at_least", "clv_top_percent", "clv_decile")
SUPPRESSION_TYPES = ("recent_purchasers", "existing_customers", "opted_out")

WARNING_LOOKALIKE_SMALL = format_lazy(
    gettext_lazy("меньше {n} участников: рекламные платформы могут отказать в look-alike"),
    n=LOOKALIKE_MIN_MEMBERS,
)
WARNING_NO_SCORES = gettext_lazy(
    "у клиента ещё нет оценок покупателей: сегмент наполнится после скоринга"
)


class SegmentError(ServiceError, ValueError):
    """A segment write refused by a rule: a stable ``code``, a Russian message, and for an
    invalid definition the errors naming each bad node (``errors`` in the JSON body)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        errors: list[RuleError] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(code, message, extra=extra)
        self.errors = errors or []

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        return body


class TransitionUnavailable(SegmentError):
    """No exact transition matrix exists between these two runs (see transition_matrix)."""

    status = 409


@dataclass(frozen=True)
class SegmentRefreshResult:
    segment_id: int
    size: int
    entered: int
    left: int
    skipped: str = ""


# --------------------------------------------------------------------------------------------
# Definitions


def _percent(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 < value <= 100


def _names(definition: dict, key: str, known: tuple[str, ...], what: str) -> list[RuleError]:
    values = definition.get(key)
    if not isinstance(values, list) or not values:
        return [
            RuleError(key, _("ожидается непустой список: %(known)s") % {"known": ", ".join(known)})
        ]
    errors = []
    for i, value in enumerate(values):
        if value not in known:
            message = what % {"value": repr(value), "known": ", ".join(known)}
            errors.append(RuleError(f"{key}[{i}]", message))
    if len(set(map(str, values))) != len(values):
        errors.append(RuleError(key, _("значения повторяются")))
    return errors


def _unknown_keys(definition: dict, allowed: Iterable[str]) -> list[RuleError]:
    return [RuleError(str(k), _("неизвестный ключ")) for k in definition if k not in allowed]


def segment_definition_validate(kind: str, definition: Any) -> tuple[dict, list[RuleError]]:
    """The definition normalised (defaults filled in) and its problems, each naming the key or
    the rule node (``all[2].orders.count``)."""
    if kind == Kind.RULE:
        return definition, validate_rule(definition)
    if not isinstance(definition, dict):
        return definition, [RuleError("", _("определение — JSON-объект"))]
    definition = dict(definition)
    if kind == Kind.RFM:
        errors = _unknown_keys(definition, ("names",))
        unknown = _("неизвестный RFM-сегмент %(value)s: одно из %(known)s")
        errors += _names(definition, "names", rfm.SEGMENTS, unknown)
    elif kind == Kind.LIFECYCLE:
        errors = _unknown_keys(definition, ("stages",))
        unknown = _("неизвестная стадия %(value)s: одна из %(known)s")
        errors += _names(definition, "stages", lifecycle.STAGES, unknown)
    elif kind == Kind.PREDICTIVE:
        errors = _unknown_keys(definition, PREDICTIVE_KEYS)
        given = [k for k in PREDICTIVE_KEYS if k in definition]
        if len(given) != 1:
            keys = ", ".join(PREDICTIVE_KEYS)
            errors.append(RuleError("", _("ровно одно из: %(keys)s") % {"keys": keys}))
        elif given[0] == "churn_at_least":
            value = definition["churn_at_least"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                errors.append(RuleError("churn_at_least", _("вероятность оттока от 0 до 1")))
        elif given[0] == "clv_top_percent":
            if not _percent(definition["clv_top_percent"]):
                errors.append(RuleError("clv_top_percent", _("доля в процентах: больше 0, до 100")))
        elif definition["clv_decile"] not in range(1, 11) or isinstance(
            definition["clv_decile"], bool
        ):
            errors.append(RuleError("clv_decile", _("дециль от 1 до 10 (10 — лучшие)")))
    elif kind == Kind.LOOKALIKE_SEED:
        errors = _unknown_keys(definition, ("top_percent", "by"))
        definition.setdefault("top_percent", LOOKALIKE_DEFAULT_PERCENT)
        definition.setdefault("by", "predicted_clv")
        if not _percent(definition["top_percent"]):
            errors.append(RuleError("top_percent", _("доля в процентах: больше 0, до 100")))
        if definition["by"] not in LOOKALIKE_BY:
            by = ", ".join(LOOKALIKE_BY)
            errors.append(RuleError("by", _("по чему отбирать: %(by)s") % {"by": by}))
    elif kind == Kind.SUPPRESSION:
        kind_of = definition.get("type")
        if kind_of not in SUPPRESSION_TYPES:
            known = ", ".join(SUPPRESSION_TYPES)
            return definition, [
                RuleError("type", _("вид исключений: %(known)s") % {"known": known})
            ]
        if kind_of == "recent_purchasers":
            errors = _unknown_keys(definition, ("type", "days"))
            days = definition.get("days")
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
                errors.append(RuleError("days", _("число дней от 1 до 3650")))
        elif kind_of == "existing_customers":
            errors = _unknown_keys(definition, ("type",))
        else:
            errors = _unknown_keys(definition, ("type", "purpose"))
            try:
                consent_purpose_get(str(definition.get("purpose")))
            except ConsentError as exc:
                errors.append(RuleError("purpose", str(exc)))
    else:
        return definition, [RuleError("", _("неизвестный вид сегмента %(kind)r") % {"kind": kind})]
    return definition, errors


def segment_needs_predictive(kind: str, definition: Any) -> bool:
    """Does a segment use the CLV/churn models (the tier feature ``predictive``)?"""
    if kind == Kind.PREDICTIVE:
        return True
    if kind == Kind.LOOKALIKE_SEED:
        return (definition or {}).get("by", "predicted_clv") == "predicted_clv"
    if kind == Kind.RULE:
        return rule_uses_predictive(definition)
    return False


def _uses_scores(segment: Segment) -> bool:
    if segment.kind in (Kind.RFM, Kind.LIFECYCLE, Kind.PREDICTIVE, Kind.LOOKALIKE_SEED):
        return True
    return segment.kind == Kind.RULE and bool(rule_score_fields(segment.definition))


def segment_definition_describe(kind: str, definition: Any) -> str:
    """The definition in words, for people, in the active language (Russian by default)."""
    _normalised, errors = segment_definition_validate(kind, definition)
    if errors:
        return _("Определение с ошибками:") + "\n" + "\n".join(f"• {e}" for e in errors)
    d = _normalised
    if kind == Kind.RFM:
        names = ", ".join(rfm_segment_label(name) for name in d["names"])
        return _("RFM-сегменты: %(names)s") % {"names": names}
    if kind == Kind.LIFECYCLE:
        stages = ", ".join(lifecycle_stage_label(stage) for stage in d["stages"])
        return _("Стадии жизненного цикла: %(stages)s") % {"stages": stages}
    if kind == Kind.PREDICTIVE:
        if "churn_at_least" in d:
            return _("Вероятность оттока ≥ %(p)s") % {"p": number_format(d["churn_at_least"])}
        if "clv_top_percent" in d:
            top = number_format(d["clv_top_percent"])
            return _("Лучшие %(top)s %% по прогнозу CLV") % {"top": top}
        return _("%(decile)s-й дециль по прогнозу CLV (10 — лучшие)") % {"decile": d["clv_decile"]}
    if kind == Kind.LOOKALIKE_SEED:
        top = number_format(d["top_percent"])
        if d["by"] == "predicted_clv":
            return _("Основа look-alike: лучшие %(top)s %% по прогнозу CLV") % {"top": top}
        return _("Основа look-alike: лучшие %(top)s %% по сумме покупок") % {"top": top}
    if kind == Kind.SUPPRESSION:
        if d["type"] == "recent_purchasers":
            return _("Исключить купивших за последние %(days)s дн.") % {"days": d["days"]}
        if d["type"] == "existing_customers":
            return _("Исключить уже купивших (хотя бы один оплаченный заказ)")
        return _("Исключить тех, у кого нет действующего согласия на цель «%(purpose)s»") % {
            "purpose": d["purpose"]
        }
    return rule_describe(d)


# --------------------------------------------------------------------------------------------
# Tier limits: the one rule is clients.tiers (data in clients.Tier, never hard-coded)


def _check_predictive(client: Client, kind: str, definition: Any) -> None:
    if not segment_needs_predictive(kind, definition):
        return
    context = hint = ""
    if kind == Kind.LOOKALIKE_SEED:
        context = _("Основа look-alike по прогнозу CLV — предиктивная функция.")
        hint = _('На этом тарифе возьмите основу по сумме покупок ("by": "monetary").')
    elif kind == Kind.RULE:
        used = sorted(f for f in rule_score_fields(definition) if SCORE_FIELDS[f].predictive)
        context = _("Правило использует предиктивные оценки (%(scores)s).") % {
            "scores": ", ".join(used)
        }
    tier_require(client=client, feature="predictive", context=context, hint=hint)


def _check_segment_count(client: Client, exclude_pk: int | None) -> None:
    active = Segment.objects.for_client(client).filter(is_active=True)
    if exclude_pk is not None:
        active = active.exclude(pk=exclude_pk)
    tier_check_limit(client=client, limit="segments", current=active.count())


def segment_check(
    *,
    client: Client,
    name: str,
    kind: str,
    definition: Any,
    is_active: bool = True,
    segment: Segment | None = None,
) -> dict:
    """Everything a create or update must satisfy; the normalised definition, or SegmentError
    (TierLimitError from ``clients.tiers`` for the tier).

    Order: shape (name, kind, definition), then the tier (feature, then the count of active
    segments, which the segment itself counts in only if it is becoming active)."""
    name = (name or "").strip()
    if not name:
        raise SegmentError("invalid_name", _("Нужно название сегмента."))
    if len(name) > Segment._meta.get_field("name").max_length:
        raise SegmentError("invalid_name", _("Название не длиннее 200 знаков."))
    taken = Segment.objects.for_client(client).filter(name=name)
    if segment is not None:
        taken = taken.exclude(pk=segment.pk)
    if taken.exists():
        raise SegmentError(
            "segment_name_taken", _("Сегмент «%(name)s» у клиента уже есть.") % {"name": name}
        )
    if kind not in Kind.values:
        kinds = ", ".join(Kind.values)
        raise SegmentError("invalid_kind", _("Вид сегмента: один из %(kinds)s.") % {"kinds": kinds})
    normalised, errors = segment_definition_validate(kind, definition)
    if errors:
        raise SegmentError(
            "invalid_definition",
            _("Определение сегмента с ошибками: %(errors)s")
            % {"errors": "; ".join(str(e) for e in errors)},
            errors=errors,
        )
    _check_predictive(client, kind, normalised)
    becoming_active = is_active and (segment is None or not segment.is_active)
    if becoming_active:
        _check_segment_count(client, segment.pk if segment else None)
    return normalised


def _lock_client(client: Client) -> Client:
    """Serialises segment writes of one client, so two requests cannot both take the last slot
    of the tier's limit."""
    return Client.objects.select_for_update().select_related("tier").get(pk=client.pk)


def _actor_user(actor: Any) -> Any:
    """The person behind an action, or None (an API key, a beat task)."""
    if getattr(actor, "pk", None) and getattr(actor, "is_authenticated", False):
        return actor
    return None


def _actor_fields(actor: Any) -> dict[str, Any]:
    label = "" if _actor_user(actor) or actor is None else str(actor)
    return {"actor": actor, "actor_label": label}


def segment_create(
    *,
    client: Client,
    name: str,
    kind: str,
    definition: Any,
    actor: Any = None,
    is_active: bool = True,
    source: str = "admin",
    refresh: bool = True,
) -> Segment:
    """A new segment, checked against the tier; its members are computed at once (``refresh``)."""
    with transaction.atomic():
        locked = _lock_client(client)
        normalised = segment_check(
            client=locked, name=name, kind=kind, definition=definition, is_active=is_active
        )
        segment = Segment.objects.create(
            client=locked,
            name=name.strip(),
            kind=kind,
            definition=normalised,
            is_active=is_active,
            created_by=_actor_user(actor),
        )
        audit_log(
            action="segment_created",
            source=source,
            client=locked,
            obj=segment,
            details={"kind": kind, "definition": normalised, "is_active": is_active},
            **_actor_fields(actor),
        )
    if refresh and is_active:
        segment_refresh(segment=segment)
        segment.refresh_from_db()
    return segment


_UNSET: Any = object()


def segment_update(
    *,
    segment: Segment,
    actor: Any = None,
    name: str = _UNSET,
    kind: str = _UNSET,
    definition: Any = _UNSET,
    is_active: bool = _UNSET,
    source: str = "admin",
    refresh: bool = True,
) -> Segment:
    """Change a segment (only the fields given), checked like a new one; members are recomputed
    when what decides them changed."""
    with transaction.atomic():
        locked = _lock_client(segment.client)
        current = Segment.objects.for_client(locked).select_for_update().get(pk=segment.pk)
        new = {
            "name": current.name if name is _UNSET else name,
            "kind": current.kind if kind is _UNSET else kind,
            "definition": current.definition if definition is _UNSET else definition,
            "is_active": current.is_active if is_active is _UNSET else bool(is_active),
        }
        new["definition"] = segment_check(client=locked, segment=current, **new)
        new["name"] = new["name"].strip()
        changed = [f for f, value in new.items() if getattr(current, f) != value]
        for field, value in new.items():
            setattr(current, field, value)
        if changed:
            current.save(update_fields=[*changed, "updated_at"])
            audit_log(
                action="segment_updated",
                source=source,
                client=locked,
                obj=current,
                details={"changed": changed, **{f: new[f] for f in changed}},
                **_actor_fields(actor),
            )
    if refresh and current.is_active and {"kind", "definition", "is_active"} & set(changed):
        segment_refresh(segment=current)
        current.refresh_from_db()
    return current


# --------------------------------------------------------------------------------------------
# Members


def _ranked_population(client_id: int, field: str) -> QuerySet:
    """Scores of the client's non-erased customers with a positive ``field``, worst first (ties
    by customer id): the order of ``segments.rfm``."""
    return (
        CustomerScore.objects.for_client(client_id)
        .filter(**{f"{field}__gt": 0, "customer__erased_at__isnull": True})
        .order_by(F(field).asc(), F("customer_id").asc())
    )


def _position_bound(population: QuerySet, field: str, position: int) -> tuple[Any, int]:
    """(value, customer id) of the row at ``position`` (0-based) of the ordered population."""
    return population.values_list(field, "customer_id")[position]


def _between(field: str, low: tuple[Any, int], high: tuple[Any, int]) -> Q:
    """Scores from ``low`` to ``high`` inclusive in (value, customer id) order."""
    f = f"score__{field}"
    above = Q(**{f"{f}__gt": low[0]}) | Q(**{f: low[0], "pk__gte": low[1]})
    below = Q(**{f"{f}__lt": high[0]}) | Q(**{f: high[0], "pk__lte": high[1]})
    return above & below


def _top_share(client_id: int, field: str, percent: float) -> Q:
    population = _ranked_population(client_id, field)
    n = population.count()
    k = math.ceil(Decimal(str(percent)) * n / 100)
    if k == 0:
        return Q(pk__isnull=True)  # nobody, and still one valid query
    low = _position_bound(population, field, n - k)
    high = _position_bound(population, field, n - 1)
    return _between(field, low, high)


def _decile(client_id: int, field: str, decile: int) -> Q:
    """NTILE(10) = decile over the population (SQL's rule: n // 10 per bucket, the first
    n % 10 buckets one more), as in segments.rfm.ntile."""
    population = _ranked_population(client_id, field)
    n = population.count()
    size, extra = divmod(n, 10)
    start = (decile - 1) * size + min(decile - 1, extra)
    length = size + (1 if decile <= extra else 0)
    if length == 0:
        return Q(pk__isnull=True)  # nobody, and still one valid query
    low = _position_bound(population, field, start)
    high = _position_bound(population, field, start + length - 1)
    return _between(field, low, high)


def _paid_orders(client_id: int, since: datetime | None = None) -> QuerySet:
    orders = Order.objects.filter(
        client_id=client_id, customer_id=OuterRef("pk"), status=Order.Status.PAID
    )
    if since is not None:
        orders = orders.filter(placed_at__gte=since)
    return orders.order_by()


def segment_members_query(segment: Segment, *, now: datetime | None = None) -> QuerySet:
    """The client's customers who belong to the segment now (the one place per kind).

    Every kind excludes erased customers (``consent.selectors.customers_not_erased``); the
    opted-out suppression asks ``consent.selectors.customers_consented_for`` and takes the
    others: everyone without a current consent for the purpose (withdrawn or never given).
    """
    now = now or timezone.now()
    definition, errors = segment_definition_validate(segment.kind, segment.definition)
    if errors:
        raise SegmentError(
            "invalid_definition",
            _("Определение сегмента с ошибками: %(errors)s")
            % {"errors": "; ".join(str(e) for e in errors)},
            errors=errors,
        )
    client_id = segment.client_id
    base = customers_not_erased(Customer.objects.for_client(client_id))
    kind = segment.kind
    if kind == Kind.RFM:
        return base.filter(score__rfm_segment__in=definition["names"])
    if kind == Kind.LIFECYCLE:
        return base.filter(score__lifecycle_stage__in=definition["stages"])
    if kind == Kind.PREDICTIVE:
        if "churn_at_least" in definition:
            return base.filter(score__churn_probability__gte=definition["churn_at_least"])
        if "clv_top_percent" in definition:
            top = definition["clv_top_percent"]
            return base.filter(_top_share(client_id, "predicted_clv", top))
        return base.filter(_decile(client_id, "predicted_clv", definition["clv_decile"]))
    if kind == Kind.LOOKALIKE_SEED:
        return base.filter(_top_share(client_id, definition["by"], definition["top_percent"]))
    if kind == Kind.RULE:
        return base.filter(rule_to_q(definition, segment.client, now))
    # suppression
    if definition["type"] == "recent_purchasers":
        since = now - timedelta(days=definition["days"])
        return base.filter(Exists(_paid_orders(client_id, since)))
    if definition["type"] == "existing_customers":
        return base.filter(Exists(_paid_orders(client_id)))
    consented = customers_consented_for(
        Customer.objects.for_client(client_id).filter(pk=OuterRef("pk")), definition["purpose"]
    )
    return base.filter(~Exists(consented))


def segment_members_current(segment: Segment) -> QuerySet:
    """Stored open memberships of the segment, of customers not erased since."""
    return SegmentMembership.objects.for_client(segment.client_id).filter(
        segment_id=segment.pk, left_at__isnull=True, customer__erased_at__isnull=True
    )


# --------------------------------------------------------------------------------------------
# Refresh


def _segment_warnings(segment: Segment, size: int, has_scores: bool) -> list[str]:
    warnings = []
    if segment.kind == Kind.LOOKALIKE_SEED and size < LOOKALIKE_MIN_MEMBERS:
        warnings.append(str(WARNING_LOOKALIKE_SMALL))
    if not has_scores and _uses_scores(segment):
        warnings.append(str(WARNING_NO_SCORES))
    return warnings


def _insert_entries(members: QuerySet, segment: Segment, now: datetime) -> int:
    """One INSERT ... SELECT of every member; those with an open membership already are skipped
    by the partial unique index (ON CONFLICT DO NOTHING), so the count is of the newcomers.

    Not a NOT EXISTS over the memberships: PostgreSQL plans it before the statement writes and,
    with the table's statistics still saying "empty", re-scans the growing table for every
    member (a first refresh of 270,000 members took 12 minutes that way; an index probe per
    member takes seconds)."""
    select_sql, params = members.order_by().values_list("pk", flat=True).query.sql_with_params()
    table = SegmentMembership._meta.db_table
    entered_at = SegmentMembership._meta.get_field("entered_at").get_db_prep_value(now, connection)
    # The subquery selects one column (the customer id), whatever alias the ORM gives it;
    # "WHERE 1 = 1" keeps SQLite's parser from reading ON CONFLICT as a join condition.
    sql = (
        f"INSERT INTO {connection.ops.quote_name(table)} "  # noqa: S608
        "(client_id, segment_id, entered_at, customer_id) "
        f"SELECT %s, %s, %s, new_members.* FROM ({select_sql}) AS new_members WHERE 1 = 1 "
        "ON CONFLICT (client_id, segment_id, customer_id) WHERE left_at IS NULL DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [segment.client_id, segment.pk, entered_at, *params])
        return max(cursor.rowcount, 0)


def _tier_skip_reason(segment: Segment) -> str:
    try:
        _check_predictive(segment.client, segment.kind, segment.definition)
    except TierLimitError as exc:
        return _("не обновляется: %(reason)s") % {"reason": exc.message}
    return ""


def segment_refresh(
    *, segment: Segment, now: datetime | None = None, run: ScoringRun | None = None
) -> SegmentRefreshResult:
    """Bring the stored memberships in line with who belongs now, set-based.

    Leavers get ``left_at = now`` (one UPDATE ... WHERE NOT EXISTS), newcomers an open
    membership (one INSERT ... SELECT); members who stay are not touched. An erased customer
    leaves as well, his membership deleted rather than closed (counted among the leavers). A
    snapshot of the size is written when something changed (or for the first refresh), so
    refreshing an unchanged segment again writes nothing but ``refreshed_at``. A segment whose
    kind the client's tier no longer includes is left as it is, with a warning.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Segment.objects.for_client(segment.client_id)
            .select_for_update(of=("self",))
            .select_related("client__tier")
            .get(pk=segment.pk)
        )
        current = SegmentMembership.objects.for_client(locked.client_id).filter(
            segment_id=locked.pk, left_at__isnull=True
        )
        skipped = _tier_skip_reason(locked)
        if skipped:
            size = current.count()
            Segment.objects.for_client(locked.client_id).filter(pk=locked.pk).update(
                warnings=[skipped], refreshed_at=now
            )
            return SegmentRefreshResult(locked.pk, size, 0, 0, skipped)
        members = segment_members_query(locked, now=now)
        # An erased customer's stay is deleted, not closed: the erasure deleted their past stays
        # and left the open ones to this refresh (segments.personal_data).
        erased, _ = current.filter(customer__erased_at__isnull=False).delete()
        left = erased + current.filter(~Exists(members.filter(pk=OuterRef("customer_id")))).update(
            left_at=now
        )
        entered = _insert_entries(members, locked, now)
        size = current.count()
        has_scores = (
            not _uses_scores(locked) or CustomerScore.objects.for_client(locked.client_id).exists()
        )
        warnings = _segment_warnings(locked, size, has_scores)
        first = (
            not SegmentSizeSnapshot.objects.for_client(locked.client_id)
            .filter(segment_id=locked.pk)
            .exists()
        )
        if entered or left or first:
            SegmentSizeSnapshot.objects.create(
                client_id=locked.client_id,
                segment=locked,
                run=run,
                at=now,
                size=size,
                entered=entered,
                left=left,
            )
        Segment.objects.for_client(locked.client_id).filter(pk=locked.pk).update(
            size=size, warnings=warnings, refreshed_at=now
        )
    return SegmentRefreshResult(locked.pk, size, entered, left)


def segment_memberships_refresh(
    *, client: Client, run: ScoringRun | None = None, now: datetime | None = None
) -> list[SegmentRefreshResult]:
    """Refresh every active segment of the client (called after each scoring run).

    Each segment in its own transaction. A segment whose stored definition no longer validates
    is skipped with the errors recorded on it (visible in the admin and the API), so one bad
    segment does not hold back the others; database errors propagate (the task retries, and a
    repeated refresh is harmless).
    """
    now = now or timezone.now()
    results = []
    segments = Segment.objects.for_client(client).filter(is_active=True).order_by("pk")
    for segment in segments:
        try:
            results.append(segment_refresh(segment=segment, now=now, run=run))
        except (SegmentError, RuleInvalid) as exc:
            logger.warning("segment %s of client %s not refreshed: %s", segment.pk, client.pk, exc)
            message = _("не обновлён: %(reason)s") % {"reason": exc}
            Segment.objects.for_client(client).filter(pk=segment.pk).update(
                warnings=[message], refreshed_at=now
            )
            results.append(SegmentRefreshResult(segment.pk, segment.size, 0, 0, message))
    return results


# --------------------------------------------------------------------------------------------
# Movement


def transition_matrix(run_a: ScoringRun, run_b: ScoringRun) -> dict[str, dict[str, int]]:
    """Customers per (RFM segment in run_a, RFM segment in run_b), every name of
    ``segments.rfm.SEGMENTS`` as a row and a column.

    Exact only for consecutive successful runs of a client: run_b records, at the moment it
    replaces the scores, where each customer came from (``ScoringRun.rfm_transitions``). Scores
    of older runs are not kept (each run replaces ``CustomerScore`` as a whole), so between two
    runs with others in between nobody can tell who moved where, and multiplying the consecutive
    matrices would only be a Markov estimate; that case raises :class:`TransitionUnavailable`.
    For movement between any two moments, the memberships of the client's RFM segments keep it
    exactly: :func:`segment_movement`.
    """
    if run_a.client_id != run_b.client_id:
        raise SegmentError("different_clients", _("Запуски разных клиентов."))
    done = ScoringRun.Status.SUCCEEDED
    if run_a.status != done or run_b.status != done:
        raise SegmentError("run_not_succeeded", _("Оба запуска должны быть успешно завершены."))
    previous = (
        ScoringRun.objects.for_client(run_b.client_id)
        .filter(status=done, finished_at__lt=run_b.finished_at)
        .order_by("-finished_at", "-pk")
        .first()
    )
    if previous is None or previous.pk != run_a.pk:
        raise TransitionUnavailable(
            "transition_not_consecutive",
            _(
                "Матрица переходов есть только между соседними успешными запусками: оценки "
                "хранятся лишь последние, поэтому для несоседних запусков неизвестно, кто куда "
                "перешёл. Движение между любыми датами видно по истории участия в RFM-сегментах."
            ),
            extra={"previous_run": previous.pk if previous else None},
        )
    matrix = {src: dict.fromkeys(rfm.SEGMENTS, 0) for src in rfm.SEGMENTS}
    for src, row in (run_b.rfm_transitions or {}).items():
        for dst, count in row.items():
            matrix.setdefault(src, dict.fromkeys(rfm.SEGMENTS, 0))[dst] = int(count)
    return matrix


def segment_movement(
    *, client: Client, segments: Iterable[Segment], at_a: datetime, at_b: datetime
) -> dict[str, dict[str, int]]:
    """Customers per (segment at ``at_a``, segment at ``at_b``) among ``segments``, from the
    membership history (a member at t: entered at or before t, not left by t); a customer in
    two of the segments at once counts in both. With the client's RFM segments this is the
    transition matrix between any two moments since they were created."""
    segments = list(segments)
    if any(s.client_id != client.pk for s in segments):
        raise SegmentError("different_clients", _("Сегменты другого клиента."))
    names = {s.pk: s.name for s in segments}
    matrix = {src: dict.fromkeys(names.values(), 0) for src in names.values()}
    if not names:
        return matrix

    def members_at(moment: datetime) -> QuerySet:
        return (
            SegmentMembership.objects.for_client(client)
            .filter(segment_id__in=sorted(names), entered_at__lte=moment)
            .filter(Q(left_at__isnull=True) | Q(left_at__gt=moment))
            .order_by()
            .values_list("segment_id", "customer_id")
        )

    sql_a, params_a = members_at(at_a).query.sql_with_params()
    sql_b, params_b = members_at(at_b).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.segment_id, b.segment_id, COUNT(*) FROM ({sql_a}) AS a "  # noqa: S608
            f"JOIN ({sql_b}) AS b ON b.customer_id = a.customer_id "
            "GROUP BY a.segment_id, b.segment_id",
            [*params_a, *params_b],
        )
        for src, dst, count in cursor.fetchall():
            matrix[names[src]][names[dst]] = int(count)
    return matrix
