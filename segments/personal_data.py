"""What segments holds about a person, for consent's access archive and erasure.

Registered in ``SegmentsConfig.ready()`` (:func:`register`) with :mod:`consent.hooks`:

- archive sections ``scores`` (the latest RFM, lifecycle, CLV and churn scores, with the
  scoring run they come from) and ``segment_memberships`` (every stay in a segment: name, since
  when, until when);
- an erasure step deleting both, since they are personal data derived from the person's
  orders and events: the scores and the past stays in segments at once; the current stays at
  the next refresh of their segment, which deletes an erased customer's membership instead of
  closing it (``segment_refresh``). Until then the open stay is what the next audience sync
  counts as held back because erased (``SyncRun.held_back_erased``; the snapshot leaves the
  person out either way), and what the audiences erasure step reads to find the audiences
  that may hold the person. Aggregates stay as they are: ``Segment.size``,
  ``SegmentSizeSnapshot`` (sizes, entered/left), ``ScoringRun`` (model parameters, RFM
  transition counts). Erased customers are scored by no later run and join no segment at a
  later refresh (``segment_members_query`` and the scoring inputs exclude them), so nothing
  comes back.

- archive section ``recommendations`` and an erasure step deleting them: the products the last
  scoring run recommends to the person (derived from their purchases). An erased customer gets
  none from later runs (they score only customers not erased).

No withdrawal hook: an "opted_out" suppression segment reads the ledger at its next refresh.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from clients.models import Customer
from consent import hooks
from consent.hooks import ArchiveSection, ErasureStep, ErasureSubject

from .models import CustomerRecommendation, CustomerScore, SegmentMembership
from .scoring import SCORE_COLUMNS

SCORE_MODELS = ("segments.CustomerScore",)
MEMBERSHIP_MODELS = ("segments.SegmentMembership",)
RECOMMENDATION_MODELS = ("segments.CustomerRecommendation",)


def _local(value: datetime | None, customer: Customer) -> str | None:
    return timezone.localtime(value, customer.client.tzinfo).isoformat() if value else None


def scores_section(customer: Customer) -> list[dict[str, Any]]:
    """The person's current scores (one row, or none before the first scoring run)."""
    scores = (
        CustomerScore.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .select_related("run")
    )
    return [
        {
            **{name: getattr(score, name) for name in SCORE_COLUMNS},
            "computed_at": _local(score.computed_at, customer),
            "scoring_run_id": score.run_id,
            "scoring_as_of": score.run.as_of.isoformat() if score.run and score.run.as_of else None,
        }
        for score in scores
    ]


def memberships_section(customer: Customer) -> list[dict[str, Any]]:
    """Every stay of the person in a segment, current ones with an empty ``left_at``."""
    memberships = (
        SegmentMembership.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .select_related("segment")
        .order_by("entered_at", "id")
    )
    return [
        {
            "segment": membership.segment.name,
            "segment_kind": membership.segment.kind,
            "entered_at": _local(membership.entered_at, customer),
            "left_at": _local(membership.left_at, customer),
            "current": membership.left_at is None,
        }
        for membership in memberships
    ]


def scores_and_memberships_erase(subject: ErasureSubject) -> str | None:
    """Delete the person's scores and past segment memberships; the current ones go at the
    next refresh of their segment (see the module docstring)."""
    customer = subject.customer
    scores, _ = (
        CustomerScore.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .delete()
    )
    memberships = SegmentMembership.objects.for_client(customer.client_id).filter(
        customer_id=customer.pk
    )
    past, _ = memberships.filter(left_at__isnull=False).delete()
    current = memberships.count()
    if not (scores or past or current):
        return None
    return (
        "Скоринг и сегменты: оценки покупателя (RFM, жизненный цикл, CLV, отток) и прошлое "
        f"участие в сегментах (записей: {past}) удалены; текущее участие (сегментов: "
        f"{current}) удаляется при ближайшем обновлении сегментов; сводные размеры сегментов "
        "не изменены."
    )


def recommendations_section(customer: Customer) -> list[dict[str, Any]]:
    """The products recommended to the person, in rank order, with why (bought together with
    their purchases, or a best seller) and when the scoring run computed them."""
    rows = (
        CustomerRecommendation.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .order_by("id")
    )
    return [
        {
            "rank": rank,
            "product_id": item.get("id"),
            "name": item.get("name"),
            "price": item.get("price"),
            "why": "куплено вместе с покупками покупателя"
            if item.get("source") == "co_purchase"
            else "хит продаж за 90 дней",
            "computed_at": _local(row.computed_at, customer),
            "scoring_run_id": row.run_id,
        }
        for row in rows
        for rank, item in enumerate(row.products, start=1)
    ]


def recommendations_erase(subject: ErasureSubject) -> str | None:
    """Delete the products recommended to the person."""
    customer = subject.customer
    deleted, _ = (
        CustomerRecommendation.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .delete()
    )
    if not deleted:
        return None
    return "Рекомендации товаров: список товаров, рассчитанный покупателю по его покупкам, удалён."


def register() -> None:
    """Register the sections and the erasure step with consent (``SegmentsConfig.ready()``)."""
    hooks.register(
        ArchiveSection(
            app="segments",
            name="scores",
            title="оценки покупателя: RFM, стадия жизненного цикла, прогноз CLV и оттока "
            "(на дату запуска скоринга)",
            models=SCORE_MODELS,
            build=scores_section,
        )
    )
    hooks.register(
        ArchiveSection(
            app="segments",
            name="segment_memberships",
            title="участие в сегментах: название сегмента, когда вошёл, когда вышел",
            models=MEMBERSHIP_MODELS,
            build=memberships_section,
        )
    )
    hooks.register(
        ErasureStep(
            app="segments",
            name="scores_and_memberships",
            models=SCORE_MODELS + MEMBERSHIP_MODELS,
            run=scores_and_memberships_erase,
        )
    )
    hooks.register(
        ArchiveSection(
            app="segments",
            name="recommendations",
            title="рекомендованные товары: что рассчитано предложить покупателю в сообщениях "
            "(купленное вместе с его покупками или хиты продаж) и когда",
            models=RECOMMENDATION_MODELS,
            build=recommendations_section,
        )
    )
    hooks.register(
        ErasureStep(
            app="segments",
            name="recommendations",
            models=RECOMMENDATION_MODELS,
            run=recommendations_erase,
        )
    )
