"""Data-subject requests under 152-FZ: intake with a deadline on the Russian working-day calendar,
withdrawal recorded in the ledger at once, the access archive, erasure of a person.

Services (writes) and selectors (reads) of the requests, called by the admin and by any later
entry point (portal, API, commands) alike. The deadlines are data: :data:`DEADLINES`.

The apps above consent (segments, audiences, later campaigns) cover what they hold about a
person through the registries of :mod:`consent.hooks`, filled in their ``AppConfig.ready()``:

- access-archive sections (:data:`ACCESS_ARCHIVE_SECTIONS`): scores and segment memberships,
  the ad platforms the person was exported to, later the messages sent to them; each adds
  ``<name>.csv`` and ``data.json["sections"][<name>]`` after consent's own sections;
- erasure steps (:data:`ERASURE_STEPS`): run last inside the erasure transaction, with the
  person's identifiers as they were before consent cleared them (:class:`ErasureSubject`).

What consent covers itself is listed by model in :data:`CORE_ARCHIVE_MODELS` and
:data:`CORE_ERASURE_MODELS`; a test holds every model with a customer key or identifier values
to be covered by one of these.
"""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.audit import audit_log
from agency.exports import csv_bytes
from clients.models import Client, Customer, Event, Order

from .calendar import add_working_days, working_days_between
from .hooks import ACCESS_ARCHIVE_SECTIONS, ERASURE_STEPS, ErasureSubject
from .models import (
    ConsentPurpose,
    ConsentRecord,
    ConsentSubjectLink,
    ConsentText,
    DataSubjectRequest,
)
from .purposes import WITHDRAWAL_PURPOSES
from .selectors import consent_current_state, consent_history, customers_not_erased
from .services import ConsentError, consent_record_append, consent_records_erase

Kind = DataSubjectRequest.Kind
Status = DataSubjectRequest.Status

# --------------------------------------------------------------------------------------------
# Deadlines


@dataclass(frozen=True)
class Deadline:
    """How long the operator has to answer a kind of request, counted from the day after the
    day of receipt (in the client's time zone)."""

    days: int
    working_days: bool  # Russian working days (production calendar), or calendar days
    basis: str

    def due(self, received: date) -> date:
        if self.working_days:
            return add_working_days(received, self.days)
        return received + timedelta(days=self.days)


# One place for the law's deadlines; the points marked (?) in the reference are kept here.
DEADLINES: dict[str, Deadline] = {
    Kind.ACCESS: Deadline(
        10, True, "152-ФЗ ст. 20 ч. 1, 3: 10 рабочих дней (+5 с мотивированным уведомлением)"
    ),
    Kind.RECTIFICATION: Deadline(7, True, "152-ФЗ ст. 21 ч. 2: уточнение в 7 рабочих дней"),
    Kind.ERASURE: Deadline(10, True, "152-ФЗ ст. 21 ч. 3: уничтожение в 10 рабочих дней"),
    # Direct marketing stops at once (art. 15; 38-FZ art. 18): the withdrawal is written to the
    # ledger on intake. The 30 days are for ending all processing on consent and destroying.
    Kind.WITHDRAWAL: Deadline(
        30,
        False,
        "152-ФЗ ст. 21 ч. 5: прекратить обработку и уничтожить в 30 дней; "
        "прямой маркетинг — немедленно (ст. 15)",
    ),
    Kind.STOP_PROCESSING: Deadline(
        10,
        True,
        "152-ФЗ ст. 21 ч. 5.1: прекратить обработку в 10 рабочих дней; "
        "прямой маркетинг — немедленно (ст. 15)",
    ),
}

FUTURE_TOLERANCE = timedelta(minutes=5)


def dsr_due_date(*, client: Client, kind: str, received_at: datetime) -> date:
    """The due date of a request of ``kind`` received at ``received_at``: the receipt day is
    the date in the client's time zone."""
    return DEADLINES[kind].due(timezone.localtime(received_at, client.tzinfo).date())


# --------------------------------------------------------------------------------------------
# Selectors


def dsr_open(queryset: QuerySet) -> QuerySet:
    return queryset.filter(status__in=(Status.RECEIVED, Status.IN_PROGRESS))


def dsr_overdue(queryset: QuerySet, *, today: date | None = None) -> QuerySet:
    """Open requests past their due date (the same rule as ``DataSubjectRequest.is_overdue``)."""
    return dsr_open(queryset).filter(due_date__lt=today or timezone.localdate())


