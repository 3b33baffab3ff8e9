"""Yandex Direct bid modifiers applied through the API, from the CLV recommendations of the
client's Yandex audiences (``audiences.services.bid_modifiers_for_client``).

- :func:`bid_modifier_plan`: for the chosen campaigns, each synced audience with a recommended
  modifier gets its retargeting list (the audience's stored one, else one found by its rule
  "in segment N", else one to create) and is compared with the campaign's current retargeting
  adjustments: add (new), set (changed: old → new) or unchanged. Reads only: the dry run.
- :func:`bid_modifier_apply`: the plan written (lists created and stored on the audiences,
  then set and add in chunks), each item's result and errors kept in a
  :class:`~reports.models.BidModifierChange` with the previous values.
- :func:`bid_modifier_change_rollback`: the previous values set back and the added
  adjustments deleted, with the same per-item results.

Points (Units) are respected: before every call the remaining points (from the last reply)
must cover it, else that call and the rest are left "not applied" with the reason; error 152
stops the same way (never retried in a loop). Value-based bidding is a tier feature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.audit import audit_log
from agency.errors import ConflictError, NotFoundError, ServiceError
from audiences.models import Audience
from audiences.services import AudienceError, audience_update, bid_modifiers_for_client
from clients.tiers import tier_require
from integrations.http import OutcomeUnknown, PlatformError
from integrations.yandex_direct import (
    MAX_SET_ITEMS,
    DirectUnitsExhausted,
    ItemResult,
    YandexDirectClient,
    add_chunks,
    chunks,
    units_cost,
)

from .direct import direct_accounts, direct_client
from .models import AdAccount, BidModifierChange, BidModifierChangeItem

logger = logging.getLogger(__name__)

FEATURE = "value_bidding"
MAX_CAMPAIGNS = 100
UNITS_RETRY_SECONDS = 3600
ADD, SET, UNCHANGED = "add", "set", "unchanged"

Item = BidModifierChangeItem


class DirectRefused(ServiceError):
    """Direct refused or failed a call the plan needs (the whole operation stops)."""

    status = 502
    default_code = "direct_error"


class DirectUnitsSpent(ServiceError):
    status = 503
    default_code = "direct_units_exhausted"
    retry_after = UNITS_RETRY_SECONDS


@dataclass
class PlanItem:
    campaign_id: int
    audience_id: int
    audience: str
    remote_segment_id: int
    retargeting_list_id: int | None  # None: the list is created on apply
    modifier_id: int | None
    old_value: int | None
    new_value: int
    action: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BidPlan:
    ad_account_id: int
    campaign_ids: list[int]
    exclude_bottom: bool
    items: list[PlanItem] = field(default_factory=list)
    lists_to_create: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    units_remaining: int | None = None

    def counts(self) -> dict[str, int]:
        counts = {ADD: 0, SET: 0, UNCHANGED: 0}
        for item in self.items:
            counts[item.action] += 1
        return counts

    @property
    def changes(self) -> list[PlanItem]:
        return [item for item in self.items if item.action != UNCHANGED]

    def as_dict(self) -> dict:
        return {
            "ad_account_id": self.ad_account_id,
            "campaign_ids": self.campaign_ids,
            "exclude_bottom": self.exclude_bottom,
            "counts": self.counts(),
            "items": [item.as_dict() for item in self.items],
            "lists_to_create": self.lists_to_create,
            "skipped": self.skipped,
            "units_remaining": self.units_remaining,
        }


# --------------------------------------------------------------------------------------------
# Shared pieces


def _refusal(exc: PlatformError) -> ServiceError:
    if isinstance(exc, DirectUnitsExhausted):
        return DirectUnitsSpent(
            message=_("баллы API Директа закончились (ошибка 152); повторите через час")
        )
    return DirectRefused(message=_("Яндекс Директ: %(error)s") % {"error": exc.message})


def _campaign_ids(values: Any) -> list[int]:
    if not isinstance(values, list | tuple) or not values:
        raise ServiceError(
            "invalid_campaign_ids", _("укажите id кампаний Директа"), field="campaign_ids"
        )
    ids = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ServiceError(
                "invalid_campaign_ids",
                _("id кампании — положительное целое: %(value)s") % {"value": value},
                field="campaign_ids",
            )
        ids.append(value)
    ids = sorted(set(ids))
    if len(ids) > MAX_CAMPAIGNS:
        raise ServiceError(
            "invalid_campaign_ids",
            _("не более %(max)s кампаний за раз") % {"max": MAX_CAMPAIGNS},
            field="campaign_ids",
        )
    return ids


def direct_account_for(*, client: Any, ad_account_id: int | None = None) -> AdAccount:
    """The client's active Direct account: the one named, else the only one."""
    accounts = direct_accounts(client=client)
    if ad_account_id is not None:
        account = accounts.filter(pk=ad_account_id).first()
        if account is None:
            raise NotFoundError(
                "ad_account_not_found",
                _("аккаунт Директа не найден"),
                field="ad_account_id",
            )
        return account
    found = list(accounts[:2])
    if not found:
        raise ConflictError(
            "direct_account_missing",
            _("у клиента нет включённого аккаунта Яндекс Директа"),
            field="ad_account_id",
        )
    if len(found) > 1:
        raise ServiceError(
            "ad_account_required",
            _("у клиента несколько аккаунтов Директа: укажите ad_account_id"),
            field="ad_account_id",
        )
    return found[0]


