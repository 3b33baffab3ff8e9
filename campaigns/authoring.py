"""What staff and clients write: message templates, trigger chains with their steps, the
chains' status, and per-client channel settings. Every entry point (admin, API, presets, demo)
calls these, so the rules hold everywhere; each service writes its own audit entry.

Rules:

- a template compiles in the sandbox and names only whitelisted variables
  (``campaigns.templating``); an email needs a subject, a push a title (the subject field); an
  SMS body fits :data:`~campaigns.templating.SMS_MAX_SEGMENTS` segments when rendered with long
  sample values;
- a chain has the fields its trigger needs (days for "N days without a purchase", a stage, a
  churn threshold, a segment, an event type), segments, audiences and templates of its own
  client, steps numbered 1, 2, 3, ... whose channel is their template's, and "previous not
  opened / not clicked" conditions only after a previous step (not opened: after an email or a
  push, SMS opens are unknown);
- the tier rule (``clients.tiers``): any non-email step needs ``omnichannel``; a churn
  probability trigger needs ``predictive``; activating counts the client's active chains
  against ``trigger_chains``;
- steps that have messages are never deleted (the outbox is evidence and the funnel's data):
  a chain with enrolments can change its steps and append new ones, not remove or renumber them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.audit import audit_object as _audit
from agency.crypto import credentials_checked, secret_encrypt, secret_rotate
from agency.errors import ServiceError
from agency.i18n import site_language
from audiences.models import Audience
from clients.models import Client
from clients.tiers import tier_check_limit, tier_require
from consent.models import DataRecipient
from integrations.webpush import is_local_test_endpoint
from segments.lifecycle import STAGES

from .models import (
    CHANNEL_PROVIDERS,
    ChainStep,
    Channel,
    ChannelSettings,
    Enrollment,
    Message,
    MessageTemplate,
    Provider,
    PushDevice,
    TriggerChain,
)
from .templating import (
    SAMPLE_VARIABLES,
    SMS_MAX_SEGMENTS,
    render_message,
    sms_segments,
    template_variables_check,
)


def _channel_label(channel: str) -> str:
    return str(Channel(channel).label) if channel in Channel.values else channel


# --------------------------------------------------------------------------------------------
# Templates

TEMPLATE_FIELDS = ("name", "channel", "subject", "body", "offer_code")


def _check_template(client_id: int, fields: dict[str, Any], *, exclude_pk: int | None) -> None:
    name = (fields.get("name") or "").strip()
    if not name:
        raise ServiceError("invalid_name", _("Укажите название шаблона."), field="name")
    channel = fields.get("channel")
    if channel not in Channel.values:
        raise ServiceError(
            "invalid_channel",
            _("Неизвестный канал: %(channel)s.") % {"channel": channel},
            field="channel",
        )
    subject = fields.get("subject") or ""
    body = fields.get("body") or ""
    if not body.strip():
        raise ServiceError("invalid_body", _("Текст сообщения пуст."), field="body")
    if channel == Channel.EMAIL and not subject.strip():
        raise ServiceError("subject_required", _("У письма должна быть тема."), field="subject")
    if channel == Channel.PUSH and not subject.strip():
        raise ServiceError(
            "title_required", _("У push-уведомления должен быть заголовок."), field="subject"
        )
    template_variables_check(subject, body)
    if channel == Channel.SMS:
        sample = MessageTemplate(channel=channel, subject="", body=body)
        sample_variables = {**SAMPLE_VARIABLES, "offer_code": fields.get("offer_code") or ""}
        text = render_message(sample, sample_variables).body
        segments = sms_segments(text)
        if segments > SMS_MAX_SEGMENTS:
            raise ServiceError(
                "sms_too_long",
                _(
                    "SMS длиннее %(max)s частей: с длинными значениями переменных выходит "
                    "%(n)s частей (%(chars)s символов). Сократите текст."
                )
                % {"max": SMS_MAX_SEGMENTS, "n": segments, "chars": len(text)},
                field="body",
            )
    taken = MessageTemplate.objects.for_client(client_id).filter(name=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ServiceError(
            "name_taken", _("Шаблон «%(name)s» уже есть.") % {"name": name}, field="name"
        )


@transaction.atomic
def template_create(
    *,
    client: Client,
    name: str,
    channel: str,
    body: str,
    subject: str = "",
    offer_code: str = "",
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> MessageTemplate:
    """A new message template, checked (variables, channel rules, a unique name); audited."""
    fields = {
        "name": (name or "").strip(),
        "channel": channel,
        "subject": subject or "",
        "body": body or "",
        "offer_code": offer_code or "",
    }
    _check_template(client.pk, fields, exclude_pk=None)
    template = MessageTemplate.objects.create(client=client, **fields)
    _audit(
        "message_template_created",
        template,
        actor=actor,
        source=source,
        ip=ip,
        details={"channel": channel},
    )
    return template


@transaction.atomic
def template_update(
    *,
    template: MessageTemplate,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
    **changes: Any,
) -> MessageTemplate:
    """Change fields of ``TEMPLATE_FIELDS``. A template used by a chain keeps its channel (its
    steps send over it); audited with the changed fields' names."""
    unknown = set(changes) - set(TEMPLATE_FIELDS)
    if unknown:
        names = sorted(unknown)
        raise ServiceError(
            "invalid_field",
            _("Нельзя изменить: %(fields)s.") % {"fields": ", ".join(names)},
            field=names[0],
        )
    fields = {name: getattr(template, name) for name in TEMPLATE_FIELDS}
    fields.update({k: (v if v is not None else "") for k, v in changes.items()})
    fields["name"] = (fields["name"] or "").strip()
    if (
        fields["channel"] != template.channel
        and ChainStep.objects.filter(
            template=template, chain__client_id=template.client_id
        ).exists()
    ):
        raise ServiceError(
            "template_in_use",
            _("Шаблон используется в цепочках: канал изменить нельзя, создайте новый шаблон."),
            field="channel",
        )
    _check_template(template.client_id, fields, exclude_pk=template.pk)
    changed = [name for name in TEMPLATE_FIELDS if fields[name] != getattr(template, name)]
    for name in changed:
        setattr(template, name, fields[name])
    if changed:
        template.save(update_fields=[*changed, "updated_at"])
    _audit(
        "message_template_updated",
        template,
        actor=actor,
        source=source,
        ip=ip,
        details={"fields": changed},
    )
    return template