def dsr_working_days_left(request: DataSubjectRequest, *, today: date | None = None) -> int:
    """Working days from today to the due date: 0 on the due date, negative once past it."""
    return working_days_between(today or timezone.localdate(), request.due_date)


# --------------------------------------------------------------------------------------------
# Intake and the ledger


def _check_open(request: DataSubjectRequest) -> None:
    if not request.is_open:
        message = _("Запрос уже закрыт (%(status)s).") % {"status": request.get_status_display()}
        raise ConsentError("request_closed", message)


def _check_customer(client: Client, customer: Customer | None) -> None:
    if customer is not None and customer.client_id != client.pk:
        raise ConsentError("no_subject", _("Покупатель не найден."))
    if customer is not None and customer.erased_at is not None:
        raise ConsentError("subject_erased", _("Данные этого покупателя уже удалены."))


def dsr_create(
    *,
    client: Client,
    kind: str,
    customer: Customer | None = None,
    subject_contact: str = "",
    details: str = "",
    received_at: datetime | None = None,
    actor: Any = None,
    source: str = "admin",
) -> DataSubjectRequest:
    """Register a request with its due date. A withdrawal or stop_processing request of a known
    person is written to the consent ledger at once and completed (:func:`_dsr_withdraw`)."""
    if kind not in DEADLINES:
        raise ConsentError(
            "invalid_kind", _("Вид запроса: %(kinds)s.") % {"kinds": ", ".join(DEADLINES)}
        )
    _check_customer(client, customer)
    now = timezone.now()
    received_at = received_at or now
    if timezone.is_naive(received_at):
        raise ConsentError("naive_time", _("Время получения без часового пояса."))
    if received_at > now + FUTURE_TOLERANCE:
        raise ConsentError("future_time", _("Время получения запроса в будущем."))
    with transaction.atomic():
        request = DataSubjectRequest.objects.create(
            client=client,
            kind=kind,
            customer=customer,
            subject_contact=subject_contact[:300],
            details=details,
            received_at=received_at,
            due_date=dsr_due_date(client=client, kind=kind, received_at=received_at),
        )
        audit_log(
            action="dsr_received",
            source=source,
            actor=actor,
            client=client,
            obj=request,
            details={"kind": kind, "due_date": request.due_date.isoformat()},
        )
        if customer is not None and kind in (Kind.WITHDRAWAL, Kind.STOP_PROCESSING):
            _dsr_withdraw(request, actor=actor, source=source)
    return request


def dsr_subject_set(
    *, request: DataSubjectRequest, customer: Customer, actor: Any = None, source: str = "admin"
) -> DataSubjectRequest:
    """Name the person of a request received without one (identified later by staff); a
    withdrawal or stop_processing request then takes effect at once."""
    _check_open(request)
    if request.customer_id is not None:
        raise ConsentError("subject_set", _("Субъект запроса уже указан."))
    _check_customer(request.client, customer)
    with transaction.atomic():
        request.customer = customer
        request.save(update_fields=["customer"])
        audit_log(
            action="dsr_subject_identified",
            source=source,
            actor=actor,
            client=request.client_id,
            obj=request,
            details={"customer_id": customer.pk},
        )
        if request.kind in (Kind.WITHDRAWAL, Kind.STOP_PROCESSING):
            _dsr_withdraw(request, actor=actor, source=source)
    return request


def _withdraw_purposes(
    *, customer: Customer, codes: Iterable[str], at: datetime, details: dict
) -> tuple[list[str], list[str]]:
    """Write a withdrawal (source subject_request) for each purpose whose latest record is not a
    withdrawal already. Also for purposes never granted: a grant back-dated before the request
    (a CRM that syncs late) must not revive them. Returns (written, already withdrawn)."""
    state = consent_current_state(customer=customer)
    written, already = [], []
    for code in codes:
        current = state.get(code)
        if current is None:
            continue
        if current["record_id"] is not None and not current["granted"]:
            already.append(code)
            continue
        consent_record_append(
            client=customer.client,
            customer=customer,
            purpose_code=code,
            action=ConsentRecord.Action.WITHDRAWN,
            source=ConsentRecord.Source.SUBJECT_REQUEST,
            at=at,
            details=details,
        )
        written.append(code)
    return written, already


