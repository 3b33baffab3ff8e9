"""The 152-FZ checklist of one client: what a lawyer asks first, answered from the data.

Each item is computed from the current rows (nothing stored), so it flips as soon as the data
changes: a registry number entered, a text published, a request completed, an incident reported,
a transfer notice recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.i18n import client_localtime

from .models import (
    ConsentPurpose,
    ConsentRecord,
    ConsentText,
    DataRecipient,
    DataSubjectRequest,
    Incident,
)
from .purposes import AUDIENCE_PURPOSE, CHANNEL_PURPOSE
from .transfers import transfer_decision

# Recipients that imply a purpose is in use even before the first consent is recorded.
PURPOSE_OF_RECIPIENT_KIND = {
    DataRecipient.Kind.AD_PLATFORM: AUDIENCE_PURPOSE,
    DataRecipient.Kind.EMAIL: CHANNEL_PURPOSE["email"],
    DataRecipient.Kind.SMS: CHANNEL_PURPOSE["sms"],
    DataRecipient.Kind.PUSH: CHANNEL_PURPOSE["push"],
}

OPEN_REQUEST_STATUSES = (DataSubjectRequest.Status.RECEIVED, DataSubjectRequest.Status.IN_PROGRESS)


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str
    code: str = ""


def _dates(items, limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    more = _(" и ещё %(n)s") % {"n": len(items) - limit} if len(items) > limit else ""
    return shown + more


def _local(client, value: datetime) -> str:
    """``value`` in the client's time zone."""
    return client_localtime(client, value).strftime("%d.%m.%Y %H:%M")


def check_database_location() -> CheckItem:
    country = (getattr(settings, "PD_DATABASE_COUNTRY", "") or "").strip().upper()
    return CheckItem(
        _("База данных с ПДн находится в России"),
        country == "RU",
        f"PD_DATABASE_COUNTRY={country or _('(пусто)')}"
        + ("" if country == "RU" else _(": 152-ФЗ ст. 18 ч. 5 требует RU.")),
        "database_location",
    )


def check_registry_number(client) -> CheckItem:
    number = (client.pd_operator_registry_number or "").strip()
    return CheckItem(
        _("Регистрационный номер оператора ПДн"),
        bool(number),
        f"№ {number}"
        if number
        else _(
            "Не указан: уведомите Роскомнадзор о начале обработки (152-ФЗ ст. 22) и внесите "
            "номер из реестра операторов в карточку клиента."
        ),
        "registry_number",
    )


def purposes_in_use(client) -> list[ConsentPurpose]:
    """Purposes with any consent record of the client, plus those implied by its recipients."""
    recorded = (
        ConsentRecord.objects.for_client(client)
        .filter(purpose__isnull=False)
        .values("purpose_id")
        .distinct()
    )
    kinds = set(DataRecipient.objects.for_client(client).values_list("kind", flat=True))
    implied = [PURPOSE_OF_RECIPIENT_KIND[k] for k in kinds if k in PURPOSE_OF_RECIPIENT_KIND]
    return list(
        ConsentPurpose.objects.filter(Q(pk__in=recorded) | Q(code__in=implied)).order_by("position")
    )


def check_published_texts(client) -> CheckItem:
    in_use = purposes_in_use(client)
    published = set(
        ConsentText.objects.for_client(client)
        .filter(status=ConsentText.Status.PUBLISHED)
        .values_list("purpose_id", flat=True)
    )
    missing = [p for p in in_use if p.pk not in published]
    if not in_use:
        detail = _("Цели пока не используются: нет записей согласий и получателей данных.")
    elif missing:
        detail = _("Нет опубликованного текста для: %(purposes)s") % {
            "purposes": "; ".join(f"{p.name} ({p.code})" for p in missing)
        }
    else:
        detail = _("Опубликованы тексты для всех используемых целей (%(n)s).") % {"n": len(in_use)}
    return CheckItem(
        _("Опубликованный текст согласия для каждой используемой цели"),
        not missing,
        detail,
        "published_texts",
    )


