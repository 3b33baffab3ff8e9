"""Writes of the consent ledger: append (grant, withdraw), publish texts, erase, verify.

Every consent record goes through :func:`consent_record_append`, which chains it to the previous
record of the same client with a SHA-256, so that the ledger is tamper-evident.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from agency.audit import audit_log
from agency.errors import ServiceError

from .hooks import WITHDRAWAL_HOOKS
from .models import ConsentPurpose, ConsentRecord, ConsentSubjectLink, ConsentText

CHAIN_LOCK_NAMESPACE = 152  # pg_advisory_xact_lock(152, client_id): one chain writer per client


_PURPOSES: dict[str, ConsentPurpose] = {}


class ConsentError(ServiceError, ValueError):
    """A consent operation refused by a rule; the message says which. The request was well
    formed but the ledger's rules refuse it: 422."""

    status = 422


# --------------------------------------------------------------------------------------------
# Texts


def consent_text_missing_parts(text: ConsentText) -> list[str]:
    """Verbose names of the parts 152-FZ requires that the text lacks."""
    return [
        str(ConsentText._meta.get_field(name).verbose_name)
        for name in ConsentText.REQUIRED_PARTS
        if not (getattr(text, name) or "").strip()
    ]


def consent_text_create(*, client, purpose_code: str, **fields: Any) -> ConsentText:
    """A new draft version (the next number for this client and purpose)."""
    purpose = consent_purpose_get(purpose_code)
    with transaction.atomic():
        last = (
            ConsentText.objects.for_client(client)
            .filter(purpose=purpose)
            .select_for_update()
            .order_by("-version")
            .first()
        )
        return ConsentText.objects.create(
            client=client, purpose=purpose, version=(last.version + 1) if last else 1, **fields
        )


def consent_text_publish(
    *, text: ConsentText, actor: Any = None, source: str = "admin"
) -> ConsentText:
    """Publish a draft; refused, naming the parts, when a required part is missing."""
    if text.is_published:
        return text
    missing = consent_text_missing_parts(text)
    if missing:
        raise ConsentError(
            "consent_text_incomplete",
            "Текст нельзя опубликовать: не заполнено — " + ", ".join(missing) + ".",
        )
    now = timezone.now()
    ConsentText.objects.for_client(text.client_id).filter(
        pk=text.pk, status=ConsentText.Status.DRAFT
    ).update(status=ConsentText.Status.PUBLISHED, published_at=now)
    text.refresh_from_db()
    audit_log(
        action="consent_text_published", source=source, actor=actor, client=text.client_id, obj=text
    )
    return text


def consent_purpose_get(code: str) -> ConsentPurpose:
    """A purpose by code; purposes are seeded reference data, cached per process."""
    cached = _PURPOSES.get(code)
    if cached is not None:
        return cached
    try:
        _PURPOSES[code] = purpose = ConsentPurpose.objects.get(code=code)
        return purpose
    except ConsentPurpose.DoesNotExist as exc:
        codes = ", ".join(ConsentPurpose.objects.values_list("code", flat=True))
        raise ConsentError("unknown_purpose", f"Неизвестная цель {code!r}; есть: {codes}.") from exc


def latest_published_text(*, client, purpose: ConsentPurpose) -> ConsentText | None:
    return (
        ConsentText.objects.for_client(client)
        .filter(purpose=purpose, status=ConsentText.Status.PUBLISHED)
        .order_by("-version")
        .first()
    )


# --------------------------------------------------------------------------------------------
# The chain


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def consent_record_hash(record: ConsentRecord, prev_hash: str) -> str:
    """SHA-256 over the record's content and the previous record's hash."""
    content = {
        "client": record.client_id,
        "customer": record.customer_id,
        "subject": record.subject_id,
        "purpose": record.purpose_id,
        "text": record.text_id,
        "action": record.action,
        "at": _canonical(record.at),
        "source": record.source,
        "ip": record.ip,
        "user_agent": record.user_agent,
        "url": record.url,
        "form_id": record.form_id,
        "details": record.details,
        "recorded_at": _canonical(record.recorded_at),
        "prev": prev_hash,
    }
    payload = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _lock_chain(client_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [CHAIN_LOCK_NAMESPACE, client_id]
            )