def _purpose_names(codes: Iterable[str]) -> str:
    names = dict(ConsentPurpose.objects.values_list("code", "name"))
    return "; ".join(names.get(code, code) for code in codes) or "—"


def _dsr_withdraw(request: DataSubjectRequest, *, actor: Any, source: str) -> None:
    """Withdraw the request's purposes in the ledger now and complete the request."""
    if request.kind == Kind.STOP_PROCESSING:
        codes = list(ConsentPurpose.objects.values_list("code", flat=True))
    else:
        codes = list(WITHDRAWAL_PURPOSES)
    now = timezone.now()
    written, already = _withdraw_purposes(
        customer=request.customer,
        codes=codes,
        at=min(request.received_at, now),
        details={"request_id": request.pk, "request_kind": request.kind},
    )
    lines = [
        "Отзыв записан в журнал согласий при регистрации запроса: " + _purpose_names(written) + ".",
    ]
    if already:
        lines.append("Уже были отозваны ранее: " + _purpose_names(already) + ".")
    lines.append(
        "Сообщения по этим целям больше не отправляются (очередь отменена), из рекламных "
        "аудиторий субъект выходит при ближайшей синхронизации."
    )
    if request.kind == Kind.STOP_PROCESSING:
        lines.append(
            "Обработка на основании согласия прекращена по всем целям; данные, обрабатываемые "
            "по иным основаниям (ст. 6 ч. 1 п. 2–11: договор, закон), сохраняются; их удаление — "
            "отдельным запросом на удаление."
        )
    _dsr_close(
        request,
        status=Status.COMPLETED,
        resolution="\n".join(lines),
        actor=actor,
        source=source,
        details={"withdrawn": written, "already_withdrawn": already},
    )


def _dsr_close(
    request: DataSubjectRequest,
    *,
    status: str,
    resolution: str,
    actor: Any,
    source: str,
    details: dict | None = None,
) -> DataSubjectRequest:
    request.status = status
    request.completed_at = timezone.now()
    request.resolution = resolution
    if request.assignee_id is None and getattr(actor, "is_authenticated", False):
        request.assignee = actor
    request.save(update_fields=["status", "completed_at", "resolution", "assignee"])
    audit_log(
        action="dsr_completed" if status == Status.COMPLETED else "dsr_rejected",
        source=source,
        actor=actor,
        client=request.client_id,
        obj=request,
        details=details or {},
    )
    return request


def dsr_complete(
    *,
    request: DataSubjectRequest,
    resolution: str = "",
    actor: Any = None,
    source: str = "admin",
) -> DataSubjectRequest:
    """Mark a request answered, once staff confirm it. An access request needs its archive; an
    erasure request of a known person needs the erasure done (:func:`customer_erase`)."""
    _check_open(request)
    if request.kind == Kind.ACCESS and request.customer_id and not request.archive:
        raise ConsentError(
            "archive_missing", "Сначала сформируйте архив сведений о субъекте (доступ к данным)."
        )
    if request.kind == Kind.ERASURE and request.customer_id and not request.customer.erased_at:
        raise ConsentError("not_erased", _("Сначала удалите данные субъекта."))
    if not resolution:
        resolution = request.resolution or {
            Kind.ACCESS: "Сведения о субъекте (архив) направлены субъекту.",
            Kind.RECTIFICATION: "Данные уточнены.",
        }.get(request.kind, "Исполнен.")
    with transaction.atomic():
        return _dsr_close(
            request, status=Status.COMPLETED, resolution=resolution, actor=actor, source=source
        )


def dsr_reject(
    *, request: DataSubjectRequest, resolution: str, actor: Any = None, source: str = "admin"
) -> DataSubjectRequest:
    """Refuse a request; the law wants the refusal reasoned, so a resolution is required."""
    _check_open(request)
    if not (resolution or "").strip():
        raise ConsentError(
            "reason_required", _("Отказ должен быть мотивированным: укажите причину.")
        )
    with transaction.atomic():
        return _dsr_close(
            request, status=Status.REJECTED, resolution=resolution, actor=actor, source=source
        )


# --------------------------------------------------------------------------------------------
# Access: everything held about the person, as JSON and CSV

Section = tuple[str, list[dict[str, Any]]]


def _local(value: datetime | None, client: Client) -> str | None:
    return timezone.localtime(value, client.tzinfo).isoformat() if value else None


