"""Writes of the consent ledger: append (grant, withdraw), publish texts, erase, verify.

Every consent record goes through :func:`consent_record_append`, which chains it to the previous
record of the same client with a SHA-256, so that the ledger is tamper-evident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.audit import audit_log, request_ip
from agency.errors import ServiceError

from .checkpoints import CHECKPOINT_ACTION, Checkpoint, consent_checkpoints
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
            _("Текст нельзя опубликовать: не заполнено — %(parts)s.")
            % {"parts": ", ".join(missing)},
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
        message = _("Неизвестная цель %(code)r; есть: %(codes)s.") % {"code": code, "codes": codes}
        raise ConsentError("unknown_purpose", message) from exc


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


def consent_chain_lock(client_id: int) -> None:
    """One writer of a client's chain at a time (appends, erasure, checkpoints), until the
    transaction ends; the caller holds a transaction."""
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
    consent_chain_lock(client_id)
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
            ip=request_ip(request),
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
        raise ConsentError("invalid_action", _("Действие: granted или withdrawn."))
    if customer is None and not subject_id:
        raise ConsentError("no_subject", _("Нужен покупатель или id cookie-субъекта."))
    if customer is not None and customer.client_id != client.pk:
        raise ConsentError("no_subject", _("Покупатель не найден."))
    if source not in ConsentRecord.Source.values:
        sources = ", ".join(ConsentRecord.Source.values)
        raise ConsentError("invalid_source", _("Источник: %(sources)s.") % {"sources": sources})
    purpose = consent_purpose_get(purpose_code)
    if text is None:
        text = latest_published_text(client=client, purpose=purpose)
    elif text.client_id != client.pk or text.purpose_id != purpose.pk or not text.is_published:
        raise ConsentError("invalid_text", _("Версия текста не опубликована для этой цели."))
    if action == ConsentRecord.Action.GRANTED and text is None:
        raise ConsentError(
            "no_published_text",
            _("Нет опубликованного текста согласия для цели %(purpose)s: согласие не доказуемо.")
            % {"purpose": purpose.code},
        )
    now = timezone.now()
    if at is not None and at > now + timedelta(minutes=5):
        raise ConsentError("future_time", _("Время согласия в будущем."))
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


def consent_record_kept_hash(record: ConsentRecord) -> str:
    """SHA-256 over what erasure keeps of a record (who, what, when, how, its chain hashes).

    The erasure record names it for every record it blanks; the blanked record's own hash can
    no longer be recomputed, so this is what shows that nothing kept was rewritten later."""
    content = {
        "id": record.pk,
        "client": record.client_id,
        "customer": record.customer_id,
        "purpose": record.purpose_id,
        "text": record.text_id,
        "action": record.action,
        "at": _canonical(record.at),
        "source": record.source,
        "recorded_at": _canonical(record.recorded_at),
        "prev": record.prev_hash,
        "hash": record.hash,
    }
    payload = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _blank_personal_fields(*, client, ids: list[int]) -> datetime:
    """Blank the personal fields of records not erased yet; returns the erasure time.

    On PostgreSQL only the database function ``consent_record_erase(id)`` may do it (the row
    trigger refuses every other UPDATE, and in production the app's role has no UPDATE on the
    table at all); it refuses a record erased already. SQLite (the embedded first run) has no
    triggers or functions: there the same blanking goes through the ORM."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT max(consent_record_erase(id)) FROM unnest(%s::bigint[]) AS id", [ids]
            )
            return cursor.fetchone()[0]
    now = timezone.now()
    models.QuerySet.update(
        ConsentRecord.objects.for_client(client).filter(pk__in=ids, erased_at__isnull=True),
        erased_at=now,
        details={},
        **ERASED_FIELDS,
    )
    return now


def consent_records_erase(*, client, customer, reason: str = "") -> ConsentRecord | None:
    """Blank the personal fields of a person's records, keeping their hashes, and write an
    erasure record that names them and what each kept (the verifier accepts an erased record
    only then)."""
    from .selectors import subject_ids_of

    with transaction.atomic():
        # Erasures and appends of one client one at a time: a record is blanked once.
        consent_chain_lock(client.pk)
        subjects = subject_ids_of(customer=customer)
        records = list(
            ConsentRecord.objects.for_client(client)
            .filter(
                models.Q(customer=customer) | models.Q(subject_id__in=subjects),
                erased_at__isnull=True,
            )
            .exclude(action=ConsentRecord.Action.ERASURE)
            .order_by("pk")
        )
        if not records:
            return None
        ids = [record.pk for record in records]
        kept = {str(record.pk): consent_record_kept_hash(record) for record in records}
        erased_at = _blank_personal_fields(client=client, ids=ids)
        return _append(
            ConsentRecord(
                client=client,
                customer=customer,
                action=ConsentRecord.Action.ERASURE,
                at=erased_at,
                source=ConsentRecord.Source.SUBJECT_REQUEST,
                details={"erased_record_ids": ids, "kept_hashes": kept, "reason": reason[:500]},
            )
        )


# --------------------------------------------------------------------------------------------
# Checkpoints (consent.checkpoints): the chain anchored outside the ledger's table


