"""The daily Yandex Direct spend import against the stub: rows per campaign and day, a second
import of a day replaces it, one failing client does not stop the others."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from agency.crypto import secret_encrypt
from config.celery import app as celery_app
from reports.direct import direct_spend_import, import_days
from reports.models import AdAccount, SpendDay
from reports.tasks import direct_spend_import_daily_task

D1, D2 = date(2026, 12, 3), date(2026, 12, 4)


def _account(client, stub, *, token=None, login=None):
    return AdAccount.objects.create(
        client=client,
        provider=AdAccount.Provider.DIRECT,
        name="Директ",
        login=login or stub.login,
        credentials_encrypted=secret_encrypt({"token": token or stub.credentials["token"]}),
    )


def _rows(client):
    return sorted(
        SpendDay.objects.for_client(client).values_list(
            "day", "campaign", "campaign_name", "cost", "clicks", "impressions"
        )
    )


@pytest.fixture
def stats(direct_stub):
    direct_stub.add_stats(
        "2026-12-03", 11, name="Бренд", impressions=1000, clicks=40, cost="1500.50"
    )
    direct_stub.add_stats(
        "2026-12-03", 12, name="Ретаргетинг", impressions=300, clicks=9, cost="99.99"
    )
    direct_stub.add_stats("2026-12-04", 11, name="Бренд", impressions=800, clicks=30, cost="1200")
    direct_stub.add_stats("2026-12-05", 11, name="Бренд", impressions=1, clicks=1, cost="1")
    return direct_stub


def test_import_writes_days_and_second_import_replaces(client_b, stats):
    account = _account(client_b, stats)
    written = direct_spend_import(client=client_b, days=[D1, D2])
    assert written == {"2026-12-03": 2, "2026-12-04": 1}
    expected = [
        (D1, "11", "Бренд", Decimal("1500.50"), 40, 1000),
        (D1, "12", "Ретаргетинг", Decimal("99.99"), 9, 300),
        (D2, "11", "Бренд", Decimal("1200.00"), 30, 800),
    ]
    assert _rows(client_b) == expected
    # Direct corrected the day after: the second import replaces, never doubles.
    stats.add_stats("2026-12-03", 11, name="Бренд", impressions=1000, clicks=41, cost="1600")
    direct_spend_import(client=client_b, days=[D1, D2])
    assert _rows(client_b) == [
        (D1, "11", "Бренд", Decimal("1600.00"), 41, 1000),
        *expected[1:],
    ]
    account.refresh_from_db()
    assert account.last_imported_at is not None


def test_import_days_are_yesterday_and_the_day_before():
    assert import_days(date(2026, 12, 6)) == [D2, date(2026, 12, 5)]


def test_daily_task_one_failing_client_does_not_stop_others(client_a, client_b, stats, monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    _account(client_a, stats, token="revoked-token")
    _account(client_b, stats)
    monkeypatch.setattr("reports.tasks.import_days", lambda: [D1, D2])
    SpendDay.objects.create(
        client=client_a, source="direct", day=D1, campaign="7", cost=Decimal("5")
    )
    assert direct_spend_import_daily_task() == sorted([client_a.pk, client_b.pk])
    assert len(_rows(client_b)) == 3
    # The failing client's day is left as it was, not emptied.
    assert _rows(client_a) == [(D1, "7", "", Decimal("5.00"), 0, 0)]