def _profile_section(customer: Customer) -> Section:
    client = customer.client
    return "profile", [
        {
            "external_id": customer.external_id,
            "email": customer.email,
            "phone": customer.phone,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "city": customer.city,
            "attributes": customer.attributes,
            "source": customer.source,
            "metrica_client_id": customer.metrica_client_id,
            "first_seen": _local(customer.first_seen, client),
            "created_at": _local(customer.created_at, client),
            "updated_at": _local(customer.updated_at, client),
        }
    ]


def _orders_section(customer: Customer) -> Section:
    client = customer.client
    orders = Order.objects.for_client(client).filter(customer=customer).order_by("placed_at", "id")
    return "orders", [
        {
            "external_id": o.external_id,
            "placed_at": _local(o.placed_at, client),
            "amount": o.amount,
            "status": o.status,
            "channel": o.channel,
            "items": o.items,
        }
        for o in orders.iterator(chunk_size=2000)
    ]


def _events_section(customer: Customer) -> Section:
    client = customer.client
    events = (
        Event.objects.for_client(client).filter(customer=customer).order_by("occurred_at", "id")
    )
    return "events", [
        {
            "external_id": e.external_id,
            "type": e.type,
            "occurred_at": _local(e.occurred_at, client),
            "properties": e.properties,
            "utm_source": e.utm_source,
            "utm_medium": e.utm_medium,
            "utm_campaign": e.utm_campaign,
        }
        for e in events.iterator(chunk_size=2000)
    ]


def _consent_records_section(customer: Customer) -> Section:
    client = customer.client
    rows = []
    for r in consent_history(customer=customer).order_by("at", "id"):
        if r.action == ConsentRecord.Action.ERASURE:
            continue
        rows.append(
            {
                "record_id": r.pk,
                "at": _local(r.at, client),
                "purpose": r.purpose.code if r.purpose_id else "",
                "purpose_name": r.purpose.name if r.purpose_id else "",
                "action": r.action,
                "source": r.source,
                "text_id": r.text_id,
                "text_version": r.text.version if r.text_id else None,
                "subject": "customer" if r.customer_id else f"cookie:{r.subject_id}",
                "ip": r.ip,
                "user_agent": r.user_agent,
                "url": r.url,
                "form_id": r.form_id,
                "details": r.details,
                "recorded_at": _local(r.recorded_at, client),
                "hash": r.hash,
            }
        )
    return "consent_records", rows


def _consent_texts_section(customer: Customer) -> Section:
    client = customer.client
    text_ids = {tid for tid in consent_history(customer=customer).values_list("text_id", flat=True)}
    texts = (
        ConsentText.objects.for_client(client)
        .filter(pk__in=[t for t in text_ids if t])
        .select_related("purpose")
        .order_by("purpose__position", "version")
    )
    fields = ("title", *ConsentText.REQUIRED_PARTS, "body")
    return "consent_texts", [
        {
            "text_id": t.pk,
            "purpose": t.purpose.code,
            "version": t.version,
            "published_at": _local(t.published_at, client),
            **{name: getattr(t, name) for name in fields},
        }
        for t in texts
    ]


def _consent_links_section(customer: Customer) -> Section:
    client = customer.client
    links = (
        ConsentSubjectLink.objects.for_client(client)
        .filter(customer=customer)
        .order_by("linked_at")
    )
    return "consent_links", [
        {
            "cookie_subject_id": link.subject_id,
            "linked_at": _local(link.linked_at, client),
            "source": link.source,
        }
        for link in links
    ]


def _consent_state_section(customer: Customer) -> Section:
    client = customer.client
    return "consent_state", [
        {
            "purpose": s["purpose"],
            "purpose_name": s["name"],
            "granted": s["granted"],
            "since": _local(s["at"], client),
            "record_id": s["record_id"],
        }
        for s in consent_current_state(customer=customer).values()
    ]


def _subject_requests_section(customer: Customer) -> Section:
    client = customer.client
    requests = (
        DataSubjectRequest.objects.for_client(client)
        .filter(customer=customer)
        .order_by("received_at", "id")
    )
    return "subject_requests", [
        {
            "request_id": r.pk,
            "kind": r.kind,
            "received_at": _local(r.received_at, client),
            "due_date": r.due_date.isoformat(),
            "status": r.status,
            "completed_at": _local(r.completed_at, client),
            "resolution": r.resolution,
        }
        for r in requests
    ]


