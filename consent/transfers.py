"""The cross-border guard (152-FZ art. 12): no personal data leaves Russia without a notice.

**Every export of personal data calls :func:`transfer_check` before it sends anything**: ad
audience syncs (Yandex Audiences, VK Ads, myTarget), SMS, push and email sends, file exports,
and whatever later issues add. The recipient is the :class:`~consent.models.DataRecipient` the
data goes to; its country decides:

- ``RU``: allowed.
- any other country: allowed only when a :class:`~consent.models.CrossBorderTransferNotice` of
  the same client, for that country and that recipient (its name or legal name, compared
  case-insensitively), is on record and its waiting period is over: the notice date plus 10
  working days of the Russian production calendar (``consent.calendar``), counted from the day
  after the notice. The transfer is allowed from the day *after* the 10th working day ("по
  истечении десяти рабочих дней"): on the 10th working day itself the period has not yet run
  out.

A refusal raises :class:`TransferRefused` (a :class:`~consent.services.ConsentError` with the
code ``cross_border_refused`` and a Russian message naming the country, the recipient and what is
missing or the date from which the transfer becomes possible) and writes a
:class:`~consent.models.TransferRefusal` row, shown in the admin.

Transactions: the refusal row is saved in the caller's transaction, if any. Call
``transfer_check`` first thing, **before** the export opens its own ``transaction.atomic()``
(a task: load, check, then write): the check itself writes nothing but the refusal, so there is
nothing to roll back, and a refusal raised inside an atomic block would be rolled back with it.
Writing the refusal on a second database connection would survive any rollback, but it cannot
see rows the caller has not committed yet (its recipient, in tests the whole test transaction),
so we keep one connection and the rule above; every refusal is also logged at WARNING level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .calendar import add_working_days
from .models import CrossBorderTransferNotice, DataRecipient, TransferRefusal
from .services import ConsentError

logger = logging.getLogger(__name__)

HOME_COUNTRY = "RU"
WAITING_WORKING_DAYS = 10


class TransferRefused(ConsentError):
    """An export of personal data abroad refused by 152-FZ art. 12."""

    def __init__(self, message: str, *, recipient: DataRecipient, allowed_from: date | None):
        super().__init__("cross_border_refused", message)
        self.recipient = recipient
        self.allowed_from = allowed_from


@dataclass(frozen=True)
class TransferDecision:
    """Whether personal data may go to a recipient on a given day, and why."""

    allowed: bool
    cross_border: bool
    reason: str
    notice: CrossBorderTransferNotice | None = None
    allowed_from: date | None = None


def notice_allowed_from(notified_at: date) -> date:
    """The first day a transfer under a notice given on ``notified_at`` is allowed."""
    return add_working_days(notified_at, WAITING_WORKING_DAYS) + timedelta(days=1)


def notices_for(recipient: DataRecipient):
    """Notices of the recipient's client that cover this recipient and its country."""
    names = Q(recipient__iexact=recipient.name.strip())
    if recipient.legal_name.strip():
        names |= Q(recipient__iexact=recipient.legal_name.strip())
    return (
        CrossBorderTransferNotice.objects.for_client(recipient.client_id)
        .filter(country=recipient.country.upper())
        .filter(names)
        .order_by("notified_at", "pk")
    )


def _describe(recipient: DataRecipient) -> str:
    return f"«{recipient.name}» ({recipient.country.upper()})"


def transfer_decision(*, recipient: DataRecipient, today: date | None = None) -> TransferDecision:
    """Read-only: may personal data go to ``recipient`` on ``today``? Writes nothing."""
    country = recipient.country.upper()
    if country == HOME_COUNTRY:
        return TransferDecision(True, False, _("Получатель в России: передача не трансграничная."))
    today = today or timezone.localdate()
    notices = list(notices_for(recipient))
    if not notices:
        return TransferDecision(
            False,
            True,
            _(
                "Передача персональных данных получателю %(recipient)s запрещена: нет уведомления "
                "Роскомнадзора о трансграничной передаче в страну %(country)s этому получателю "
                "(152-ФЗ ст. 12). Внесите уведомление в разделе «Уведомления о трансграничной "
                "передаче»; передача станет возможна по истечении 10 рабочих дней с даты "
                "уведомления."
            )
            % {"recipient": _describe(recipient), "country": country},
        )
    # The notice whose waiting period ends first decides.
    notice = min(notices, key=lambda n: (notice_allowed_from(n.notified_at), n.pk))
    allowed_from = notice_allowed_from(notice.notified_at)
    if today >= allowed_from:
        return TransferDecision(
            True,
            True,
            _("Уведомление Роскомнадзора от %(notified)s: передача разрешена с %(allowed)s.")
            % {"notified": f"{notice.notified_at:%d.%m.%Y}", "allowed": f"{allowed_from:%d.%m.%Y}"},
            notice=notice,
            allowed_from=allowed_from,
        )
    return TransferDecision(
        False,
        True,
        _(
            "Передача персональных данных получателю %(recipient)s пока запрещена: уведомление "
            "Роскомнадзора от %(notified)s ещё не выдержало 10 рабочих дней (152-ФЗ ст. 12); "
            "передача возможна с %(allowed)s."
        )
        % {
            "recipient": _describe(recipient),
            "notified": f"{notice.notified_at:%d.%m.%Y}",
            "allowed": f"{allowed_from:%d.%m.%Y}",
        },
        notice=notice,
        allowed_from=allowed_from,
    )


def transfer_check(
    *, recipient: DataRecipient, operation: str, now: datetime | None = None
) -> CrossBorderTransferNotice | None:
    """Allow an export of personal data to ``recipient`` or refuse it (raise and log).

    Returns the notice that allows a cross-border transfer, None for a recipient in Russia.
    ``operation`` names the export for the log, e.g. ``"audience_sync:42"``.
    """
    now = now or timezone.now()
    decision = transfer_decision(recipient=recipient, today=timezone.localdate(now))
    if decision.allowed:
        return decision.notice
    TransferRefusal.objects.create(
        client_id=recipient.client_id,
        recipient=recipient,
        at=now,
        operation=operation[:200],
        reason=decision.reason[:500],
    )
    logger.warning(
        "cross-border transfer refused: client=%s recipient=%s operation=%s: %s",
        recipient.client_id,
        recipient.pk,
        operation,
        decision.reason,
    )
    raise TransferRefused(decision.reason, recipient=recipient, allowed_from=decision.allowed_from)