# --------------------------------------------------------------------------------------------
# Chains

CHAIN_FIELDS = (
    "name",
    "description",
    "kind",
    "trigger",
    "trigger_event_type",
    "trigger_days",
    "trigger_lifecycle_stage",
    "trigger_churn_probability",
    "trigger_segment",
    "audience_segment",
    "exit_on_segment_leave",
    "reentry",
    "reentry_days",
    "holdout_percent",
    "conversion_window_days",
    "goal",
    "goal_event_type",
    "priority",
)
STEP_FIELDS = ("position", "delay_hours", "delay_from", "channel", "template", "condition")
# Fields a chain's trigger needs, besides the trigger itself.
TRIGGER_NEEDS = {
    TriggerChain.Trigger.DAYS_SINCE_PURCHASE: "trigger_days",
    TriggerChain.Trigger.LIFECYCLE_STAGE: "trigger_lifecycle_stage",
    TriggerChain.Trigger.CHURN_PROBABILITY: "trigger_churn_probability",
    TriggerChain.Trigger.SEGMENT_ENTERED: "trigger_segment",
    TriggerChain.Trigger.EVENT: "trigger_event_type",
}
# Opens are known for email and push; for SMS only clicks are.
OPENS_TRACKED = (Channel.EMAIL, Channel.PUSH)


def _refuse(code: str, message: str, field: str) -> None:
    raise ServiceError(code, message, field=field)


def _check_own(client: Client, value: Any, field: str) -> None:
    if value is not None and getattr(value, "client_id", None) != client.pk:
        _refuse(
            "not_found",
            _("Объект %(id)s не найден у этого клиента.") % {"id": getattr(value, "pk", value)},
            field,
        )