CORE_SECTIONS: tuple[Callable[[Customer], Section], ...] = (
    _profile_section,
    _orders_section,
    _events_section,
    _consent_records_section,
    _consent_texts_section,
    _consent_links_section,
    _consent_state_section,
    _subject_requests_section,
)

SECTION_TITLES = {
    "profile": "профиль покупателя",
    "orders": "заказы",
    "events": "события (визиты, клики, открытия писем и т. п.)",
    "consent_records": "журнал согласий: выдача и отзыв, с доказательствами (IP, браузер, "
    "страница, форма) и версией текста",
    "consent_texts": "тексты согласий, на которые ссылается журнал",
    "consent_links": "cookie-идентификаторы сайта, связанные с покупателем",
    "consent_state": "текущее состояние согласий по целям",
    "subject_requests": "запросы субъекта",
}


# What the core sections above report, by model (with the registered sections, what the
# coverage test in tests/consent/test_hook_coverage.py accepts as covered by the archive).
CORE_ARCHIVE_MODELS = (
    "clients.Customer",
    "clients.Order",
    "clients.Event",
    "consent.ConsentRecord",
    "consent.ConsentSubjectLink",
    "consent.DataSubjectRequest",
)


def access_archive_sections(*, customer: Customer) -> list[Section]:
    """Every section of the person's data: the core ones, then those registered by later apps
    (:mod:`consent.hooks`)."""
    return [section(customer) for section in CORE_SECTIONS] + [
        (section.name, section.build(customer)) for section in ACCESS_ARCHIVE_SECTIONS
    ]