def check_subject_requests(client, today: date) -> CheckItem:
    overdue = list(
        DataSubjectRequest.objects.for_client(client)
        .filter(status__in=OPEN_REQUEST_STATUSES, due_date__lt=today)
        .order_by("due_date")
    )
    return CheckItem(
        _("Нет просроченных запросов субъектов ПДн"),
        not overdue,
        _("Просрочено: %(n)s (%(requests)s).")
        % {
            "n": len(overdue),
            "requests": _dates(
                [
                    _("%(kind)s до %(date)s")
                    % {"kind": r.get_kind_display(), "date": f"{r.due_date:%d.%m.%Y}"}
                    for r in overdue
                ]
            ),
        }
        if overdue
        else _("Все открытые запросы в срок."),
        "subject_requests",
    )


def overdue_incidents(client, now: datetime):
    """Incidents not closed whose 24-hour notice or 72-hour report is due and not yet sent."""
    return (
        Incident.objects.for_client(client)
        .exclude(status=Incident.Status.CLOSED)
        .filter(
            Q(notified_at__isnull=True, detected_at__lt=now - Incident.NOTIFY_WITHIN)
            | Q(
                investigation_reported_at__isnull=True,
                detected_at__lt=now - Incident.INVESTIGATE_WITHIN,
            )
        )
        .order_by("detected_at")
    )


def check_incidents(client, now: datetime) -> CheckItem:
    overdue = list(overdue_incidents(client, now))
    parts = []
    for incident in overdue:
        missing = []
        if incident.notified_at is None:
            missing.append(
                _("не направлено уведомление РКН (срок %(deadline)s)")
                % {"deadline": _local(client, incident.notify_deadline)}
            )
        if incident.investigation_reported_at is None and incident.investigation_deadline < now:
            missing.append(
                _("не направлены результаты расследования (срок %(deadline)s)")
                % {"deadline": _local(client, incident.investigation_deadline)}
            )
        parts.append(
            _("Инцидент %(detected)s: %(missing)s")
            % {"detected": _local(client, incident.detected_at), "missing": _(" и ").join(missing)}
        )
    return CheckItem(
        _("Нет инцидентов с истёкшим сроком уведомления (24 ч / 72 ч)"),
        not overdue,
        "; ".join(parts) if overdue else _("Все сроки по инцидентам соблюдены."),
        "incidents",
    )


def check_cross_border(client, today: date) -> CheckItem:
    foreign = DataRecipient.objects.for_client(client).exclude(country="RU").order_by("name")
    blocked = []
    for recipient in foreign:
        decision = transfer_decision(recipient=recipient, today=today)
        if not decision.allowed:
            when = (
                _("ожидание до %(date)s") % {"date": f"{decision.allowed_from:%d.%m.%Y}"}
                if decision.allowed_from
                else _("нет уведомления")
            )
            blocked.append(f"{recipient.name} ({recipient.country}): {when}")
    if blocked:
        detail = _("Передача запрещена: %(recipients)s.") % {"recipients": "; ".join(blocked)}
    elif foreign:
        detail = _("Уведомления действуют для всех зарубежных получателей (%(n)s).") % {
            "n": len(foreign)
        }
    else:
        detail = _("Зарубежных получателей нет.")
    return CheckItem(
        _("У каждого зарубежного получателя есть действующее уведомление РКН"),
        not blocked,
        detail,
        "cross_border",
    )


def client_compliance_checklist(*, client, now: datetime | None = None) -> list[CheckItem]:
    """The checklist of one client, in the order a lawyer reads it."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    return [
        check_database_location(),
        check_registry_number(client),
        check_published_texts(client),
        check_subject_requests(client, today),
        check_incidents(client, now),
        check_cross_border(client, today),
    ]