def _list_segment(item: dict) -> int | None:
    """The Audiences segment of a list made of one rule "in segment N", else None."""
    rules = item.get("Rules") or []
    if len(rules) != 1 or rules[0].get("Operator") not in ("ALL", "ANY"):
        return None
    arguments = rules[0].get("Arguments") or []
    if len(arguments) != 1:
        return None
    external = arguments[0].get("ExternalId")
    return int(external) if isinstance(external, int) else None


def _list_name(audience_id: int, segment_id: int) -> str:
    """Deterministic, so a list whose creation timed out is found, not made twice."""
    return f"CVM audience {audience_id} (segment {segment_id})"


# --------------------------------------------------------------------------------------------
# Plan


def _plan(
    *,
    client: Any,
    account: AdAccount,
    direct: YandexDirectClient,
    campaign_ids: list[int],
    exclude_bottom: bool,
) -> BidPlan:
    recommendations = bid_modifiers_for_client(client=client, exclude_bottom=exclude_bottom)
    plan = BidPlan(account.pk, campaign_ids, exclude_bottom)
    try:
        lists = direct.retargeting_lists()
        known = {item.get("Id") for item in lists}
        by_segment: dict[int, int] = {}
        for item in lists:
            segment = _list_segment(item)
            if segment is not None:
                by_segment.setdefault(segment, item["Id"])
        current = {
            (m["CampaignId"], m["RetargetingConditionId"]): m
            for m in direct.bid_modifiers(campaign_ids, levels=["CAMPAIGN"])
        }
    except PlatformError as exc:
        raise _refusal(exc) from exc
    for rec in recommendations:
        if rec.bid_modifier is None or rec.remote_segment_id is None:
            plan.skipped.append(
                {
                    "audience_id": rec.audience_id,
                    "audience": rec.audience,
                    "reason": rec.reason
                    if rec.bid_modifier is None
                    else _("аудитория ещё не загружена в Яндекс Аудитории"),
                }
            )
            continue
        segment = int(rec.remote_segment_id)
        if rec.retargeting_condition_id in known:
            list_id = rec.retargeting_condition_id
        else:
            list_id = by_segment.get(segment)
        if list_id is None:
            plan.lists_to_create.append(
                {
                    "audience_id": rec.audience_id,
                    "audience": rec.audience,
                    "remote_segment_id": segment,
                    "name": _list_name(rec.audience_id, segment),
                }
            )
        for campaign_id in campaign_ids:
            existing = current.get((campaign_id, list_id)) if list_id is not None else None
            if existing is None:
                action, old, modifier_id = ADD, None, None
            else:
                old, modifier_id = existing["BidModifier"], existing["Id"]
                action = UNCHANGED if old == rec.bid_modifier else SET
            plan.items.append(
                PlanItem(
                    campaign_id=campaign_id,
                    audience_id=rec.audience_id,
                    audience=rec.audience,
                    remote_segment_id=segment,
                    retargeting_list_id=list_id,
                    modifier_id=modifier_id,
                    old_value=old,
                    new_value=int(rec.bid_modifier),
                    action=action,
                    reason=rec.reason,
                )
            )
    plan.units_remaining = direct.units.remaining if direct.units else None
    return plan


def bid_modifier_plan(
    *,
    client: Any,
    campaign_ids: Any,
    exclude_bottom: bool = False,
    ad_account_id: int | None = None,
) -> BidPlan:
    """The diff of the recommended modifiers against the campaigns' current ones; writes
    nothing (the dry run)."""
    tier_require(client=client, feature=FEATURE)
    ids = _campaign_ids(campaign_ids)
    account = direct_account_for(client=client, ad_account_id=ad_account_id)
    with direct_client(account) as direct:
        return _plan(
            client=client,
            account=account,
            direct=direct,
            campaign_ids=ids,
            exclude_bottom=exclude_bottom,
        )