def _section_title(name: str) -> str:
    registered = {section.name: section.title for section in ACCESS_ARCHIVE_SECTIONS}
    return SECTION_TITLES.get(name) or registered.get(name, name)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """One section for Excel, by the one export writer (BOM, formulas neutralised: the
    person's own values, such as a name, are written back to them)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return csv_bytes(([_csv_cell(row.get(c)) for c in columns] for row in rows), header=columns)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    if isinstance(value, bool):
        return "да" if value else "нет"
    return value  # numbers stay numbers, dates ISO, None empty (agency.exports)


def access_archive_build(*, customer: Customer, request: DataSubjectRequest | None = None) -> bytes:
    """A ZIP of everything held about the person: ``data.json`` with every section, one CSV per
    section, and a README in Russian naming the operator and the files."""
    client = customer.client
    generated = timezone.localtime(timezone.now(), client.tzinfo)
    sections = access_archive_sections(customer=customer)
    document = {
        "generated_at": generated.isoformat(),
        "operator": {"name": client.legal_name or client.name, "inn": client.inn},
        "request_id": request.pk if request is not None else None,
        "sections": {name: rows for name, rows in sections},
    }
    readme = [
        f"Сведения о персональных данных субъекта, которые обрабатывает "
        f"{client.legal_name or client.name}.",
        f"Сформировано: {generated:%d.%m.%Y %H:%M} ({client.time_zone}).",
        "",
        "data.json — все разделы в одном файле; CSV-файлы — те же разделы для Excel:",
    ]
    readme += [
        f"  {name}.csv — {_section_title(name)} (записей: {len(rows)})" for name, rows in sections
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", "\n".join(readme) + "\n")
        archive.writestr(
            "data.json",
            json.dumps(document, ensure_ascii=False, indent=2, default=_json_default),
        )
        for name, rows in sections:
            archive.writestr(f"{name}.csv", _csv_bytes(rows))
    return buffer.getvalue()


def dsr_access_archive(
    *, request: DataSubjectRequest, actor: Any = None, source: str = "admin"
) -> DataSubjectRequest:
    """Build the access archive of the request's person and keep it on the request (replacing an
    earlier one); the request is then in progress until staff confirm it answered
    (:func:`dsr_complete`). Served to staff only through the scoped admin, never as a public
    media URL."""
    _check_open(request)
    if request.kind != Kind.ACCESS:
        raise ConsentError("not_access", _("Архив формируется только по запросу доступа к данным."))
    if request.customer_id is None:
        raise ConsentError("no_subject", _("Сначала укажите субъекта (покупателя) запроса."))
    customer = request.customer
    if customer.erased_at is not None:
        raise ConsentError("subject_erased", _("Данные этого покупателя удалены."))
    content = access_archive_build(customer=customer, request=request)
    old_name = request.archive.name
    storage = request.archive.storage
    name = f"client-{request.client_id}/request-{request.pk}-{secrets.token_hex(8)}.zip"
    request.archive.save(name, ContentFile(content), save=False)
    fields = ["archive"]
    if request.status == Status.RECEIVED:
        request.status = Status.IN_PROGRESS
        fields.append("status")
    with transaction.atomic():
        request.save(update_fields=fields)
        audit_log(
            action="dsr_access_archive_built",
            source=source,
            actor=actor,
            client=request.client_id,
            obj=request,
            details={"bytes": len(content)},
        )
        if old_name:
            transaction.on_commit(lambda: storage.delete(old_name))
    return request


# --------------------------------------------------------------------------------------------
# Erasure

# What the erasure below does to each model consent covers itself (with the registered steps,
# what the coverage test accepts as covered by the erasure).
CORE_ERASURE_MODELS = {
    "clients.Customer": "personal fields cleared, external_id erased-<id>, erased_at set",
    "clients.Event": "properties and UTM tags cleared; type and time kept",
    "clients.Order": "kept whole: no personal data once the customer row is anonymised",
    "consent.ConsentRecord": "append-only evidence kept by law: personal fields blanked "
    "(consent_records_erase), an erasure record appended",
    "consent.ConsentSubjectLink": "append-only proof kept: a random cookie id and the "
    "anonymised row",
    "consent.DataSubjectRequest": "the requests are the operator's evidence; archives deleted",
}

PERSONAL_FIELDS = {
    "email": "",
    "phone": "",
    "first_name": "",
    "last_name": "",
    "city": "",
    "attributes": {},
    "source": "",
    "metrica_client_id": "",
}
EVENT_PERSONAL_FIELDS = {"properties": {}, "utm_source": "", "utm_medium": "", "utm_campaign": ""}


def erased_external_id(customer: Customer) -> str:
    return f"erased-{customer.pk}"


def customer_erase(
    *,
    customer: Customer,
    request: DataSubjectRequest | None = None,
    actor: Any = None,
    source: str = "admin",
) -> Customer:
    """Erase a person's personal data, in one transaction, keeping what aggregates need.

    - Consents: a withdrawal for every purpose still granted (queued messages cancelled, no
      audience keeps the person), then ``consent_records_erase`` blanks the personal fields of
      the person's ledger records and writes the erasure record; the chain still verifies.
    - The customer: contact, name, city, attributes and source cleared, ``erased_at`` set. The
      row stays so that orders keep their customer: aggregate reports (revenue, cohorts, CLV)
      do not change.
    - ``external_id`` becomes ``erased-<id>``. Trade-off: if the client's CRM sends the person
      again under the old id, a new customer is created, with no consents, instead of the
      erased one coming back to life with his old history; the cost is that the two rows are
      never joined again (his old orders stay with the anonymised row, his lifetime value
      restarts). A re-sent order under its old id moves to the new row (orders are keyed by
      their own id).
    - Events: properties and UTM tags cleared (free-form, may hold contacts or page URLs); type
      and time stay. Orders are kept whole: amounts, dates, status and items are no personal data
      once the customer is anonymised.
    - Access archives of the person's requests are deleted (files on commit).
    - The person's ``ConsentSubjectLink`` rows stay: the link table is append-only proof of
      why a cookie subject's banner choices counted for this customer, and its subject id is a
      random pseudonymous cookie id set by our banner, not a contact; the ledger records that
      carried it are blanked, so it only ties a random token to the anonymised row.
    - Django's admin history of the customer loses its label (it showed name or email); the
      agency audit log is append-only and keeps ``erased-<id>`` from now on.
    - ``ERASURE_STEPS`` of later apps (:mod:`consent.hooks`) run last, given the person's
      identifiers as they were (:class:`ErasureSubject`): scores and segment memberships are
      deleted, the person leaves every ad platform at a sync queued now and no stored audience
      snapshot keeps their hashes after it; what each step reports ends the resolution.

    Idempotent: an already erased customer is left alone; a given erasure request is completed.
    """
    client = customer.client
    if request is not None:
        _check_open(request)
        if request.client_id != client.pk or request.customer_id not in (None, customer.pk):
            raise ConsentError("no_subject", _("Запрос относится к другому субъекту."))
        if request.kind != Kind.ERASURE:
            raise ConsentError("not_erasure", _("Удаление выполняется по запросу на удаление."))
    with transaction.atomic():
        customer = Customer.objects.for_client(client).select_for_update().get(pk=customer.pk)
        erased_now = customer.erased_at is None
        reports: dict[str, str] = {}
        if erased_now:
            reports = _erase(customer, request=request)
            audit_log(
                action="customer_erased",
                source=source,
                actor=actor,
                client=client,
                obj=customer,
                details={
                    "request_id": request.pk if request is not None else None,
                    "steps": reports,
                },
            )
        if request is not None:
            if request.customer_id is None:
                request.customer = customer
                request.save(update_fields=["customer"])
            when = timezone.localtime(customer.erased_at, client.tzinfo)
            _dsr_close(
                request,
                status=Status.COMPLETED,
                resolution=(
                    "\n".join(
                        [
                            f"Персональные данные удалены {when:%d.%m.%Y %H:%M}: контакты, имя, "
                            "город, атрибуты, свойства событий, доказательства согласий (IP, "
                            "браузер, страница). Заказы сохранены обезличенными для сводной "
                            "отчётности; запись об удалении — в журнале согласий.",
                            *reports.values(),
                        ]
                    )
                    if erased_now
                    else f"Данные субъекта были удалены ранее ({when:%d.%m.%Y %H:%M})."
                ),
                actor=actor,
                source=source,
            )
    return customer


def _erase(customer: Customer, *, request: DataSubjectRequest | None) -> dict[str, str]:
    """Erase the person (the caller holds the transaction and the customer's row lock); returns
    what the registered steps reported, by ``<app>.<step>``."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    client = customer.client
    now = timezone.now()
    # Taken before the fields are cleared: the steps find what was derived from them.
    subject = ErasureSubject(
        customer=customer,
        email=customer.email,
        phone=customer.phone,
        external_id=customer.external_id,
        at=now,
        request=request,
    )
    reason = f"запрос субъекта #{request.pk}" if request is not None else "удаление данных"
    _withdraw_purposes(
        customer=customer,
        codes=[p for p, s in consent_current_state(customer=customer).items() if s["granted"]],
        at=now,
        details={"request_id": request.pk if request is not None else None, "erasure": True},
    )
    consent_records_erase(client=client, customer=customer, reason=reason)

    Customer.objects.for_client(client).filter(pk=customer.pk).update(
        **PERSONAL_FIELDS,
        external_id=erased_external_id(customer),
        erased_at=now,
        updated_at=now,
    )
    customer.refresh_from_db()
    Event.objects.for_client(client).filter(customer=customer).update(
        **EVENT_PERSONAL_FIELDS, updated_at=now
    )

    archives = DataSubjectRequest.objects.for_client(client).filter(customer=customer)
    names = [n for n in archives.exclude(archive="").values_list("archive", flat=True) if n]
    if names:
        archives.filter(archive__in=names).update(archive="")
        storage = DataSubjectRequest._meta.get_field("archive").storage
        transaction.on_commit(lambda: [storage.delete(name) for name in names])

    LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Customer), object_id=str(customer.pk)
    ).update(object_repr=erased_external_id(customer))

    # Highest app first: apps register in INSTALLED_APPS order, lowest layer first, so each step
    # still sees what its data was derived from (audiences read segment memberships to find
    # the audiences that hold the person, before the segments step deletes them).
    reports = {}
    for step in reversed(ERASURE_STEPS):
        report = step.run(subject)
        if report:
            reports[f"{step.app}.{step.name}"] = report
    return reports


__all__ = [
    "ACCESS_ARCHIVE_SECTIONS",
    "CORE_ARCHIVE_MODELS",
    "CORE_ERASURE_MODELS",
    "DEADLINES",
    "ERASURE_STEPS",
    "WITHDRAWAL_PURPOSES",
    "Deadline",
    "access_archive_build",
    "access_archive_sections",
    "customer_erase",
    "customers_not_erased",
    "dsr_access_archive",
    "dsr_complete",
    "dsr_create",
    "dsr_due_date",
    "dsr_open",
    "dsr_overdue",
    "dsr_reject",
    "dsr_subject_set",
    "dsr_working_days_left",
]
