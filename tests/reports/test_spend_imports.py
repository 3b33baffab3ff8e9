"""Roistat spend and Calltouch calls imported from the stubs: a second import of a day replaces
it (same totals), calls become events of the customer with that phone in any spelling, calls of
unknown numbers are counted, one failing account does not stop the others."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Sum

from clients.ingest import ingest_records
from clients.models import Event
from reports.accounts import ad_account_save
from reports.imports import ad_account_import, ad_accounts_due, import_days
from reports.models import AdAccount, SpendDay
from tests.stubs.fixtures import FAST_HTTP

FAST = {**FAST_HTTP, "sleep": lambda _seconds: None}
D1, D2 = dt.date(2026, 12, 1), dt.date(2026, 12, 2)
MSK = dt.timezone(dt.timedelta(hours=3))


def _roistat_account(client, stub, **credentials):
    return ad_account_save(
        client=client,
        provider=AdAccount.Provider.ROISTAT,
        remote_id=stub.project,
        credentials=credentials or stub.credentials,
    )


def _totals(client, source="roistat"):
    return (
        SpendDay.objects.for_client(client)
        .filter(source=source)
        .aggregate(cost=Sum("cost"), visits=Sum("visits"), leads=Sum("leads"))
    )


def test_roistat_import_twice_gives_the_same_totals(client_a, roistat_stub):
    roistat_stub.days[D1] = [
        {
            "channel": "direct",
            "visits": 100,
            "leads": 5,
            "sales": 2,
            "revenue": 9000,
            "marketing_cost": 1500.5,
        },
        {"channel": "seo", "visits": 50, "leads": 1, "marketing_cost": 0},
    ]
    roistat_stub.days[D2] = [{"channel": "direct", "visits": 10, "marketing_cost": 200}]
    account = _roistat_account(client_a, roistat_stub)
    first = ad_account_import(account=account, days=[D1, D2], **FAST)
    assert first["error"] == ""
    assert first["rows"] == 3
    once = _totals(client_a)
    assert once == {"cost": Decimal("1700.50"), "visits": 160, "leads": 6}
    second = ad_account_import(account=account, days=[D1, D2], **FAST)
    assert second["rows"] == 3
    assert _totals(client_a) == once
    assert SpendDay.objects.for_client(client_a).count() == 3
    # A revised day replaces the stored one: a channel gone from it is gone.
    roistat_stub.days[D1] = [{"channel": "direct", "visits": 90, "marketing_cost": 1400}]
    ad_account_import(account=account, days=[D1], **FAST)
    day1 = SpendDay.objects.for_client(client_a).filter(day=D1)
    assert list(day1.values_list("campaign", "cost")) == [("direct", Decimal("1400.00"))]
    account.refresh_from_db()
    assert account.last_imported_at is not None
    assert account.last_error == ""


def test_a_refused_account_is_recorded_and_the_others_still_import(
    client_a, client_b, roistat_stub
):
    roistat_stub.days[D1] = [{"channel": "direct", "visits": 1, "marketing_cost": 10}]
    bad = _roistat_account(client_a, roistat_stub, api_key="wrong")
    good = _roistat_account(client_b, roistat_stub)
    assert set(ad_accounts_due()) >= {bad.pk, good.pk}
    outcome_bad = ad_account_import(account=bad, days=[D1], **FAST)
    outcome_good = ad_account_import(account=good, days=[D1], **FAST)
    assert "Invalid api key" in outcome_bad["error"]
    assert outcome_good["error"] == ""
    bad.refresh_from_db()
    assert bad.last_imported_at is None
    assert bad.last_attempt_at is not None
    assert "Invalid api key" in bad.last_error
    assert not SpendDay.objects.for_client(client_a).exists()
    assert SpendDay.objects.for_client(client_b).count() == 1


def test_the_daily_import_reads_yesterday_and_the_day_before_in_the_clients_zone(client_a):
    now = dt.datetime(2026, 12, 5, 22, 30, tzinfo=dt.UTC)  # 01:30 on the 6th in Moscow
    assert import_days(client_a, now=now) == [dt.date(2026, 12, 4), dt.date(2026, 12, 5)]


@pytest.fixture
def people(client_a):
    ingest_records(
        client=client_a,
        kind="customers",
        records=[
            {"external_id": "c1", "phone": "+79161234567"},
            {"external_id": "c2", "phone": "8 (916) 765-43-21"},
        ],
    )


def _calltouch_account(client, stub, **credentials):
    return ad_account_save(
        client=client,
        provider=AdAccount.Provider.CALLTOUCH,
        remote_id=stub.site_id,
        credentials=credentials or stub.credentials,
    )


def test_calls_are_events_of_the_customer_with_that_phone_in_any_spelling(
    client_a, people, calltouch_stub
):
    at = dt.datetime(2026, 12, 1, 12, 0, tzinfo=MSK)
    calltouch_stub.add_call(call_id=1, phone="79161234567", at=at, duration=42)
    calltouch_stub.add_call(call_id=2, phone="8-916-765-43-21", at=at, successful=False)
    calltouch_stub.add_call(call_id=3, phone="+7 (916) 123 45 67", at=at)
    calltouch_stub.add_call(call_id=4, phone="79990000000", at=at)  # nobody
    calltouch_stub.add_call(call_id=5, phone="12", at=at)  # not a phone
    account = _calltouch_account(client_a, calltouch_stub)
    result = ad_account_import(account=account, days=[D1], **FAST)
    assert result["error"] == ""
    assert result["matched"] == 3
    assert result["unmatched"] == 1
    assert result["invalid_phone"] == 1
    assert result["unmatched_call_ids"] == ["4", "5"]
    events = {
        e.external_id: e
        for e in Event.objects.for_client(client_a).select_related("customer").filter(type="call")
    }
    assert set(events) == {"calltouch:1", "calltouch:2", "calltouch:3"}
    assert events["calltouch:1"].customer.external_id == "c1"
    assert events["calltouch:2"].customer.external_id == "c2"
    assert events["calltouch:3"].customer.external_id == "c1"
    assert events["calltouch:1"].properties["duration"] == 42
    assert events["calltouch:2"].properties["status"] == "unsuccessful"
    assert events["calltouch:1"].utm_source == "yandex"
    assert events["calltouch:1"].occurred_at == at
    account.refresh_from_db()
    assert account.last_result["unmatched"] == 1
    # Again: the call id is the event's external id, nothing doubles.
    again = ad_account_import(account=account, days=[D1], **FAST)
    assert again["created"] == 0
    assert Event.objects.for_client(client_a).filter(type="call").count() == 3


def test_a_wrong_calltouch_key_is_recorded(client_a, people, calltouch_stub):
    account = _calltouch_account(client_a, calltouch_stub, client_api_id="nope")
    result = ad_account_import(account=account, days=[D1], **FAST)
    assert "clientApiId" in result["error"]
    assert not Event.objects.for_client(client_a).filter(type="call").exists()


def test_the_daily_beat_imports_every_account_and_one_failure_stops_none(
    client_a, client_b, people, roistat_stub, calltouch_stub, monkeypatch
):
    from config.celery import app as celery_app
    from reports.tasks import ad_accounts_import_daily_task

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setattr("reports.imports.import_days", lambda client, now=None: [D1])
    roistat_stub.days[D1] = [{"channel": "direct", "visits": 1, "marketing_cost": 10}]
    calltouch_stub.add_call(
        call_id=9, phone="+79161234567", at=dt.datetime(2026, 12, 1, 9, tzinfo=MSK)
    )
    broken = _roistat_account(client_a, roistat_stub, api_key="revoked")
    calls = _calltouch_account(client_a, calltouch_stub)
    good = _roistat_account(client_b, roistat_stub)
    off = ad_account_save(
        client=client_b,
        provider=AdAccount.Provider.ROISTAT,
        remote_id="another",
        credentials=roistat_stub.credentials,
        is_active=False,
    )
    assert not off.is_active
    assert ad_accounts_import_daily_task.delay().get() == [broken.pk, calls.pk, good.pk]
    broken.refresh_from_db()
    calls.refresh_from_db()
    good.refresh_from_db()
    assert broken.last_error
    assert calls.last_error == ""
    assert calls.last_result["matched"] == 1
    assert good.last_imported_at is not None
    assert SpendDay.objects.for_client(client_b).count() == 1
    assert Event.objects.for_client(client_a).filter(external_id="calltouch:9").exists()
