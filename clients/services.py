"""Writes and business rules of the clients app; every entry point (admin, API, CLI) calls these."""

from __future__ import annotations

import io
import logging
import re
import secrets
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Case, CharField, Exists, F, OuterRef, Value, When
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext, gettext_lazy, ngettext

from agency.audit import audit_log
from agency.crypto import CredentialsUnreadable, secret_decrypt, secret_encrypt, secret_rotate
from agency.errors import ServiceError
from agency.exports import CsvWriter
from agency.jobs import JobLost, enqueue_after_commit, job_audit_source
from agency.parsers import parse_moment, printable
from agency.recovery import job_recover
from integrations.bitrix24.client import (
    Bitrix24Client,
    Bitrix24UrlInvalid,
    is_not_found,
    rest_webhook_parse,
)
from integrations.bitrix24.formats import (
    BITRIX24_PREFIX,
    bitrix24_contact_record,
    bitrix24_deal_record,
)
from integrations.crm.forms import skipped as skipped_entry
from integrations.http import PlatformError, PlatformUnavailable

from .ingest import (
    AMOUNT_PATTERN,
    BatchError,
    IngestResult,
    RowError,
    ingest_frames,
    ingest_records,
    read_csv_frames,
)
from .models import ApiKey, Client, CrmDeal, Customer, ImportJob, Order, Tier
from .selectors import API_KEY_PREFIX, api_key_hash

logger = logging.getLogger(__name__)

_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya",
    }
)  # fmt: skip


def client_slug_for(name: str) -> str:
    """A unique latin slug for a client name (Cyrillic transliterated)."""
    base = slugify(name.lower().translate(_TRANSLIT))[:50] or "client"
    slug, n = base, 2
    while Client.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def client_create(
    *,
    name: str,
    tier_code: str,
    slug: str | None = None,
    actor: Any = None,
    source: str = "cli",
    **fields: Any,
) -> Client:
    try:
        tier = Tier.objects.get(code=tier_code)
    except Tier.DoesNotExist as exc:
        codes = ", ".join(Tier.objects.values_list("code", flat=True))
        raise ValueError(f"unknown tier {tier_code!r}; choose one of: {codes}") from exc
    client = Client(
        name=name,
        slug=slug or client_slug_for(name),
        tier=tier,
        webhook_secret=secrets.token_urlsafe(24),
        **fields,
    )
    client.full_clean()
    with transaction.atomic():
        client.save()
        audit_log(action="client_created", source=source, actor=actor, client=client, obj=client)
    return client


def api_key_create(
    *,
    client: Client,
    name: str = "",
    scopes: list[str] | None = None,
    actor: Any = None,
    source: str = "cli",
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored (only its hash)."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            client=client,
            name=name,
            prefix=prefix,
            hashed_secret=api_key_hash(secret),
            scopes=scopes if scopes is not None else [ApiKey.Scope.READ, ApiKey.Scope.WRITE],
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_log(action="api_key_created", source=source, actor=actor, client=client, obj=api_key)
    return api_key, f"{API_KEY_PREFIX}_{prefix}_{secret}"


def api_key_revoke(*, api_key: ApiKey, actor: Any = None, source: str = "admin") -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_log(
            action="api_key_revoked", source=source, actor=actor, client=api_key.client, obj=api_key
        )
    return api_key


# --------------------------------------------------------------------------------------------
# CSV import


class ErrorReport:
    """Rejected rows as CSV (row, field, reason, value), written as they come by the one export
    writer: the rejected values are the uploader's, so a formula among them is neutralised."""

    HEADER = ("row", "field", "reason", "value")

    def __init__(self) -> None:
        self.buffer = io.StringIO(newline="")
        self.writer = CsvWriter(self.buffer, header=self.HEADER)

    @property
    def count(self) -> int:
        return self.writer.rows

    def add(self, error: RowError) -> None:
        self.writer.writerow((error.index, error.field, error.message, error.value))

    def content(self) -> bytes:
        return self.buffer.getvalue().encode("utf-8")  # the BOM is the writer's first character


def csv_import(
    *,
    client: Client,
    kind: str,
    file: Any,
    delimiter: str = ",",
    encoding: str = "utf-8",
    partial: bool = False,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[RowError], None] | None = None,
) -> IngestResult:
    """Stream a CSV file into the client's base (validated, staged, merged in one transaction)."""
    columns, frames = read_csv_frames(file, kind=kind, delimiter=delimiter, encoding=encoding)
    return ingest_frames(
        client=client,
        kind=kind,
        columns=columns,
        frames=frames,
        partial=partial,
        on_error=on_error,
        on_progress=on_progress,
    )