def _append(record: ConsentRecord) -> ConsentRecord:
    """Chain and save one record (the caller holds a transaction)."""
    return _append_many([record])[0]


def _append_many(records: list[ConsentRecord]) -> list[ConsentRecord]:
    """Chain and save records of one client in order: one lock, one read of the chain's end,
    one INSERT (the caller holds a transaction)."""
    if not records:
        return records
    client_id = records[0].client_id
    if any(r.client_id != client_id for r in records):
        raise ValueError("one client's records at a time")
    _lock_chain(client_id)
    last = ConsentRecord.objects.for_client(client_id).order_by("-id").values("hash").first()
    prev_hash = last["hash"] if last else ""
    now = timezone.now()
    ip_field = ConsentRecord._meta.get_field("ip")
    for record in records:
        # Stored exactly as the database will return it, so the hash recomputes.
        record.ip = ip_field.get_prep_value(record.ip) or None
        record.prev_hash = prev_hash
        record.recorded_at = now
        record.hash = prev_hash = consent_record_hash(record, prev_hash)
    return ConsentRecord.objects.bulk_create(records)


@dataclass(frozen=True)
class Evidence:
    """Proof of how a consent was given or withdrawn."""

    ip: str | None = None
    user_agent: str = ""
    url: str = ""
    form_id: str = ""

    @classmethod
    def from_request(cls, request: Any, *, url: str = "", form_id: str = "") -> Evidence:
        meta = request.META
        return cls(
            ip=meta.get("REMOTE_ADDR") or None,
            user_agent=(meta.get("HTTP_USER_AGENT") or "")[:500],
            url=(url or meta.get("HTTP_REFERER") or "")[:1000],
            form_id=form_id[:200],
        )


def consent_record_append(**fields: Any) -> ConsentRecord:
    """Record a grant or a withdrawal for one subject and purpose (see consent_record_build)."""
    return consent_records_save([consent_record_build(**fields)])[0]


def consent_records_save(records: list[ConsentRecord]) -> list[ConsentRecord]:
    """Append records built by :func:`consent_record_build` (one client) in one transaction;
    withdrawals take effect at once."""
    with transaction.atomic():
        saved = _append_many(records)
        withdrawn = [
            record
            for record in saved
            if record.action == ConsentRecord.Action.WITHDRAWN and record.customer_id
        ]
        if withdrawn:
            _on_withdrawals(withdrawn)
    return saved


def consent_record_build(
    *,
    client,
    purpose_code: str,
    action: str,
    source: str,
    customer=None,
    subject_id: str = "",
    text: ConsentText | None = None,
    at: datetime | None = None,
    evidence: Evidence | None = None,
    details: dict | None = None,
) -> ConsentRecord:
    """Check and build (not save) a grant or withdrawal for one subject and purpose.

    A grant must point at a published text of this client for this purpose (the latest one when
    none is given): a consent whose wording cannot be shown is no proof.
    """
    if action not in (ConsentRecord.Action.GRANTED, ConsentRecord.Action.WITHDRAWN):
        raise ConsentError("invalid_action", "Действие: granted или withdrawn.")
    if customer is None and not subject_id:
        raise ConsentError("no_subject", "Нужен покупатель или id cookie-субъекта.")
    if customer is not None and customer.client_id != client.pk:
        raise ConsentError("no_subject", "Покупатель не найден.")
    if source not in ConsentRecord.Source.values:
        raise ConsentError("invalid_source", f"Источник: {', '.join(ConsentRecord.Source.values)}.")
    purpose = consent_purpose_get(purpose_code)
    if text is None:
        text = latest_published_text(client=client, purpose=purpose)
    elif text.client_id != client.pk or text.purpose_id != purpose.pk or not text.is_published:
        raise ConsentError("invalid_text", "Версия текста не опубликована для этой цели.")
    if action == ConsentRecord.Action.GRANTED and text is None:
        raise ConsentError(
            "no_published_text",
            f"Нет опубликованного текста согласия для цели {purpose.code}: согласие не доказуемо.",
        )
    now = timezone.now()
    if at is not None and at > now + timedelta(minutes=5):
        raise ConsentError("future_time", "Время согласия в будущем.")
    evidence = evidence or Evidence()
    return ConsentRecord(
        client=client,
        customer=customer,
        subject_id=subject_id[:64],
        purpose=purpose,
        text=text,
        action=action,
        at=at or now,
        source=source,
        ip=evidence.ip,
        user_agent=(evidence.user_agent or "")[:500],
        url=(evidence.url or "")[:1000],
        form_id=(evidence.form_id or "")[:200],
        details=details or {},
    )


