"""What campaigns holds about a person, for consent's access archive, erasure and withdrawal.

- Access archive, section ``messages``: every message of the person (chain, step, channel,
  address, subject, state and its times, the reason when not sent), and their enrolments.
- Erasure: the person's running enrolments end, their queued messages are cancelled, and the
  outbox keeps the rows (so the chain's counts, and the uplift measured from both arms, stay
  right) with the address, subject and text blanked; push devices and channel stops go.
- Withdrawal of a channel's purpose: that channel's queued messages of the person are cancelled
  at once, in the transaction that appends the withdrawal (38-FZ art. 18: stop on request), not
  at the next tick; the consent check at sending would stop them too.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from consent import hooks
from consent.hooks import ArchiveSection, ErasureStep, ErasureSubject, WithdrawalHook
from consent.purposes import CHANNEL_PURPOSE

from .models import ChannelStop, Enrollment, Message, PushDevice, TriggerChain

PURPOSE_CHANNEL = {purpose: channel for channel, purpose in CHANNEL_PURPOSE.items()}


def messages_section(customer) -> list[dict[str, Any]]:
    rows = (
        Message.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .select_related("chain", "step")
        .order_by("created_at", "pk")
    )
    return [
        {
            "chain": message.chain.name,
            "step": message.step.position,
            "channel": message.channel,
            "group": message.arm,
            "address": message.address,
            "subject": message.subject,
            "state": message.get_state_display(),
            "reason": message.reason,
            "created_at": message.created_at,
            "sent_at": message.sent_at,
            "opened_at": message.opened_at,
            "clicked_at": message.clicked_at,
        }
        for message in rows
    ]


def enrollments_section(customer) -> list[dict[str, Any]]:
    rows = (
        Enrollment.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .select_related("chain")
        .order_by("enrolled_at", "pk")
    )
    return [
        {
            "chain": enrollment.chain.name,
            "group": enrollment.get_arm_display(),
            "state": enrollment.get_state_display(),
            "enrolled_at": enrollment.enrolled_at,
            "ended_at": enrollment.ended_at,
            "exit_reason": enrollment.exit_reason,
            "converted_at": enrollment.converted_at,
        }
        for enrollment in rows
    ]


def devices_section(customer) -> list[dict[str, Any]]:
    return [
        {"provider": provider, "added_at": created_at, "gone_at": gone_at}
        for provider, created_at, gone_at in PushDevice.objects.for_client(customer.client_id)
        .filter(customer_id=customer.pk)
        .values_list("provider", "created_at", "gone_at")
    ]


def campaigns_erase(subject: ErasureSubject) -> str | None:
    customer = subject.customer
    client_id = customer.client_id
    from .engine import enrollments_exit_for_customers

    ended = enrollments_exit_for_customers(client_id, [customer.pk], reason=_("данные удалены"))
    blanked = (
        Message.objects.for_client(client_id)
        .filter(customer_id=customer.pk)
        .update(address="", subject="", body="")
    )
    devices, _d = PushDevice.objects.for_client(client_id).filter(customer_id=customer.pk).delete()
    stops, _s = ChannelStop.objects.for_client(client_id).filter(customer_id=customer.pk).delete()
    if not (ended or blanked or devices or stops):
        return None
    return _(
        "Рассылки: завершено участий в цепочках — %(ended)s; из %(messages)s сообщений удалены "
        "адреса и тексты (счётчики цепочек сохранены обезличенно); удалено push-устройств — "
        "%(devices)s."
    ) % {"ended": ended, "messages": blanked, "devices": devices}


def queued_messages_cancel_many(*, customers, purpose) -> None:
    channel = PURPOSE_CHANNEL.get(purpose.code)
    people = [c for c in customers if c is not None]
    if channel is None or not people:
        return
    by_client: dict[int, list[int]] = {}
    for customer in people:
        by_client.setdefault(customer.client_id, []).append(customer.pk)
    from .engine import queued_messages_cancel

    for client_id, ids in by_client.items():
        queued_messages_cancel(
            client_id, _("согласие отозвано"), customer_id__in=ids, channel=channel
        )


def register() -> None:
    hooks.register(
        ArchiveSection(
            app="campaigns",
            name="messages",
            title="сообщения триггерных цепочек (email, SMS, push)",
            models=("campaigns.Message",),
            build=messages_section,
        )
    )
    hooks.register(
        ArchiveSection(
            app="campaigns",
            name="chain_enrollments",
            title="участие в триггерных цепочках",
            models=("campaigns.Enrollment",),
            build=enrollments_section,
        )
    )
    hooks.register(
        ArchiveSection(
            app="campaigns",
            name="push_devices",
            title="устройства для push-уведомлений",
            models=("campaigns.PushDevice", "campaigns.ChannelStop"),
            build=devices_section,
        )
    )
    hooks.register(
        ErasureStep(
            app="campaigns",
            name="messages",
            models=(
                "campaigns.Message",
                "campaigns.Enrollment",
                "campaigns.PushDevice",
                "campaigns.ChannelStop",
            ),
            run=campaigns_erase,
        )
    )
    hooks.register(
        WithdrawalHook(
            app="campaigns",
            name="cancel_queued",
            run=lambda *, customer, purpose: queued_messages_cancel_many(
                customers=[customer], purpose=purpose
            ),
            run_many=queued_messages_cancel_many,
        )
    )


def chain_members_excluded_sql(audience) -> tuple[str, list] | None:
    """People in a running enrolment of a chain that excludes its members from ``audience``
    (``TriggerChain.excluded_audiences``), for ``audiences.exclusions``."""
    through = TriggerChain.excluded_audiences.through
    if not through.objects.filter(audience_id=audience.pk).exists():
        return None
    enrollments = Enrollment._meta.db_table
    links = through._meta.db_table
    return (
        f"SELECT e.customer_id FROM {enrollments} e "  # noqa: S608 - names from metadata
        f"JOIN {links} x ON x.triggerchain_id = e.chain_id "
        "WHERE e.client_id = %s AND e.state = %s AND x.audience_id = %s",
        [audience.client_id, Enrollment.State.ACTIVE, audience.pk],
    )


def audiences_register() -> None:
    from audiences.exclusions import exclusion_register

    exclusion_register("campaigns.chain_members", chain_members_excluded_sql)
