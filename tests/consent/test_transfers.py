"""The cross-border guard: RU passes, abroad only with a notice whose 10 working days are over."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from django.db import transaction
from django.utils import timezone

from consent.models import CrossBorderTransferNotice, DataRecipient, TransferRefusal
from consent.services import ConsentError
from consent.transfers import (
    TransferRefused,
    notice_allowed_from,
    transfer_check,
    transfer_decision,
)

pytestmark = pytest.mark.django_db


def at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


@pytest.fixture
def yandex(client_a):
    return DataRecipient.objects.create(
        client=client_a, name="Яндекс Аудитории", kind=DataRecipient.Kind.AD_PLATFORM
    )


@pytest.fixture
def mailer_de(client_a):
    return DataRecipient.objects.create(
        client=client_a,
        name="Sendinblue",
        legal_name="Brevo GmbH",
        kind=DataRecipient.Kind.EMAIL,
        country="DE",
    )


def notice(client, notified_at: date, country="DE", recipient="Sendinblue"):
    return CrossBorderTransferNotice.objects.create(
        client=client, country=country, recipient=recipient, notified_at=notified_at
    )


def refusals(client):
    return TransferRefusal.objects.for_client(client)


def test_russian_recipient_passes_and_logs_nothing(client_a, yandex):
    assert transfer_check(recipient=yandex, operation="audience_sync:1") is None
    assert refusals(client_a).count() == 0


def test_foreign_recipient_without_notice_is_refused_and_logged(client_a, mailer_de):
    with pytest.raises(TransferRefused) as excinfo:
        transfer_check(recipient=mailer_de, operation="email_send:7", now=at(date(2026, 3, 2)))

    message = str(excinfo.value)
    assert "«Sendinblue» (DE)" in message
    assert "нет уведомления Роскомнадзора" in message
    assert excinfo.value.code == "cross_border_refused"
    assert isinstance(excinfo.value, ConsentError)
    refusal = refusals(client_a).get()
    assert refusal.recipient == mailer_de
    assert refusal.operation == "email_send:7"
    assert refusal.reason == message
    assert refusal.at == at(date(2026, 3, 2))


def test_notice_three_working_days_old_is_refused_with_the_date(client_a, mailer_de):
    notice(client_a, date(2026, 3, 2))  # Monday; 3 working days later is Thursday the 5th

    with pytest.raises(TransferRefused) as excinfo:
        transfer_check(recipient=mailer_de, operation="email_send:8", now=at(date(2026, 3, 5)))

    # 10 working days: 3-6, 10-13 (9 March is the day off for 8 March), 16-17 March.
    assert excinfo.value.allowed_from == date(2026, 3, 18)
    assert "от 02.03.2026" in str(excinfo.value)
    assert "передача возможна с 18.03.2026" in str(excinfo.value)
    assert refusals(client_a).count() == 1


def test_notice_across_the_may_2026_holidays(client_a, mailer_de):
    # Thursday 30 April. Working days after it: 4-8 May, 12-15 May (1 May, 9 May and the
    # day off moved to 11 May are holidays), 18 May: the 10th. Allowed from 19 May.
    notice(client_a, date(2026, 4, 30))
    assert notice_allowed_from(date(2026, 4, 30)) == date(2026, 5, 19)

    # Ten weekdays have passed by 15 May, but not ten working days: still refused.
    for day in (date(2026, 5, 15), date(2026, 5, 18)):
        with pytest.raises(TransferRefused, match="передача возможна с 19.05.2026"):
            transfer_check(recipient=mailer_de, operation="email_send", now=at(day))

    found = transfer_check(recipient=mailer_de, operation="email_send", now=at(date(2026, 5, 19)))

    assert found.notified_at == date(2026, 4, 30)
    assert refusals(client_a).count() == 2  # the two refusals above, none for the pass


def test_notice_matches_country_and_recipient(client_a, client_b, mailer_de):
    long_ago = date(2025, 1, 10)
    notice(client_a, long_ago, country="FR")  # another country
    notice(client_a, long_ago, recipient="Mailchimp")  # another recipient
    notice(client_b, long_ago)  # another client
    now = at(date(2026, 3, 2))

    with pytest.raises(TransferRefused):
        transfer_check(recipient=mailer_de, operation="x", now=now)

    # Case-insensitive, by name or legal name.
    notice(client_a, long_ago, recipient="BREVO gmbh")
    assert transfer_check(recipient=mailer_de, operation="x", now=now) is not None


def test_earliest_valid_notice_decides(client_a, mailer_de):
    notice(client_a, date(2026, 3, 2))
    notice(client_a, date(2025, 6, 2))

    decision = transfer_decision(recipient=mailer_de, today=date(2026, 3, 3))

    assert decision.allowed
    assert decision.cross_border
    assert decision.notice.notified_at == date(2025, 6, 2)


def test_decision_writes_nothing(client_a, mailer_de):
    decision = transfer_decision(recipient=mailer_de, today=date(2026, 3, 3))

    assert not decision.allowed
    assert refusals(client_a).count() == 0


def test_refusal_before_the_export_transaction_is_kept(client_a, mailer_de):
    """The documented order: check first, then open the export's transaction."""
    sent = []

    def export():
        transfer_check(recipient=mailer_de, operation="sms_send", now=at(date(2026, 3, 2)))
        with transaction.atomic():
            sent.append(1)

    with pytest.raises(TransferRefused):
        export()

    assert sent == []
    assert refusals(client_a).count() == 1
