"""A chain's funnel, the one count shown by the admin, the API and the portal: enrolled by arm
(and their states, conversions and conversion value), and per step how many messages are
waiting, were sent, delivered, opened, clicked, suppressed (by reason), failed or cancelled.

Two queries: one GROUP BY over the chain's messages, one over its enrolments. Message counts are
of the treatment arm; a holdout person's message records what they would have been sent (state
``holdout``) and is counted apart, per step, as ``holdout``. Sent, delivered, opened and clicked
are cumulative (a clicked message was sent: its ``sent_at`` is set), read from the times, so a
message that moved on is still counted in the earlier stages.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Case, CharField, Count, F, Sum, Value, When

from .models import ChainStep, Enrollment, Message, TriggerChain

SRM_ALERT_P = 0.01  # below this the realised holdout share is not the planned one
ARMS = (Enrollment.Arm.TREATMENT, Enrollment.Arm.HOLDOUT)
STEP_COUNTS = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "suppressed",
    "failed",
    "cancelled",
    "holdout",
)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def chain_funnel(chain: TriggerChain) -> dict[str, Any]:
    """The funnel of ``chain``:

    ``{"enrolled": {"treatment", "holdout", "total"}, "states": {arm: {state: n}},
    "converted": {arm: n}, "conversion_rate": {arm: share or None}, "conversion_value":
    {arm: "RUB string"}, "srm_p_value", "srm_warning", "steps": [{"position", "channel",
    "template", "queued", "sending", "sent", "delivered", "opened", "clicked", "suppressed",
    "suppressed_by_reason": {reason: n}, "failed", "cancelled", "holdout"}], "totals": {the same
    counts over all steps}}``."""
    messages = (
        Message.objects.for_client(chain.client_id)
        .filter(chain=chain)
        .annotate(
            suppression=Case(
                When(state=Message.State.SUPPRESSED, then=F("reason")),
                default=Value(""),
                output_field=CharField(),
            )
        )
        .values("step_id", "arm", "state", "suppression")
        .annotate(
            n=Count("id"),
            sent=Count("sent_at"),
            delivered=Count("delivered_at"),
            opened=Count("opened_at"),
            clicked=Count("clicked_at"),
        )
        .order_by()
    )
    enrollments = (
        Enrollment.objects.for_client(chain.client_id)
        .filter(chain=chain)
        .values("arm", "state")
        .annotate(n=Count("id"), value=Sum("conversion_value"))
        .order_by()
    )
    steps = list(
        ChainStep.objects.filter(chain=chain).select_related("template").order_by("position")
    )
    by_step: dict[int, dict[str, Any]] = {
        step.pk: {
            "position": step.position,
            "channel": step.channel,
            "template": step.template.name,
            "condition": step.condition,
            "delay_hours": step.delay_hours,
            **{name: 0 for name in STEP_COUNTS},
            "suppressed_by_reason": {},
        }
        for step in steps
    }
    totals: dict[str, Any] = {name: 0 for name in STEP_COUNTS}
    totals["suppressed_by_reason"] = {}
    for row in messages:
        row_counts: dict[str, int] = {}
        if row["arm"] == Enrollment.Arm.HOLDOUT or row["state"] == Message.State.HOLDOUT:
            row_counts["holdout"] = row["n"]
        else:
            state = row["state"]
            if state in (Message.State.QUEUED, Message.State.DEFERRED):
                row_counts["queued"] = row["n"]
            elif state in (
                Message.State.SENDING,
                Message.State.SUPPRESSED,
                Message.State.FAILED,
                Message.State.CANCELLED,
            ):
                row_counts[state] = row["n"]
            for name in ("sent", "delivered", "opened", "clicked"):
                row_counts[name] = row[name]
        targets = [totals]
        if row["step_id"] in by_step:
            targets.append(by_step[row["step_id"]])
        for target in targets:
            for name, value in row_counts.items():
                target[name] += value
            if row["state"] == Message.State.SUPPRESSED and "holdout" not in row_counts:
                reason = row["suppression"] or "—"
                reasons = target["suppressed_by_reason"]
                reasons[reason] = reasons.get(reason, 0) + row["n"]
    enrolled = {arm: 0 for arm in ARMS}
    converted = {arm: 0 for arm in ARMS}
    value = {arm: 0 for arm in ARMS}
    states: dict[str, dict[str, int]] = {arm: {} for arm in ARMS}
    for row in enrollments:
        arm = row["arm"]
        enrolled[arm] = enrolled.get(arm, 0) + row["n"]
        states.setdefault(arm, {})[row["state"]] = row["n"]
        if row["state"] == Enrollment.State.CONVERTED:
            converted[arm] = converted.get(arm, 0) + row["n"]
            value[arm] = value.get(arm, 0) + (row["value"] or 0)
    p_value = chain.srm_p_value
    return {
        "enrolled": {**enrolled, "total": sum(enrolled.values())},
        "states": states,
        "converted": converted,
        "conversion_rate": {arm: _rate(converted[arm], enrolled[arm]) for arm in ARMS},
        "conversion_value": {arm: f"{value[arm]:.2f}" for arm in ARMS},
        "srm_p_value": p_value,
        "srm_warning": p_value is not None and p_value < SRM_ALERT_P,
        "steps": [by_step[step.pk] for step in steps],
        "totals": totals,
    }