# --------------------------------------------------------------------------------------------
# Calls in chunks, points respected


def _units_message(direct: YandexDirectClient, needed: int) -> str:
    remaining = direct.units.remaining if direct.units else 0
    return _(
        "не хватает баллов API Директа: осталось %(remaining)s, нужно %(needed)s; повторите позже"
    ) % {"remaining": remaining, "needed": needed}


def _run_batches(
    *,
    direct: YandexDirectClient,
    service: str,
    method: str,
    batches: Iterable[list[Any]],
    call: Callable[[list[Any]], list[ItemResult]],
    done: Callable[[Any, ItemResult], None],
    failed: Callable[[Any, str], None],
    stopped: Callable[[Any, str], None],
) -> str:
    """Send ``batches`` one call each; per item ``done(item, result)`` or ``failed(item,
    error)`` when the call itself was refused. Stops before a call the points cannot pay (or on
    error 152): that batch and the rest get ``stopped(item, reason)``. Returns the reason of a
    stop, else ""."""
    pending = list(batches)
    for index, batch in enumerate(pending):
        cost = units_cost(service, method, len(batch))
        reason = ""
        if not direct.can_afford(service, method, len(batch)):
            reason = _units_message(direct, cost)
        else:
            try:
                results = call(batch)
            except DirectUnitsExhausted:
                reason = _("баллы API Директа закончились (ошибка 152); повторите через час")
            except PlatformError as exc:
                for item in batch:
                    failed(item, exc.message)
                continue
            else:
                for item, result in zip(batch, results, strict=False):
                    done(item, result)
                for item in batch[len(results) :]:
                    failed(item, _("Директ не вернул результат для элемента"))
                continue
        for rest in pending[index:]:
            for item in rest:
                stopped(item, reason)
        return reason
    return ""


def _errors(result: ItemResult) -> str:
    return "; ".join(result.errors)


# --------------------------------------------------------------------------------------------
# Apply


class Stopped(str):
    """The reason a list was not created: the points ran out (the item is "not applied")."""


def _ensure_lists(
    *,
    client: Any,
    direct: YandexDirectClient,
    plan: BidPlan,
    actor: Any,
    source: str,
    ip: str | None,
) -> dict[int, int | str]:
    """Create the missing retargeting lists and store every list id on its audience. Returns
    audience id -> list id, or the error that left it without one (:class:`Stopped` when the
    points ran out before its list was created)."""
    resolved: dict[int, int | str] = {}
    for item in plan.items:
        if item.retargeting_list_id is not None:
            resolved[item.audience_id] = item.retargeting_list_id
    wanted = plan.lists_to_create
    if wanted:

        def create(batch: list[dict]) -> list[ItemResult]:
            body = [
                {
                    "Type": "AUDIENCE",
                    "Name": entry["name"],
                    "Rules": [
                        {
                            "Operator": "ALL",
                            "Arguments": [{"ExternalId": entry["remote_segment_id"]}],
                        }
                    ],
                }
                for entry in batch
            ]
            try:
                return direct.retargeting_lists_add(body)
            except OutcomeUnknown:
                # The reply was lost: find what was made by its rule before anything else.
                found = {_list_segment(i): i["Id"] for i in direct.retargeting_lists()}
                return [
                    ItemResult(ids=[found[e["remote_segment_id"]]])
                    if e["remote_segment_id"] in found
                    else ItemResult(errors=[_("список не создан: нет ответа Директа")])
                    for e in batch
                ]

        def done(entry: dict, result: ItemResult) -> None:
            resolved[entry["audience_id"]] = result.id if result.ok else _errors(result)

        def failed(entry: dict, error: str) -> None:
            resolved[entry["audience_id"]] = error

        def stopped(entry: dict, reason: str) -> None:
            resolved[entry["audience_id"]] = Stopped(reason)

        _run_batches(
            direct=direct,
            service="retargetinglists",
            method="add",
            batches=chunks(wanted, 100),
            call=create,
            done=done,
            failed=failed,
            stopped=stopped,
        )
    for audience in Audience.objects.for_client(client).filter(pk__in=list(resolved)):
        list_id = resolved[audience.pk]
        if isinstance(list_id, int) and audience.direct_retargeting_condition_id != list_id:
            try:
                audience_update(
                    audience=audience,
                    direct_retargeting_condition_id=list_id,
                    actor=actor,
                    source=source,
                    ip=ip,
                )
            except AudienceError as exc:  # the list exists in Direct: the id is still used
                logger.warning("audience %s: list id not stored: %s", audience.pk, exc.message)
    return resolved