def _check_chain_fields(client: Client, chain: TriggerChain) -> None:
    """The chain's own fields (``chain`` is an unsaved or changed instance)."""
    if not (chain.name or "").strip():
        _refuse("invalid_name", _("Укажите название цепочки."), "name")
    if chain.trigger not in TriggerChain.Trigger.values:
        _refuse(
            "invalid_trigger",
            _("Неизвестный триггер: %(trigger)s.") % {"trigger": chain.trigger},
            "trigger",
        )
    needed = TRIGGER_NEEDS.get(chain.trigger)
    if needed is not None and getattr(chain, needed) in (None, ""):
        label = TriggerChain._meta.get_field(needed).verbose_name
        _refuse(
            "trigger_incomplete",
            _("Для триггера «%(trigger)s» укажите поле «%(field)s».")
            % {"trigger": TriggerChain.Trigger(chain.trigger).label, "field": label},
            needed,
        )
    if chain.trigger == TriggerChain.Trigger.LIFECYCLE_STAGE and (
        chain.trigger_lifecycle_stage not in STAGES
    ):
        _refuse(
            "invalid_stage",
            _("Неизвестная стадия: %(stage)s. Возможные: %(stages)s.")
            % {"stage": chain.trigger_lifecycle_stage, "stages": ", ".join(STAGES)},
            "trigger_lifecycle_stage",
        )
    if chain.trigger_churn_probability is not None and not (
        0.0 <= chain.trigger_churn_probability <= 1.0
    ):
        _refuse(
            "invalid_threshold",
            _("Порог вероятности оттока — число от 0 до 1."),
            "trigger_churn_probability",
        )
    if chain.trigger == TriggerChain.Trigger.CHURN_PROBABILITY:
        tier_require(
            client=client,
            feature="predictive",
            context=_("Триггер использует прогноз оттока (churn_probability)."),
            hint=_("Или выберите триггер «N дней без покупки»."),
        )
    if chain.trigger_days is not None and chain.trigger_days < 1:
        _refuse("invalid_days", _("Число дней — не меньше 1."), "trigger_days")
    _check_own(client, chain.trigger_segment, "trigger_segment")
    _check_own(client, chain.audience_segment, "audience_segment")
    if chain.reentry not in TriggerChain.Reentry.values:
        _refuse("invalid_reentry", _("Неизвестное правило повторного входа."), "reentry")
    if chain.reentry == TriggerChain.Reentry.AFTER_DAYS and not chain.reentry_days:
        _refuse(
            "reentry_days_required",
            _("Укажите, через сколько дней можно войти в цепочку снова."),
            "reentry_days",
        )
    if not 0 <= (chain.holdout_percent if chain.holdout_percent is not None else -1) <= 50:
        _refuse(
            "invalid_holdout",
            _("Контрольная группа — от 0 до 50 %."),
            "holdout_percent",
        )
    if not chain.conversion_window_days or chain.conversion_window_days < 1:
        _refuse(
            "invalid_window",
            _("Окно конверсии — не меньше 1 дня."),
            "conversion_window_days",
        )
    if chain.goal not in TriggerChain.Goal.values:
        _refuse("invalid_goal", _("Неизвестная цель."), "goal")
    if chain.goal == TriggerChain.Goal.EVENT and not chain.goal_event_type:
        _refuse(
            "goal_event_required", _("Укажите событие, которое считается целью."), "goal_event_type"
        )
    if chain.kind not in TriggerChain.Kind.values:
        _refuse("invalid_kind", _("Неизвестный вид цепочки."), "kind")
    taken = TriggerChain.objects.for_client(client).filter(name=chain.name)
    if chain.pk is not None:
        taken = taken.exclude(pk=chain.pk)
    if taken.exists():
        _refuse("name_taken", _("Цепочка «%(name)s» уже есть.") % {"name": chain.name}, "name")


