"""The one answer to "may we use purpose P for this person now?", for one customer and for a
whole queryset. Every consumer (audience export, messages, exports) calls these and nothing else.

Rule: among the person's records for the purpose (their own, and those of cookie subjects linked
to them), the latest by time wins (ties: the later record); no record means no; an erased person
never.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import BooleanField, Case, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from .models import ConsentPurpose, ConsentRecord, ConsentSubjectLink


def subject_ids_of(*, customer) -> list[str]:
    return list(
        ConsentSubjectLink.objects.for_client(customer.client_id)
        .filter(customer=customer)
        .values_list("subject_id", flat=True)
    )


def _records_of(customer) -> QuerySet:
    return ConsentRecord.objects.for_client(customer.client_id).filter(
        Q(customer=customer) | Q(subject_id__in=subject_ids_of(customer=customer)),
        purpose__isnull=False,
    )


def customers_not_erased(queryset: QuerySet) -> QuerySet:
    """People whose data was not erased (an erased person is never exported or messaged)."""
    return queryset.filter(erased_at__isnull=True)


def consent_is_granted(*, customer, purpose_code: str, at: datetime | None = None) -> bool:
    """May purpose ``purpose_code`` be used for ``customer`` at ``at`` (now by default)?"""
    if customer.erased_at is not None:
        return False
    latest = (
        _records_of(customer)
        .filter(purpose__code=purpose_code, at__lte=at or timezone.now())
        .order_by("-at", "-id")
        .values_list("action", flat=True)
        .first()
    )
    return latest == ConsentRecord.Action.GRANTED


def customers_with_consent_flag(queryset: QuerySet, purpose_code: str) -> QuerySet:
    """Annotate each customer with ``consent_granted``: the rule of this module, for callers
    that must also count who is held back and why (audience syncs), in one pass."""
    purpose_id = ConsentPurpose.objects.values_list("pk", flat=True).get(code=purpose_code)
    linked_subjects = ConsentSubjectLink.objects.filter(
        client_id=OuterRef(OuterRef("client_id")), customer_id=OuterRef(OuterRef("pk"))
    ).values("subject_id")
    latest_action = (
        ConsentRecord.objects.filter(
            client_id=OuterRef("client_id"),
            purpose_id=purpose_id,
            at__lte=timezone.now(),
        )
        .filter(Q(customer_id=OuterRef("pk")) | Q(subject_id__in=Subquery(linked_subjects)))
        .order_by("-at", "-id")
        .values("action")[:1]
    )
    return queryset.annotate(_consent_action=Subquery(latest_action)).annotate(
        consent_granted=Case(
            When(erased_at__isnull=False, then=Value(False)),
            When(_consent_action=ConsentRecord.Action.GRANTED, then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )


def customers_consented_for(queryset: QuerySet, purpose_code: str) -> QuerySet:
    """Narrow a customer queryset to those with a current consent for the purpose (one query)."""
    return customers_not_erased(customers_with_consent_flag(queryset, purpose_code)).filter(
        consent_granted=True
    )


def consent_current_state(*, customer) -> dict[str, dict]:
    """Per purpose: granted or not, and the record that decided it."""
    state: dict[str, dict] = {
        p.code: {"purpose": p.code, "name": p.name, "granted": False, "record_id": None, "at": None}
        for p in ConsentPurpose.objects.all()
    }
    now = timezone.now()
    for record in (
        _records_of(customer).filter(at__lte=now).select_related("purpose").order_by("at", "id")
    ):
        state[record.purpose.code].update(
            granted=record.action == ConsentRecord.Action.GRANTED, record_id=record.pk, at=record.at
        )
    return state


def consent_history(*, customer) -> QuerySet:
    """Every record about the person, newest first, with its text version."""
    return (
        ConsentRecord.objects.for_client(customer.client_id)
        .filter(Q(customer=customer) | Q(subject_id__in=subject_ids_of(customer=customer)))
        .select_related("purpose", "text")
        .order_by("-at", "-id")
    )