def _on_withdrawals(records: list[ConsentRecord]) -> None:
    """Withdrawal takes effect at once: the withdrawal hooks registered by later apps run here
    (``consent.hooks.WITHDRAWAL_HOOKS``: campaigns will cancel queued messages of the purpose;
    audiences ask for a sync of the audiences that may hold the person), per person, or once per
    purpose for the whole batch when the hook takes batches (``run_many``)."""
    by_purpose: dict[int, tuple[ConsentPurpose, list]] = {}
    for record in records:
        by_purpose.setdefault(record.purpose_id, (record.purpose, []))[1].append(record.customer)
    for hook in WITHDRAWAL_HOOKS:
        for purpose, customers in by_purpose.values():
            if hook.run_many is not None:
                hook.run_many(customers=customers, purpose=purpose)
                continue
            for customer in customers:
                hook.run(customer=customer, purpose=purpose)


def consent_subject_link(*, client, subject_id: str, customer, source: str = "") -> None:
    """Recognise an anonymous cookie subject as a customer; their banner choices become his."""
    ConsentSubjectLink.objects.get_or_create(
        client=client, subject_id=subject_id, customer=customer, defaults={"source": source}
    )


# --------------------------------------------------------------------------------------------
# Erasure and verification

ERASED_FIELDS = {"ip": None, "user_agent": "", "url": "", "form_id": "", "subject_id": ""}


def consent_records_erase(*, client, customer, reason: str = "") -> ConsentRecord | None:
    """Blank the personal fields of a person's records, keeping their hashes, and write an
    erasure record that names them (the verifier accepts an erased record only then)."""
    from .selectors import subject_ids_of

    with transaction.atomic():
        subjects = subject_ids_of(customer=customer)
        records = ConsentRecord.objects.for_client(client).filter(
            models.Q(customer=customer) | models.Q(subject_id__in=subjects),
            erased_at__isnull=True,
        )
        ids = sorted(
            records.exclude(action=ConsentRecord.Action.ERASURE).values_list("pk", flat=True)
        )
        if not ids:
            return None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL cvm.consent_erasure = 'on'")
        now = timezone.now()
        # The one sanctioned UPDATE of the ledger (the PostgreSQL trigger checks its shape).
        models.QuerySet.update(
            ConsentRecord.objects.for_client(client).filter(pk__in=ids),
            erased_at=now,
            details={},
            **ERASED_FIELDS,
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL cvm.consent_erasure = 'off'")
        return _append(
            ConsentRecord(
                client=client,
                customer=customer,
                action=ConsentRecord.Action.ERASURE,
                at=now,
                source=ConsentRecord.Source.SUBJECT_REQUEST,
                details={"erased_record_ids": ids, "reason": reason[:500]},
            )
        )


@dataclass
class ChainCheck:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str = ""


def consent_log_verify(*, client) -> ChainCheck:
    """Recompute the chain of one client; name the first record that does not fit."""
    records = ConsentRecord.objects.for_client(client).order_by("id")
    named_erased: set[int] = set()
    for details in records.filter(action=ConsentRecord.Action.ERASURE).values_list(
        "details", flat=True
    ):
        named_erased.update(details.get("erased_record_ids", []))
    prev_hash = ""
    checked = 0
    for record in records.iterator(chunk_size=2000):
        checked += 1
        if record.prev_hash != prev_hash:
            return ChainCheck(
                False, checked, record.pk, "разорвана цепочка: prev_hash не совпадает"
            )
        if record.erased_at is not None:
            if record.pk not in named_erased:
                return ChainCheck(
                    False, checked, record.pk, "поля удалены, но записи об удалении нет"
                )
        elif consent_record_hash(record, prev_hash) != record.hash:
            return ChainCheck(False, checked, record.pk, "содержимое изменено: хеш не совпадает")
        prev_hash = record.hash
    return ChainCheck(True, checked)