def _normalise_steps(client: Client, steps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps as dicts of :data:`STEP_FIELDS`, checked; ``position`` defaults to the order."""
    result = []
    for index, raw in enumerate(steps, start=1):
        field = f"steps[{index - 1}]"
        unknown = set(raw) - set(STEP_FIELDS)
        if unknown:
            _refuse(
                "invalid_field",
                _("Неизвестные поля шага: %(fields)s.") % {"fields": ", ".join(sorted(unknown))},
                f"{field}.{sorted(unknown)[0]}",
            )
        template = raw.get("template")
        if not isinstance(template, MessageTemplate) or template.client_id != client.pk:
            _refuse(
                "template_not_found",
                _("Шаблон шага %(n)s не найден у этого клиента.") % {"n": index},
                f"{field}.template",
            )
        channel = raw.get("channel") or template.channel
        if channel != template.channel:
            _refuse(
                "channel_mismatch",
                _("Шаг %(n)s: канал шага (%(step)s) не совпадает с каналом шаблона (%(tpl)s).")
                % {
                    "n": index,
                    "step": _channel_label(channel),
                    "tpl": _channel_label(template.channel),
                },
                f"{field}.channel",
            )
        step = {
            "position": raw.get("position") or index,
            "delay_hours": raw.get("delay_hours") or 0,
            "delay_from": raw.get("delay_from") or ChainStep.DelayFrom.PREVIOUS,
            "channel": channel,
            "template": template,
            "condition": raw.get("condition") or ChainStep.Condition.ALWAYS,
        }
        if step["delay_from"] not in ChainStep.DelayFrom.values:
            _refuse("invalid_delay_from", _("Неизвестный отсчёт задержки."), f"{field}.delay_from")
        if step["condition"] not in ChainStep.Condition.values:
            _refuse("invalid_condition", _("Неизвестное условие шага."), f"{field}.condition")
        if not isinstance(step["delay_hours"], int) or step["delay_hours"] < 0:
            _refuse("invalid_delay", _("Задержка — целое число часов ≥ 0."), f"{field}.delay_hours")
        result.append(step)
    result.sort(key=lambda s: s["position"])
    positions = [s["position"] for s in result]
    if positions != list(range(1, len(result) + 1)):
        _refuse(
            "invalid_positions",
            _("Шаги нумеруются подряд с 1: 1, 2, 3… (получено: %(got)s).")
            % {"got": ", ".join(str(p) for p in positions)},
            "steps",
        )
    for index, step in enumerate(result):
        if step["condition"] in (
            ChainStep.Condition.PREVIOUS_NOT_OPENED,
            ChainStep.Condition.PREVIOUS_NOT_CLICKED,
        ):
            if index == 0:
                _refuse(
                    "condition_needs_previous",
                    _("Условие «%(condition)s» возможно только после предыдущего шага.")
                    % {"condition": ChainStep.Condition(step["condition"]).label},
                    f"steps[{index}].condition",
                )
            previous = result[index - 1]["channel"]
            if (
                step["condition"] == ChainStep.Condition.PREVIOUS_NOT_OPENED
                and previous not in OPENS_TRACKED
            ):
                _refuse(
                    "opens_not_tracked",
                    _(
                        "Шаг %(n)s: открытия SMS неизвестны, условие «предыдущее не открыто» "
                        "после SMS невозможно; выберите «по предыдущему не кликнули»."
                    )
                    % {"n": step["position"]},
                    f"steps[{index}].condition",
                )
    return result


def _check_step_tier(client: Client, steps: Iterable[dict[str, Any] | ChainStep]) -> None:
    channels = {s["channel"] if isinstance(s, dict) else s.channel for s in steps}
    other = sorted(channels - {Channel.EMAIL})
    if other:
        tier_require(
            client=client,
            feature="omnichannel",
            context=_("В цепочке есть шаги %(channels)s.")
            % {"channels": ", ".join(_channel_label(c) for c in other)},
            hint=_("На этом тарифе цепочки отправляют только email."),
        )


def _apply(chain: TriggerChain, data: dict[str, Any]) -> list[str]:
    unknown = set(data) - {*CHAIN_FIELDS, "excluded_audiences"}
    if unknown:
        names = sorted(unknown)
        _refuse(
            "invalid_field",
            _("Нельзя задать: %(fields)s.") % {"fields": ", ".join(names)},
            names[0],
        )
    changed = []
    for name in CHAIN_FIELDS:
        if name not in data:
            continue
        value = data[name]
        field = TriggerChain._meta.get_field(name)
        if value is None and not field.null:
            value = field.get_default()
        if isinstance(value, str):
            value = value.strip() if name == "name" else value
        if getattr(chain, name) != value:
            setattr(chain, name, value)
            changed.append(name)
    return changed


def _excluded(client: Client, audiences: Any) -> list[Audience] | None:
    if audiences is None:
        return None
    result = list(audiences)
    for audience in result:
        _check_own(client, audience, "excluded_audiences")
    return result


def _set_excluded(chain: TriggerChain, audiences: list[Audience]) -> None:
    """The chain's excluded audiences, through the link table (the related manager would query
    audiences without a client scope, which the tenancy guard refuses)."""
    through = TriggerChain.excluded_audiences.through
    through.objects.filter(triggerchain_id=chain.pk).exclude(
        audience_id__in=[a.pk for a in audiences]
    ).delete()
    existing = set(
        through.objects.filter(triggerchain_id=chain.pk).values_list("audience_id", flat=True)
    )
    through.objects.bulk_create(
        [
            through(triggerchain_id=chain.pk, audience_id=a.pk)
            for a in audiences
            if a.pk not in existing
        ]
    )


def _write_steps(chain: TriggerChain, steps: list[dict[str, Any]]) -> None:
    """Upsert steps by position; positions no longer listed are deleted unless they have
    messages (then refused: pause the chain and make a new one)."""
    existing = {s.position: s for s in ChainStep.objects.filter(chain=chain)}
    wanted = {s["position"] for s in steps}
    removed = [s for p, s in existing.items() if p not in wanted]
    if removed:
        used = Message.objects.for_client(chain.client_id).filter(
            chain=chain, step__in=[s.pk for s in removed]
        )
        if used.exists():
            _refuse(
                "steps_have_messages",
                _(
                    "Шаги, по которым уже есть сообщения, удалить нельзя: их история нужна "
                    "для воронки. Измените шаги или создайте новую цепочку."
                ),
                "steps",
            )
        ChainStep.objects.filter(pk__in=[s.pk for s in removed]).delete()
    for step in steps:
        current = existing.get(step["position"])
        if current is None:
            ChainStep.objects.create(chain=chain, **step)
            continue
        changed = [name for name in STEP_FIELDS if getattr(current, name) != step[name]]
        for name in changed:
            setattr(current, name, step[name])
        if changed:
            current.save(update_fields=changed)


def _steps_summary(chain: TriggerChain) -> list[dict[str, Any]]:
    return [
        {
            "position": s.position,
            "channel": s.channel,
            "template": s.template_id,
            "delay_hours": s.delay_hours,
            "condition": s.condition,
        }
        for s in ChainStep.objects.filter(chain=chain).order_by("position")
    ]


@transaction.atomic
def chain_create(
    *,
    client: Client,
    data: dict[str, Any],
    steps: list[dict[str, Any]] | None = None,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
    preset: str = "",
) -> TriggerChain:
    """A new chain (a draft) with its steps, checked; audited.

    ``data``: fields of :data:`CHAIN_FIELDS` (segments as the client's ``Segment`` objects) and
    optionally ``excluded_audiences`` (the client's ``Audience`` objects). ``steps``: dicts with
    ``template`` (the client's ``MessageTemplate``) and optionally ``position`` (default: the
    order given), ``delay_hours``, ``delay_from``, ``channel`` (default: the template's),
    ``condition``."""
    chain = TriggerChain(client=client, preset=preset)
    _apply(chain, data)
    _check_chain_fields(client, chain)
    excluded = _excluded(client, data.get("excluded_audiences"))
    normalised = _normalise_steps(client, steps or [])
    _check_step_tier(client, normalised)
    chain.save()
    _write_steps(chain, normalised)
    if excluded:
        _set_excluded(chain, excluded)
    _audit(
        "trigger_chain_created",
        chain,
        actor=actor,
        source=source,
        ip=ip,
        details={"trigger": chain.trigger, "preset": preset, "steps": _steps_summary(chain)},
    )
    return chain


@transaction.atomic
def chain_update(
    *,
    chain: TriggerChain,
    data: dict[str, Any] | None = None,
    steps: list[dict[str, Any]] | None = None,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> TriggerChain:
    """Change a chain's fields (``data``, as in :func:`chain_create`) and, when ``steps`` is
    given, replace its steps (upserted by position; steps with messages are never deleted).
    An archived chain is not changed. Audited with the changed fields' names."""
    chain = TriggerChain.objects.for_client(chain.client_id).select_for_update().get(pk=chain.pk)
    client = chain.client
    if chain.status == TriggerChain.Status.ARCHIVED:
        _refuse("chain_archived", _("Цепочка в архиве: её не изменить."), "status")
    data = data or {}
    changed = _apply(chain, data)
    _check_chain_fields(client, chain)
    excluded = _excluded(client, data.get("excluded_audiences"))
    if steps is not None:
        normalised = _normalise_steps(client, steps)
        if chain.status == TriggerChain.Status.ACTIVE and not normalised:
            _refuse(
                "steps_required", _("У активной цепочки должен быть хотя бы один шаг."), "steps"
            )
        _check_step_tier(client, normalised)
    if changed:
        chain.save(update_fields=[*changed, "updated_at"])
    if steps is not None:
        _write_steps(chain, normalised)
    if excluded is not None:
        _set_excluded(chain, excluded)
        changed.append("excluded_audiences")
    _audit(
        "trigger_chain_updated",
        chain,
        actor=actor,
        source=source,
        ip=ip,
        details={
            "fields": changed,
            "steps": _steps_summary(chain) if steps is not None else None,
        },
    )
    return chain


def _set_status(
    chain: TriggerChain,
    status: str,
    *,
    allowed_from: tuple[str, ...],
    action: str,
    actor: Any,
    source: str,
    ip: str | None,
) -> TriggerChain:
    chain = TriggerChain.objects.for_client(chain.client_id).select_for_update().get(pk=chain.pk)
    if chain.status == status:
        return chain
    if chain.status not in allowed_from:
        _refuse(
            "invalid_status",
            _("Цепочку в статусе «%(current)s» нельзя перевести в «%(target)s».")
            % {
                "current": TriggerChain.Status(chain.status).label,
                "target": TriggerChain.Status(status).label,
            },
            "status",
        )
    client = chain.client
    fields = ["status", "updated_at"]
    if status == TriggerChain.Status.ACTIVE:
        steps = list(ChainStep.objects.filter(chain=chain))
        if not steps:
            _refuse(
                "steps_required",
                _("В цепочке нет шагов: добавьте хотя бы одно сообщение."),
                "steps",
            )
        _check_step_tier(client, steps)
        _check_chain_fields(client, chain)  # the tier may have changed since it was written
        active = (
            TriggerChain.objects.for_client(client)
            .filter(status=TriggerChain.Status.ACTIVE)
            .exclude(pk=chain.pk)
            .count()
        )
        tier_check_limit(client=client, limit="trigger_chains", current=active)
        chain.activated_at = timezone.now()
        fields.append("activated_at")
    previous = chain.status
    chain.status = status
    chain.save(update_fields=fields)
    _audit(
        action,
        chain,
        actor=actor,
        source=source,
        ip=ip,
        details={"from": previous, "to": status},
    )
    return chain


@transaction.atomic
def chain_activate(
    *, chain: TriggerChain, actor: Any = None, source: str = "system", ip: str | None = None
) -> TriggerChain:
    """Start (or resume) a chain: a draft or paused chain with steps becomes active and
    ``activated_at`` is now. Refused past the tier's number of active chains."""
    return _set_status(
        chain,
        TriggerChain.Status.ACTIVE,
        allowed_from=(TriggerChain.Status.DRAFT, TriggerChain.Status.PAUSED),
        action="trigger_chain_activated",
        actor=actor,
        source=source,
        ip=ip,
    )


@transaction.atomic
def chain_pause(
    *, chain: TriggerChain, actor: Any = None, source: str = "system", ip: str | None = None
) -> TriggerChain:
    """Pause an active chain: nobody new enters and nothing more is queued until it resumes."""
    return _set_status(
        chain,
        TriggerChain.Status.PAUSED,
        allowed_from=(TriggerChain.Status.ACTIVE,),
        action="trigger_chain_paused",
        actor=actor,
        source=source,
        ip=ip,
    )


@transaction.atomic
def chain_archive(
    *, chain: TriggerChain, actor: Any = None, source: str = "system", ip: str | None = None
) -> TriggerChain:
    """Archive a chain for good (its history stays; the engine ends its enrolments)."""
    return _set_status(
        chain,
        TriggerChain.Status.ARCHIVED,
        allowed_from=(
            TriggerChain.Status.DRAFT,
            TriggerChain.Status.ACTIVE,
            TriggerChain.Status.PAUSED,
        ),
        action="trigger_chain_archived",
        actor=actor,
        source=source,
        ip=ip,
    )


def chain_has_enrollments(chain: TriggerChain) -> bool:
    return Enrollment.objects.for_client(chain.client_id).filter(chain=chain).exists()


# --------------------------------------------------------------------------------------------
# Channel settings

REQUIRED_CREDENTIALS: dict[str, tuple[tuple[str, ...], ...]] = {
    # Each entry: alternatives, any one of which (all its keys) is enough.
    Provider.SMTP: ((),),
    Provider.UNISENDER: (("api_key",),),
    Provider.SENDSAY: (("account", "apikey"),),
    Provider.SMSRU: (("api_id",),),
    Provider.SMSC: (("login", "password"), ("apikey",)),
    Provider.RUSTORE: (("project_id", "service_token"),),
    Provider.WEBPUSH: (("vapid_private_key", "vapid_public_key", "vapid_subject"),),
}
RECIPIENT_KIND = {
    Channel.EMAIL: DataRecipient.Kind.EMAIL,
    Channel.SMS: DataRecipient.Kind.SMS,
    Channel.PUSH: DataRecipient.Kind.PUSH,
}
# The country of the provider that receives the data. Web push goes to the browser vendor's
# endpoint (often abroad), known only per subscription: its recipient has no country here
# (""), which the cross-border guard treats as abroad, and the engine decides per endpoint.
PROVIDER_COUNTRY = {
    Provider.SMTP: "RU",
    Provider.UNISENDER: "RU",
    Provider.SENDSAY: "RU",
    Provider.SMSRU: "RU",
    Provider.SMSC: "RU",
    Provider.RUSTORE: "RU",
    Provider.WEBPUSH: "",
}


def _check_credentials(provider: str, credentials: dict[str, Any]) -> dict[str, str]:
    return credentials_checked(
        credentials,
        required=REQUIRED_CREDENTIALS[provider],
        provider_label=Provider(provider).label,
    )


@transaction.atomic
def channel_settings_save(
    *,
    client: Client,
    channel: str,
    provider: str,
    sender: str = "",
    sender_name: str = "",
    credentials: dict[str, Any] | None = None,
    is_active: bool = True,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> ChannelSettings:
    """Create or update the client's settings of one channel: the provider (one of
    ``CHANNEL_PROVIDERS[channel]``), the sender, credentials (checked per provider, stored
    encrypted; ``None`` on an update keeps the stored ones) and the data recipient (the
    provider, kind by channel, country by provider). Audited without the credentials."""
    if channel not in Channel.values:
        _refuse(
            "invalid_channel",
            _("Неизвестный канал: %(channel)s.") % {"channel": channel},
            "channel",
        )
    if provider not in CHANNEL_PROVIDERS[Channel(channel)]:
        allowed = ", ".join(str(p) for p in CHANNEL_PROVIDERS[Channel(channel)])
        _refuse(
            "invalid_provider",
            _("Для канала «%(channel)s» доступны провайдеры: %(allowed)s.")
            % {"channel": _channel_label(channel), "allowed": allowed},
            "provider",
        )
    if channel == Channel.EMAIL and provider != Provider.SMTP and not sender:
        _refuse("sender_required", _("Укажите адрес отправителя."), "sender")
    existing = (
        ChannelSettings.objects.for_client(client)
        .select_for_update()
        .filter(channel=channel)
        .first()
    )
    keep_credentials = (
        credentials is None and existing is not None and existing.provider == provider
    )
    encrypted = existing.credentials_encrypted if keep_credentials else ""
    if not keep_credentials:
        checked = _check_credentials(provider, credentials or {})
        encrypted = secret_encrypt(checked) if checked else ""
    with site_language():  # a stored record: in the site's language
        recipient_name = f"{Provider(provider).label}: {_channel_label(channel)}"[:200]
    country = PROVIDER_COUNTRY[provider]
    if existing is None:
        recipient = DataRecipient.objects.create(
            client=client,
            name=recipient_name,
            kind=RECIPIENT_KIND[channel],
            country=country,
        )
        settings_row = ChannelSettings.objects.create(
            client=client,
            channel=channel,
            provider=provider,
            sender=sender or "",
            sender_name=sender_name or "",
            credentials_encrypted=encrypted,
            recipient=recipient,
            is_active=is_active,
        )
        action = "channel_settings_created"
    else:
        settings_row = existing
        recipient = DataRecipient.objects.for_client(client).get(pk=existing.recipient_id)
        if (recipient.name, recipient.country) != (recipient_name, country):
            recipient.name, recipient.country = recipient_name, country
            recipient.kind = RECIPIENT_KIND[channel]
            recipient.save(update_fields=["name", "country", "kind"])
        settings_row.provider = provider
        settings_row.sender = sender or ""
        settings_row.sender_name = sender_name or ""
        settings_row.credentials_encrypted = encrypted
        settings_row.is_active = is_active
        settings_row.save(
            update_fields=[
                "provider",
                "sender",
                "sender_name",
                "credentials_encrypted",
                "is_active",
            ]
        )
        action = "channel_settings_updated"
    _audit(
        action,
        settings_row,
        actor=actor,
        source=source,
        ip=ip,
        details={
            "channel": channel,
            "provider": provider,
            "country": country,
            "credentials_replaced": not keep_credentials,
        },
    )
    return settings_row


@transaction.atomic
def template_delete(
    *,
    template: MessageTemplate,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> None:
    """Delete a template no chain step uses (a used one is refused: its steps send it)."""
    if ChainStep.objects.filter(template=template, chain__client_id=template.client_id).exists():
        raise ServiceError(
            "template_in_use",
            _("Шаблон используется в цепочках: сначала замените его в их шагах."),
            status=409,
        )
    _audit(
        "message_template_deleted",
        template,
        actor=actor,
        source=source,
        ip=ip,
        details={"name": template.name, "channel": template.channel},
    )
    template.delete()


# --------------------------------------------------------------------------------------------
# Push devices

# Web push endpoints belong to the browsers' push services; the worker POSTs to them, so an
# endpoint elsewhere (a client's own host, a local address) is refused against SSRF.
WEBPUSH_HOSTS = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "push.services.mozilla.com",
    ".push.apple.com",
    ".notify.windows.com",
)
PUSH_TOKEN_MAX = 4096


def _webpush_subscription(token: Any) -> str:
    """A web push subscription (``{"endpoint", "keys": {"p256dh", "auth"}}``, as JSON or a
    dict) as canonical JSON; refused unless its endpoint is a browser push service."""
    if isinstance(token, str):
        try:
            token = json.loads(token)
        except ValueError:
            token = None
    keys = token.get("keys") if isinstance(token, dict) else None
    endpoint = token.get("endpoint") if isinstance(token, dict) else None
    if (
        not isinstance(endpoint, str)
        or not isinstance(keys, dict)
        or not all(isinstance(keys.get(k), str) and keys.get(k) for k in ("p256dh", "auth"))
    ):
        _refuse(
            "invalid_subscription",
            _('Подписка web push — объект {"endpoint", "keys": {"p256dh", "auth"}}.'),
            "token",
        )
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if not is_local_test_endpoint(endpoint) and (
        parts.scheme != "https"
        or not any(
            host == allowed or (allowed.startswith(".") and host.endswith(allowed))
            for allowed in WEBPUSH_HOSTS
        )
    ):
        _refuse(
            "invalid_subscription",
            _("Адрес подписки должен быть https-адресом push-сервиса браузера (%(hosts)s).")
            % {"hosts": ", ".join(h.lstrip(".") for h in WEBPUSH_HOSTS)},
            "token",
        )
    canonical = {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"))


def channel_settings_credentials_rotate() -> int:
    """Re-encrypt every channel's credentials with the newest key; returns how many."""
    count = 0
    for row in ChannelSettings.objects.unscoped().exclude(credentials_encrypted="").iterator():
        ChannelSettings.objects.for_client(row.client_id).filter(pk=row.pk).update(
            credentials_encrypted=secret_rotate(row.credentials_encrypted)
        )
        count += 1
    return count


@transaction.atomic
def push_device_register(
    *,
    client: Client,
    customer: Any,
    provider: str,
    token: Any,
    actor: Any = None,
    source: str = "system",
    ip: str | None = None,
) -> tuple[PushDevice, bool]:
    """Register a customer's push address: a RuStore token (a string) or a web push
    subscription. The same token registered again moves to ``customer`` and is live again.
    Returns (device, created)."""
    if getattr(customer, "client_id", None) != client.pk:
        _refuse("customer_not_found", _("Покупатель не найден."), "customer")
    if provider == Provider.RUSTORE:
        if not isinstance(token, str) or not token.strip():
            _refuse("invalid_token", _("Токен RuStore — непустая строка."), "token")
        value = token.strip()
    elif provider == Provider.WEBPUSH:
        value = _webpush_subscription(token)
    else:
        _refuse(
            "invalid_provider",
            _("Push-провайдер: %(allowed)s.") % {"allowed": "rustore, webpush"},
            "provider",
        )
    if len(value) > PUSH_TOKEN_MAX:
        _refuse("invalid_token", _("Токен слишком длинный."), "token")
    token_hash = hashlib.sha256(value.encode()).hexdigest()
    device = (
        PushDevice.objects.for_client(client).select_for_update().filter(token_hash=token_hash)
    ).first()
    created = device is None
    if created:
        device = PushDevice.objects.create(
            client=client, customer=customer, provider=provider, token=value, token_hash=token_hash
        )
    else:
        device.customer = customer
        device.provider = provider
        device.gone_at = None
        device.save(update_fields=["customer", "provider", "gone_at"])
    _audit(
        "push_device_registered",
        device,
        actor=actor,
        source=source,
        ip=ip,
        details={"provider": provider, "customer": customer.pk, "created": created},
    )
    return device, created


@transaction.atomic
def push_device_remove(
    *, device: PushDevice, actor: Any = None, source: str = "system", ip: str | None = None
) -> None:
    """Forget a push address (the app or the browser unsubscribed)."""
    _audit(
        "push_device_removed",
        device,
        actor=actor,
        source=source,
        ip=ip,
        details={"provider": device.provider, "customer": device.customer_id},
    )
    device.delete()