def consent_checkpoint_write(*, client, now: datetime | None = None) -> Checkpoint | None:
    """Write a signed checkpoint of the client's chain (count, newest id and hash) to the audit
    log; None while the ledger is empty. When the chain has not grown since the last checkpoint
    that one is returned and nothing is written, so a repeated daily run (or a task delivered
    twice) adds nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        # Appends in flight finish first: the count and the head are of one chain state.
        consent_chain_lock(client.pk)
        records = ConsentRecord.objects.for_client(client)
        head = records.order_by("-id").values("id", "hash").first()
        if head is None:
            return None
        count = records.count()
        last = consent_checkpoints(client=client)[-1:]
        if last and (last[0].head_id, last[0].count) == (head["id"], count):
            return last[0]
        checkpoint = Checkpoint(
            client_id=client.pk,
            client=client.slug,
            date=timezone.localtime(now, client.tzinfo).date().isoformat(),
            at=_canonical(now),
            count=count,
            head_id=head["id"],
            head_hash=head["hash"],
        ).signed()
        details = {**checkpoint.payload(), "signature": checkpoint.signature}
        entry = audit_log(
            action=CHECKPOINT_ACTION,
            source="system",
            client=client,
            actor_label="beat",
            details=details,
        )
    return Checkpoint.from_entry(entry)


@dataclass
class ChainCheck:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str = ""
    #: Checkpoints the ledger was checked against, and the newest one's date.
    checkpoints: int = 0
    last_checkpoint: str = ""


def consent_log_verify(*, client, digests: Iterable[Checkpoint] = ()) -> ChainCheck:
    """Recompute the chain of one client and hold it against its checkpoints; name the first
    record that does not fit.

    The chain alone finds an edited record or one missing in the middle. The checkpoints (the
    signed ones in the audit log, and any ``digests`` a client kept) find what the chain cannot:
    a ledger shorter than a checkpoint counted (truncated), and a checkpointed newest record
    that is missing or different (a deleted tail, a rewritten chain)."""
    digests = list(digests)
    if any(digest.client_id != client.pk for digest in digests):
        raise ConsentError("invalid_digest", _("Дайджест относится к другому клиенту."))
    anchors = [*consent_checkpoints(client=client), *digests]
    forged = [anchor for anchor in anchors if not anchor.signature_ok()]
    anchors = [anchor for anchor in anchors if anchor not in forged]
    by_head: dict[int, list[Checkpoint]] = {}
    for anchor in anchors:
        by_head.setdefault(anchor.head_id, []).append(anchor)

    records = ConsentRecord.objects.for_client(client).order_by("id")
    named_erased: dict[int, str | None] = {}
    for details in records.filter(action=ConsentRecord.Action.ERASURE).values_list(
        "details", flat=True
    ):
        kept = details.get("kept_hashes") or {}
        for record_id in details.get("erased_record_ids", []):
            named_erased[record_id] = kept.get(str(record_id))
    prev_hash = ""
    checked = 0
    for record in records.iterator(chunk_size=2000):
        checked += 1
        if record.prev_hash != prev_hash:
            return ChainCheck(
                False, checked, record.pk, _("разорвана цепочка: prev_hash не совпадает")
            )
        if record.erased_at is not None:
            if record.pk not in named_erased:
                return ChainCheck(
                    False, checked, record.pk, _("поля удалены, но записи об удалении нет")
                )
            kept = named_erased[record.pk]
            if any(getattr(record, name) != blank for name, blank in ERASED_FIELDS.items()) or (
                record.details
            ):
                return ChainCheck(
                    False, checked, record.pk, _("запись удалена, но её персональные поля не пусты")
                )
            if kept is not None and consent_record_kept_hash(record) != kept:
                return ChainCheck(
                    False,
                    checked,
                    record.pk,
                    _("удалённая запись изменена: не совпадает с записью об удалении"),
                )
        elif consent_record_hash(record, prev_hash) != record.hash:
            return ChainCheck(False, checked, record.pk, _("содержимое изменено: хеш не совпадает"))
        for anchor in by_head.get(record.pk, ()):
            if record.hash != anchor.head_hash:
                return ChainCheck(
                    False,
                    checked,
                    record.pk,
                    _("не совпадает с контрольной точкой от %(date)s: другой хеш")
                    % {"date": anchor.date},
                )
            if checked != anchor.count:
                return ChainCheck(
                    False,
                    checked,
                    record.pk,
                    _(
                        "по эту запись %(checked)s записей, а контрольная точка от %(date)s "
                        "насчитывала %(count)s"
                    )
                    % {"checked": checked, "date": anchor.date, "count": anchor.count},
                )
        prev_hash = record.hash
        by_head.pop(record.pk, None)

    # Checkpointed newest records never met: the tail is gone (or the whole ledger).
    for anchor in sorted((a for group in by_head.values() for a in group), key=lambda a: -a.count):
        if checked < anchor.count:
            reason = _(
                "журнал усечён: %(checked)s записей, а контрольная точка от %(date)s "
                "насчитывала %(count)s (по запись #%(head)s)"
            ) % {
                "checked": checked,
                "date": anchor.date,
                "count": anchor.count,
                "head": anchor.head_id,
            }
        else:
            reason = _(
                "нет записи #%(head)s, последней в контрольной точке от %(date)s: "
                "хвост журнала удалён"
            ) % {"head": anchor.head_id, "date": anchor.date}
        return ChainCheck(False, checked, anchor.head_id, reason)
    if forged:
        return ChainCheck(
            False,
            checked,
            None,
            _("контрольная точка от %(date)s: подпись неверна (подделана или чужой ключ)")
            % {"date": forged[0].date},
        )
    newest = max(anchors, key=lambda a: a.count, default=None)
    return ChainCheck(
        True, checked, checkpoints=len(anchors), last_checkpoint=newest.date if newest else ""
    )