def count_csv_rows(handle: Any) -> int:
    """Data rows of a binary file (lines minus the header), for progress; rewinds the file.
    Quoted newlines may make it overcount slightly."""
    lines = 0
    last = b"\n"
    while chunk := handle.read(1 << 20):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    handle.seek(0)
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def import_job_submit(
    *,
    client: Client,
    kind: str,
    file: Any,
    delimiter: str = ",",
    encoding: str = "utf-8",
    partial: bool = False,
    actor: Any = None,
    source: str,
    ip: str | None = None,
) -> ImportJob:
    """Store an uploaded CSV file as a pending import of the client, audit it and send it to a
    worker after commit (``import_job_run``); the caller shows the job's progress."""
    with transaction.atomic():
        job = ImportJob.objects.create(
            client=client,
            kind=kind,
            file=file,
            delimiter=delimiter,
            encoding=encoding,
            partial=partial,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_log(
            action="csv_import_submitted",
            source=job_audit_source(source),
            actor=actor,
            client=client,
            obj=job,
            details={"kind": kind, "file": job.file.name, "partial": partial},
            ip=ip,
        )
        from .tasks import import_job_run_task

        enqueue_after_commit(import_job_run_task, job.pk)
    return job


def import_job_run(*, job: ImportJob) -> ImportJob:
    """Run an uploaded ImportJob, keeping its progress and error report up to date. A job
    already taken (a second delivery) or finished is left alone; :class:`JobLost` (the job was
    recovered and claimed by another worker meanwhile) stops it with nothing more written."""
    if not job.claim():
        return job
    report = ErrorReport()

    def on_progress(rows: int) -> None:
        # Kept in memory: the job's heartbeat writes it, outside the import's transaction.
        job.rows_processed += rows

    status, fields, lost = ImportJob.Status.FAILED, {}, False
    try:
        with job.beating(), job.file.open("rb") as handle:
            total = count_csv_rows(handle)
            job.progress_write(rows_total=total)
            result = csv_import(
                client=job.client,
                kind=job.kind,
                # The underlying binary file: pandas reads Django's File wrapper as UTF-8 text
                # whatever the encoding.
                file=getattr(handle, "file", handle),
                delimiter=job.delimiter,
                encoding=job.encoding,
                partial=job.partial,
                on_progress=on_progress,
                on_error=report.add,
            )
    except JobLost:
        lost = True
        raise
    except BatchError as exc:
        fields["error_message"] = printable(str(exc))  # the file's own words may hold a NUL
    except Exception as exc:
        fields["error_message"] = printable(f"{type(exc).__name__}: {exc}")
        raise
    else:
        status = ImportJob.Status.SUCCEEDED if result.committed else ImportJob.Status.REJECTED
        fields.update(
            rows_ok=result.ok if result.committed else 0,
            rows_rejected=result.rejected,
            rows_created=result.created,
            rows_updated=result.updated,
        )
        if not result.committed:
            fields["error_message"] = ngettext(
                "%(n)s строка с ошибкой; файл не загружен. Исправьте строки из отчёта или "
                "включите «принять корректные строки».",
                "%(n)s строк с ошибками; файл не загружен. Исправьте строки из отчёта или "
                "включите «принять корректные строки».",
                result.rejected,
            ) % {"n": result.rejected}
    finally:
        if not lost:
            _import_job_end(job, report, status, fields)
    return job


def _import_job_end(job: ImportJob, report: ErrorReport, status: str, fields: dict) -> None:
    """The job's end: its report of rejected rows, its terminal state, the audit entry."""
    if report.count:
        job.error_report.save(
            f"import-{job.pk}-errors.csv", ContentFile(report.content()), save=False
        )
        fields["error_report"] = job.error_report
    job.finish(status, rows_processed=job.rows_processed, **fields)
    audit_log(
        action="csv_import",
        source="admin",
        actor=job.created_by,
        client=job.client_id,
        obj=job,
        details={
            "kind": job.kind,
            "status": job.status,
            "ok": job.rows_ok,
            "rejected": job.rows_rejected,
        },
    )


def import_jobs_recover(*, now=None) -> list[int]:
    """Jobs to send to a worker again: pending ones whose message was lost (a broker restart)
    and running ones whose worker died (no heartbeat; their transaction was rolled back, so a
    rerun starts clean). Returns the ids, now pending again."""
    return job_recover(ImportJob, now=now)


# --------------------------------------------------------------------------------------------
# CRM webhooks: customers, and deals remembered until they can become orders

# pg_advisory_xact_lock(client id, this): one client's CRM hooks take turns, so that a contact
# hook and a deal hook arriving together cannot each miss the half the other is writing.
# (clients.ingest locks (client id, 0..2) for its kinds.)
CRM_WEBHOOK_LOCK_KEY = 1000
_DEAL_ENTITY = {CrmDeal.Crm.BITRIX24: "deal", CrmDeal.Crm.AMOCRM: "lead"}
_STAGE_LABEL = {CrmDeal.Crm.BITRIX24: gettext_lazy("стадия"), CrmDeal.Crm.AMOCRM: "status_id"}
_WAITING_FOR_CONTACT = {
    CrmDeal.Crm.BITRIX24: gettext_lazy(
        "ждём контакт сделки: у сделки нет контакта (CONTACT_ID); заказ "
        "появится, когда сделка придёт с контактом"
    ),
    CrmDeal.Crm.AMOCRM: gettext_lazy(
        "ждём контакт сделки: нет связанного контакта (amoCRM не передаёт его в "
        "событии сделки); заказ появится с событием контакта, связанного со сделкой — включите в "
        "вебхуке события контактов"
    ),
}
# Digits 0-9 only (re's \d and Decimal also read "١٢٣"), as many as the order amount holds.
_AMOUNT_RE = re.compile(AMOUNT_PATTERN.removeprefix("-?"))


def _ingest_reply(result: IngestResult | None, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and row errors of one kind, each error named by the record's external id."""
    if result is None:
        return {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0, "errors": []}
    errors = []
    for error in result.errors:
        record = records[error.index] if 0 <= error.index < len(records) else {}
        errors.append(
            {
                "external_id": record.get("external_id", ""),
                "field": error.field,
                "reason": error.message,
                "value": error.value,
            }
        )
    return {
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "rejected": result.rejected,
        "errors": errors,
    }


def _crm_id(value: Any) -> str | None:
    """A CRM's id as text; empty, "0" (Bitrix24's "none") or longer than the model allows: None."""
    text = str(value).strip() if value is not None else ""
    if text in ("", "0") or len(text) > CrmDeal.ID_MAX_LENGTH:
        return None
    return text


def _crm_amount(value: Any) -> Decimal | None:
    text = re.sub(r"[\s\u00a0]", "", str(value)).replace(",", ".")
    return Decimal(text) if _AMOUNT_RE.fullmatch(text) else None


def _crm_datetime(value: Any, tz: zoneinfo.ZoneInfo) -> datetime | None:
    """ISO 8601 (a date alone is its midnight); a time without offset is in the client's zone.
    Impossible dates (month 13), offsets beyond ±15:59 and garbage: None."""
    try:
        moment = parse_moment(str(value), tz)
    except ValueError:
        return None
    if not 1900 <= moment.year <= 2200:  # not a deal's date
        return None
    return moment


def _crm_deal_fields(fact: dict[str, Any], tz: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """A mapped deal (text values, absent = not sent) -> model fields to set."""
    fields: dict[str, Any] = {}
    if fact.get("status") in CrmDeal.Status.values:
        fields["status"] = fact["status"]
    if "stage" in fact:
        fields["stage"] = str(fact["stage"])[:100]
    contact_id = _crm_id(fact.get("contact_id"))
    if contact_id:  # the deal's own contact field: it replaces a contact known from a link
        fields["contact_id"] = contact_id
    if "amount" in fact:
        fields["amount"] = _crm_amount(fact["amount"])
    if "currency" in fact:
        fields["currency"] = str(fact["currency"]).upper()[:16]
    for name in ("closed_at", "created_at"):
        if name in fact:
            fields[name] = _crm_datetime(fact[name], tz)
    return fields


def crm_deals_record(
    *, client: Client, crm: str, deals: list[dict[str, Any]], now: datetime
) -> tuple[list[str], list[dict[str, str]]]:
    """Upsert the deals a deal/lead hook described: status, stage, amount, dates, and the contact
    when the deal names it. Fields the hook did not send keep their stored values.

    Returns the ids of the deals recorded (in order) and skip entries for unusable ids.
    """
    recorded: list[str] = []
    skipped: list[dict[str, str]] = []
    deals_of_client = CrmDeal.objects.for_client(client)
    for fact in deals:
        deal_id = _crm_id(fact.get("deal_id"))
        if deal_id is None:
            skipped.append(
                {
                    "entity": _DEAL_ENTITY[crm],
                    "id": str(fact.get("deal_id", ""))[:100],
                    "reason": gettext("нет id сделки или он длиннее %(max)s символов")
                    % {"max": CrmDeal.ID_MAX_LENGTH},
                }
            )
            continue
        deals_of_client.update_or_create(
            client=client,
            crm=crm,
            deal_id=deal_id,
            defaults={**_crm_deal_fields(fact, client.tzinfo), "last_payload_at": now},
        )
        if deal_id not in recorded:
            recorded.append(deal_id)
    return recorded, skipped


def crm_deal_links_record(
    *, client: Client, crm: str, links: list[dict[str, Any]], now: datetime
) -> list[str]:
    """Remember deal -> contact links a contact hook carried (amoCRM ``linked_leads_id``).

    A deal not seen yet is recorded as open with its contact. The first contact linked to a
    deal stays: a lead with several contacts must not move between customers with every contact
    hook; the deal's own contact field (``main_contact_id``, ``CONTACT_ID``) still replaces it.
    Returns the ids of the deals linked (in order).
    """
    linked: list[str] = []
    deals_of_client = CrmDeal.objects.for_client(client)
    for link in links:
        deal_id, contact_id = _crm_id(link.get("deal_id")), _crm_id(link.get("contact_id"))
        if deal_id is None or contact_id is None:
            continue
        deal, created = deals_of_client.get_or_create(
            client=client,
            crm=crm,
            deal_id=deal_id,
            defaults={"contact_id": contact_id, "last_payload_at": now},
        )
        if not created:
            update_fields = ["last_payload_at"]
            deal.last_payload_at = now
            if deal.contact_id is None:
                deal.contact_id = contact_id
                update_fields.append("contact_id")
            deal.save(update_fields=update_fields)
        if deal_id not in linked:
            linked.append(deal_id)
    return linked


def _crm_deal_order(deal: CrmDeal) -> dict[str, Any]:
    placed_at = deal.closed_at or deal.created_at
    return {
        "external_id": deal.external_id,
        "customer_external_id": deal.customer_external_id,
        "placed_at": placed_at.isoformat(),
        "amount": str(deal.amount),
        "status": Order.Status.PAID,
        "channel": deal.crm,
    }


def _crm_deal_cancellation(deal: CrmDeal, paid: dict[str, Any]) -> dict[str, Any]:
    """The paid order of a lost deal, cancelled: same customer and date."""
    return {
        "external_id": deal.external_id,
        "customer_external_id": paid["customer__external_id"],
        "placed_at": paid["placed_at"].isoformat(),
        "amount": str(deal.amount if deal.amount is not None else paid["amount"]),
        "status": Order.Status.CANCELLED,
        "channel": deal.crm,
    }


def _crm_won_deal_problem(deal: CrmDeal, customers: set[str]) -> str:
    """Why a won deal cannot be an order now ("" when it can)."""
    if deal.currency not in ("", "RUB"):
        return gettext("валюта %(currency)s: суммы заказов хранятся в рублях") % {
            "currency": deal.currency
        }
    if deal.customer_external_id is None:
        return str(_WAITING_FOR_CONTACT[deal.crm])
    if deal.customer_external_id not in customers:
        return gettext(
            "ждём контакт сделки: контакта %(contact)s ещё нет среди покупателей "
            "(%(customer)s); заказ появится с событием этого контакта"
        ) % {"contact": deal.contact_id, "customer": deal.customer_external_id}
    if deal.amount is None:
        return gettext("нет суммы сделки (или она не читается)")
    if deal.closed_at is None and deal.created_at is None:
        return gettext("нет даты сделки: ни даты закрытия, ни даты создания (или они не читаются)")
    return ""


def _crm_waiting_won_deals(client: Client) -> list[CrmDeal]:
    """Won deals without an order whose contact is now a customer: one query over the partial
    index of waiting deals (normally a handful), each looked up in the customers' unique index."""
    customer_external_id = Case(
        *(
            When(crm=crm, then=Concat(Value(prefix), F("contact_id")))
            for crm, prefix in CrmDeal.EXTERNAL_ID_PREFIXES.items()
        ),
        output_field=CharField(),
    )
    customers = Customer.objects.for_client(client).filter(
        external_id=OuterRef("customer_external_id")
    )
    return list(
        CrmDeal.objects.for_client(client)
        .filter(status=CrmDeal.Status.WON, order_external_id__isnull=True, contact_id__isnull=False)
        .alias(customer_external_id=customer_external_id)
        .filter(Exists(customers))
    )


@dataclass
class CrmDealsConversion:
    """What :func:`crm_deals_convert` wrote, and the hook's deals that are not orders."""

    orders: list[dict[str, Any]]  # the order records written (or rejected)
    result: IngestResult | None
    skipped: list[dict[str, str]]  # the hook's deals that are not orders, with the reason


def crm_deals_convert(
    *, client: Client, crm: str, hooked: Sequence[str] = (), linked: Sequence[str] = ()
) -> CrmDealsConversion:
    """Orders from CRM deals, through the one ingestion pipeline.

    - Any won deal of the client without an order whose contact is a customer becomes a paid
      order (``amo-<lead id>`` / ``b24-<ID>``), whichever of its hooks came first.
    - A won deal this hook described is written again, so that the order follows the CRM's
      amount and date (an upsert: a replay creates nothing).
    - A lost deal this hook described cancels its order if a paid one exists; a deal lost
      without ever being paid is no order at all.

    ``hooked``: ids of ``crm`` deals a deal hook described; ``linked``: ids a contact hook
    linked. Their reasons are stored on the deals and returned for the reply.
    """
    mentioned = list(dict.fromkeys([*hooked, *linked]))
    hooked_ids = set(hooked)
    deals = {
        deal.pk: deal
        for deal in CrmDeal.objects.for_client(client).filter(crm=crm, deal_id__in=mentioned)
    }
    for deal in _crm_waiting_won_deals(client):
        deals.setdefault(deal.pk, deal)
    wanted_customers = {d.customer_external_id for d in deals.values() if d.contact_id}
    customers = set(
        Customer.objects.for_client(client)
        .filter(external_id__in=wanted_customers)
        .values_list("external_id", flat=True)
    )
    existing_orders = {
        row["external_id"]: row
        for row in Order.objects.for_client(client)
        .filter(external_id__in=[d.external_id for d in deals.values()])
        .values("external_id", "status", "placed_at", "amount", "customer__external_id")
    }

    orders: list[dict[str, Any]] = []
    order_deals: list[CrmDeal] = []
    reasons: dict[int, str] = {}
    for deal in deals.values():
        existing = existing_orders.get(deal.external_id)
        is_hooked = deal.crm == crm and deal.deal_id in hooked_ids
        reason = ""
        if deal.status == CrmDeal.Status.WON:
            reason = _crm_won_deal_problem(deal, customers)
            if not reason and (existing is None or is_hooked):
                orders.append(_crm_deal_order(deal))
                order_deals.append(deal)
        elif deal.status == CrmDeal.Status.LOST:
            if existing is None:
                stage = f"{_STAGE_LABEL[deal.crm]} {deal.stage or '—'}"
                reason = gettext("сделка проиграна (%(stage)s) и не была оплачена: не заказ") % {
                    "stage": stage
                }
            elif existing["status"] == Order.Status.PAID and is_hooked:
                orders.append(_crm_deal_cancellation(deal, existing))
                order_deals.append(deal)
        elif deal.stage:
            reason = gettext("сделка не закрыта (%(stage)s): ещё не заказ") % {
                "stage": f"{_STAGE_LABEL[deal.crm]} {deal.stage}"
            }
        else:
            reason = gettext(
                "ждём событие сделки: её статус ещё неизвестен, известна только связь с контактом"
            )
        reasons[deal.pk] = reason[:500]

    result = None
    have_orders = set(existing_orders)
    if orders:
        result = ingest_records(client=client, kind="orders", records=orders, partial=True)
        rejected: dict[int, str] = {}
        for error in result.errors:
            rejected.setdefault(
                error.index,
                gettext("заказ не принят: %(field)s: %(reason)s")
                % {"field": error.field, "reason": error.message},
            )
        for row, deal in enumerate(order_deals):
            if row in rejected:
                reasons[deal.pk] = rejected[row][:500]
            else:
                have_orders.add(deal.external_id)

    for deal in deals.values():
        update_fields = []
        if deal.order_external_id is None and deal.external_id in have_orders:
            deal.order_external_id = deal.external_id
            update_fields.append("order_external_id")
        if deal.skipped_reason != reasons[deal.pk]:
            deal.skipped_reason = reasons[deal.pk]
            update_fields.append("skipped_reason")
        if update_fields:
            deal.save(update_fields=update_fields)

    by_id = {deal.deal_id: deal for deal in deals.values() if deal.crm == crm}
    skipped = [
        {"entity": _DEAL_ENTITY[crm], "id": deal_id, "reason": by_id[deal_id].skipped_reason}
        for deal_id in mentioned
        if deal_id in by_id and by_id[deal_id].skipped_reason
    ]
    return CrmDealsConversion(orders=orders, result=result, skipped=skipped)


def crm_webhook_ingest(
    *,
    client: Client,
    crm: str,
    records: dict[str, list[dict[str, Any]]],
    event: str = "",
    ip: str | None = None,
) -> dict[str, Any]:
    """Write one CRM webhook and audit it; the reply lists what did not become data and why.

    ``records`` is what ``clients.webhooks`` mapped: ``customers`` (ingestion records),
    ``deals`` (deal fields as text: deal_id, status open|won|lost, stage, contact_id, amount,
    currency, closed_at, created_at; absent = not sent), ``links`` (deal_id, contact_id) and
    ``skipped`` (entries the mapping already refused) and, from Bitrix24, ``fetch`` (contacts
    and deals the event names by ID only). Customers are written first, then the deals and
    links are remembered, then every deal that now can be becomes an order
    (:func:`crm_deals_convert`). Each ``fetch`` entry is read through the client's Bitrix24
    REST webhook by a task sent after the commit (:func:`crm_bitrix24_fetch`), so the CRM gets
    its answer at once; without a REST webhook it is skipped, and the reply says how to connect.

    One transaction: the reply, the audit entry and the data agree, and a failure leaves
    nothing half-written for the CRM's retry (which is idempotent: upserts by external id).
    """
    if crm not in CrmDeal.Crm.values:
        raise ValueError(f"unknown CRM {crm!r}")
    customers = records.get("customers", [])
    skipped = list(records.get("skipped", []))
    fetch = list(records.get("fetch", []))
    fetching: list[dict[str, str]] = []
    if fetch and (crm != CrmDeal.Crm.BITRIX24 or not client.bitrix24_rest_encrypted):
        skipped += [
            skipped_entry(item["entity"], item["id"], _fetch_unavailable_reason(item["entity"]))
            for item in fetch
        ]
        fetch = []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", [client.pk, CRM_WEBHOOK_LOCK_KEY]
                )
        customers_result = None
        if customers:
            customers_result = ingest_records(
                client=client, kind="customers", records=customers, partial=True
            )
        now = timezone.now()
        hooked, bad_deals = crm_deals_record(
            client=client, crm=crm, deals=records.get("deals", []), now=now
        )
        linked = crm_deal_links_record(
            client=client, crm=crm, links=records.get("links", []), now=now
        )
        conversion = crm_deals_convert(client=client, crm=crm, hooked=hooked, linked=linked)
        skipped += bad_deals + conversion.skipped
        if fetch:
            from .tasks import crm_bitrix24_fetch_task

            for item in fetch:
                enqueue_after_commit(
                    crm_bitrix24_fetch_task, client.pk, item["entity"], item["id"], event
                )
                fetching.append({"entity": item["entity"], "id": item["id"]})
        reply = {
            "customers": _ingest_reply(customers_result, customers),
            "orders": _ingest_reply(conversion.result, conversion.orders),
            "skipped": skipped,
            "fetching": fetching,
        }
        audit_log(
            action="crm_webhook",
            source="webhook",
            actor_label=crm,
            client=client,
            details={
                "event": event,
                **{
                    kind: {k: reply[kind][k] for k in ("created", "updated", "rejected")}
                    for kind in ("customers", "orders")
                },
                "deals": len(dict.fromkeys([*hooked, *linked])),
                "skipped": len(skipped),
                # What did not become data and why (the first few): a background fetch has no
                # one to reply to, so this is where its refusals are seen.
                "skipped_reasons": [f"{s['entity']} {s['id']}: {s['reason']}" for s in skipped[:5]],
                "fetching": len(fetching),
            },
            ip=ip,
        )
    return reply


# --------------------------------------------------------------------------------------------
# Bitrix24 REST: reading the contacts and deals its outbound webhooks name by ID


class Bitrix24WebhookInvalid(ServiceError):
    """Not the URL of a Bitrix24 cloud inbound webhook (the message says why)."""

    default_code = "invalid_bitrix24_webhook"


_B24_METHOD = {"contact": "crm.contact.get", "deal": "crm.deal.get"}
_B24_ENTITY_WORD = {"contact": gettext_lazy("контакта"), "deal": gettext_lazy("сделки")}


def _fetch_unavailable_reason(entity: str) -> str:
    method = _B24_METHOD.get(entity, "crm.*.get")
    return gettext(
        "в событии только ID %(entity)s, без полей; чтобы платформа прочитала их (%(method)s), "
        "укажите в настройках клиента входящий вебхук Битрикс24"
    ) % {"entity": _B24_ENTITY_WORD.get(entity, ""), "method": method}


def client_bitrix24_rest_set(
    *, client: Client, url: str, actor: Any = None, source: str = "admin", ip: str | None = None
) -> Client:
    """Store the client's Bitrix24 inbound-webhook URL encrypted (``agency.crypto``), or forget
    it (an empty ``url``). Only a Bitrix24 cloud portal over HTTPS is accepted
    (``integrations.bitrix24.client.rest_webhook_parse``): the host is not the tenant's to
    choose. The audit entry names the portal, never the token."""
    url = (url or "").strip()
    portal = None
    if url:
        try:
            webhook = rest_webhook_parse(url)
        except Bitrix24UrlInvalid as exc:
            raise Bitrix24WebhookInvalid(message=str(exc), field="bitrix24_rest_url") from exc
        client.bitrix24_rest_encrypted = secret_encrypt({"url": webhook.url})
        portal = webhook.host
    else:
        client.bitrix24_rest_encrypted = ""
    with transaction.atomic():
        client.save(update_fields=["bitrix24_rest_encrypted"])
        audit_log(
            action="client_bitrix24_webhook_set",
            source=source,
            actor=actor,
            client=client,
            obj=client,
            details={"portal": portal},
            ip=ip,
        )
    return client


def client_bitrix24_rest_url(client: Client) -> str:
    """The client's Bitrix24 inbound-webhook URL, decrypted ("" when none is set)."""
    if not client.bitrix24_rest_encrypted:
        return ""
    return str(secret_decrypt(client.bitrix24_rest_encrypted).get("url", ""))


def client_bitrix24_portal(client: Client) -> str:
    """The portal host of the client's REST webhook, for display ("" when none is set)."""
    try:
        url = client_bitrix24_rest_url(client)
        return rest_webhook_parse(url).host if url else ""
    except (CredentialsUnreadable, Bitrix24UrlInvalid):
        return "?"


def client_credentials_rotate() -> int:
    """Re-encrypt every client's CRM credentials with the newest key; returns how many."""
    count = 0
    for client in Client.objects.exclude(bitrix24_rest_encrypted=""):
        Client.objects.filter(pk=client.pk).update(
            bitrix24_rest_encrypted=secret_rotate(client.bitrix24_rest_encrypted)
        )
        count += 1
    return count


def crm_bitrix24_fetch(
    *,
    client: Client,
    entity: str,
    entity_id: str,
    event: str = "",
    http_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read a contact or deal that a Bitrix24 webhook named by ID (``crm.contact.get`` /
    ``crm.deal.get`` through the client's REST webhook) and write it as that webhook would
    have (:func:`crm_webhook_ingest`, audited). A deal whose contact is not a customer yet
    brings the contact too, so a won deal does not wait for a contact hook that may never come.

    Safe to repeat (upserts by external id; it reads the CRM's current state). What Bitrix24
    refuses (no such entity, credentials revoked) is skipped with its words; 429/5xx/timeouts
    that outlast the client's retries raise ``PlatformUnavailable`` for the task to retry.
    """
    if entity not in _B24_METHOD:
        raise ValueError(f"unknown Bitrix24 entity {entity!r}")
    records: dict[str, list[dict[str, Any]]] = {
        "customers": [],
        "deals": [],
        "links": [],
        "skipped": [],
    }
    url = client_bitrix24_rest_url(client)
    if not url:
        records["skipped"].append(
            skipped_entry(entity, entity_id, _fetch_unavailable_reason(entity))
        )
        return crm_webhook_ingest(client=client, crm=CrmDeal.Crm.BITRIX24, records=records)
    with Bitrix24Client(webhook_url=url, **(http_options or {})) as api:
        current, current_id = entity, entity_id
        try:
            if entity == "deal":
                deal = bitrix24_deal_record(api.deal_get(entity_id))
                records["deals"].append(deal)
                contact_id = deal.get("contact_id", "")
                known = Customer.objects.for_client(client).filter(
                    external_id=BITRIX24_PREFIX + contact_id
                )
                if contact_id and not known.exists():
                    current, current_id = "contact", contact_id
                    records["customers"].append(
                        bitrix24_contact_record(api.contact_get(contact_id))
                    )
            else:
                records["customers"].append(bitrix24_contact_record(api.contact_get(entity_id)))
        except PlatformUnavailable:
            raise
        except PlatformError as exc:
            logger.warning(
                "Bitrix24 %s of client %s refused %s %s: %s",
                api.portal,
                client.pk,
                _B24_METHOD[current],
                current_id,
                exc.message,
            )
            what = gettext("нет такого") if is_not_found(exc) else gettext("отказ")
            records["skipped"].append(
                skipped_entry(
                    current,
                    current_id,
                    gettext("Битрикс24 %(portal)s, %(method)s: %(what)s: %(error)s")
                    % {
                        "portal": api.portal,
                        "method": _B24_METHOD[current],
                        "what": what,
                        "error": exc.message,
                    },
                )
            )
    return crm_webhook_ingest(
        client=client,
        crm=CrmDeal.Crm.BITRIX24,
        records=records,
        event=f"{event} {_B24_METHOD[entity]}".strip(),
    )