def _finish(change: BidModifierChange, direct: YandexDirectClient, stop_reason: str) -> None:
    statuses = list(_items(change).values_list("status", flat=True))
    applied = statuses.count(Item.Status.APPLIED)
    if statuses and applied == len(statuses):
        change.status = BidModifierChange.Status.APPLIED
    elif applied:
        change.status = BidModifierChange.Status.PARTIAL
    else:
        change.status = BidModifierChange.Status.FAILED
    change.message = stop_reason
    change.units_remaining = direct.units.remaining if direct.units else None
    change.save(update_fields=["status", "message", "units_remaining"])


def _items(change: BidModifierChange):
    return Item.objects.for_client(change.client_id).filter(change=change)


def _actor_label(actor: Any) -> str:
    if actor is None:
        return ""
    getter = getattr(actor, "get_username", None)
    return str(getter() if getter else getattr(actor, "name", actor))[:200]


def bid_modifier_apply(
    *,
    client: Any,
    campaign_ids: Any,
    exclude_bottom: bool = False,
    ad_account_id: int | None = None,
    dry_run: bool = False,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> tuple[BidPlan, BidModifierChange | None]:
    """Plan, then (unless ``dry_run``) write the plan's adds and sets. Returns the plan and the
    change set (None on a dry run or when nothing changes)."""
    tier_require(client=client, feature=FEATURE)
    ids = _campaign_ids(campaign_ids)
    account = direct_account_for(client=client, ad_account_id=ad_account_id)
    with direct_client(account) as direct:
        plan = _plan(
            client=client,
            account=account,
            direct=direct,
            campaign_ids=ids,
            exclude_bottom=exclude_bottom,
        )
        if dry_run or not plan.changes:
            return plan, None
        change = BidModifierChange.objects.create(
            client=client,
            ad_account=account,
            campaign_ids=ids,
            exclude_bottom=exclude_bottom,
            created_by=_actor_label(actor),
        )
        lists = _ensure_lists(
            client=client, direct=direct, plan=plan, actor=actor, source=source, ip=ip
        )
        rows = []
        for entry in plan.changes:
            list_id = lists.get(entry.audience_id)
            row = Item(
                client=client,
                change=change,
                campaign_id=entry.campaign_id,
                audience_id=entry.audience_id,
                audience_name=entry.audience[:300],
                retargeting_list_id=list_id if isinstance(list_id, int) else 0,
                modifier_id=entry.modifier_id,
                previous_value=entry.old_value,
                new_value=entry.new_value,
            )
            if isinstance(list_id, Stopped):
                row.status, row.error = Item.Status.NOT_APPLIED, str(list_id)
            elif not isinstance(list_id, int):
                row.status = Item.Status.FAILED
                row.error = _("нет условия ретаргетинга: %(error)s") % {"error": list_id or "—"}
            rows.append(row)
        Item.objects.bulk_create(rows)
        stop = _apply_items(change, direct) or next(
            (str(v) for v in lists.values() if isinstance(v, Stopped)), ""
        )
        _finish(change, direct, stop)
    audit_log(
        action="bid_modifiers_applied",
        source=source,
        actor=actor,
        client=client,
        obj=change,
        details={
            "campaign_ids": ids,
            "counts": plan.counts(),
            "status": change.status,
            "message": change.message,
        },
        ip=ip,
    )
    return plan, change


def _save_item(item: Item, **values: Any) -> None:
    for key, value in values.items():
        setattr(item, key, value)
    item.save(update_fields=list(values))


def _apply_items(change: BidModifierChange, direct: YandexDirectClient) -> str:
    pending = list(_items(change).filter(status=Item.Status.PENDING).order_by("pk"))
    sets = [i for i in pending if i.previous_value is not None]
    adds = [i for i in pending if i.previous_value is None]

    def done(item: Item, result: ItemResult) -> None:
        if result.ok:
            values: dict[str, Any] = {"status": Item.Status.APPLIED, "error": ""}
            if item.modifier_id is None and result.id is not None:
                values["modifier_id"] = result.id
            _save_item(item, **values)
        else:
            _save_item(item, status=Item.Status.FAILED, error=_errors(result))

    def failed(item: Item, error: str) -> None:
        _save_item(item, status=Item.Status.FAILED, error=error)

    def stopped(item: Item, reason: str) -> None:
        _save_item(item, status=Item.Status.NOT_APPLIED, error=reason)

    stop = _run_batches(
        direct=direct,
        service="bidmodifiers",
        method="set",
        batches=chunks(sets, MAX_SET_ITEMS),
        call=lambda batch: direct.bid_modifiers_set([(i.modifier_id, i.new_value) for i in batch]),
        done=done,
        failed=failed,
        stopped=stopped,
    )
    if stop:
        for item in adds:
            stopped(item, stop)
        return stop
    by_key = {(i.campaign_id, i.retargeting_list_id, i.new_value, i.pk): i for i in adds}
    keyed = [(i.campaign_id, i.retargeting_list_id, i.new_value, i.pk) for i in adds]
    batches = [
        [by_key[key] for key in batch]
        for batch in add_chunks(keyed)  # type: ignore[arg-type]
    ]
    return _run_batches(
        direct=direct,
        service="bidmodifiers",
        method="add",
        batches=batches,
        call=lambda batch: direct.bid_modifiers_add(
            [(i.campaign_id, i.retargeting_list_id, i.new_value) for i in batch]
        ),
        done=done,
        failed=failed,
        stopped=stopped,
    )


# --------------------------------------------------------------------------------------------
# Rollback


def bid_modifier_change_rollback(
    *, change: BidModifierChange, actor: Any = None, source: str = "system", ip: str | None = None
) -> BidModifierChange:
    """Set the previous values back and delete what the change added. Items already rolled
    back are left alone, so a rollback stopped by points can be repeated."""
    tier_require(client=change.client, feature=FEATURE)
    with transaction.atomic():
        change = (
            BidModifierChange.objects.for_client(change.client_id)
            .select_for_update()
            .get(pk=change.pk)
        )
        if change.status == BidModifierChange.Status.ROLLED_BACK:
            raise ConflictError("already_rolled_back", _("это изменение уже откачено"))
        if change.status == BidModifierChange.Status.APPLYING:
            raise ConflictError("change_in_progress", _("изменение ещё применяется"))
    items = list(
        _items(change)
        .filter(status=Item.Status.APPLIED)
        .exclude(rollback_status=Item.Rollback.ROLLED_BACK)
        .order_by("pk")
    )
    sets = [i for i in items if i.previous_value is not None]
    deletes = [i for i in items if i.previous_value is None and i.modifier_id is not None]

    def done(item: Item, result: ItemResult) -> None:
        if result.ok:
            _save_item(item, rollback_status=Item.Rollback.ROLLED_BACK, rollback_error="")
        else:
            _save_item(item, rollback_status=Item.Rollback.FAILED, rollback_error=_errors(result))

    def failed(item: Item, error: str) -> None:
        _save_item(item, rollback_status=Item.Rollback.FAILED, rollback_error=error)

    def stopped(item: Item, reason: str) -> None:
        _save_item(item, rollback_status=Item.Rollback.NOT_APPLIED, rollback_error=reason)

    with direct_client(change.ad_account) as direct:
        stop = _run_batches(
            direct=direct,
            service="bidmodifiers",
            method="set",
            batches=chunks(sets, MAX_SET_ITEMS),
            call=lambda batch: direct.bid_modifiers_set(
                [(i.modifier_id, i.previous_value) for i in batch]
            ),
            done=done,
            failed=failed,
            stopped=stopped,
        )
        if stop:
            for item in deletes:
                stopped(item, stop)
        else:
            stop = _run_batches(
                direct=direct,
                service="bidmodifiers",
                method="delete",
                batches=chunks(deletes, 1000),
                call=lambda batch: direct.bid_modifiers_delete([i.modifier_id for i in batch]),
                done=done,
                failed=failed,
                stopped=stopped,
            )
        remaining = direct.units.remaining if direct.units else change.units_remaining
    left = (
        _items(change)
        .filter(status=Item.Status.APPLIED)
        .exclude(rollback_status=Item.Rollback.ROLLED_BACK)
        .exists()
    )
    change.status = (
        BidModifierChange.Status.ROLLBACK_PARTIAL if left else BidModifierChange.Status.ROLLED_BACK
    )
    change.message = stop
    change.units_remaining = remaining
    change.rolled_back_at = None if left else timezone.now()
    change.save(update_fields=["status", "message", "units_remaining", "rolled_back_at"])
    audit_log(
        action="bid_modifiers_rolled_back",
        source=source,
        actor=actor,
        client=change.client_id,
        obj=change,
        details={"status": change.status, "message": stop},
        ip=ip,
    )
    return change
