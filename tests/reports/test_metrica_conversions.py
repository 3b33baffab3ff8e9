"""Purchases sent to Yandex Metrica as offline conversions (against the stub): only people
whose consent allows advertising cookies and who have a ClientID (or, in UserId mode, their
external id), only paid orders of the last 21 days, never an order twice; the upload's status
polled until final; the ClientID kept on the customer by event ingestion and blanked by
erasure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from clients.ingest import ingest_records
from clients.models import Customer, Order
from consent.models import ConsentRecord
from consent.purposes import AD_AUDIENCES, AD_COOKIES
from consent.requests import customer_erase
from consent.services import consent_record_build, consent_records_save
from reports.accounts import ad_account_save
from reports.imports import ad_account_import
from reports.metrica import (
    metrica_accounts_polling,
    metrica_conversions_upload,
    metrica_uploads_poll,
)
from reports.models import AdAccount, MetricaUpload, MetricaUploadOrder
from tests.consent.conftest import publish_texts
from tests.stubs.fixtures import FAST_HTTP

FAST = {**FAST_HTTP, "sleep": lambda _seconds: None}


def _grant(client, customers, purpose=AD_COOKIES, action=ConsentRecord.Action.GRANTED):
    consent_records_save(
        [
            consent_record_build(
                client=client, purpose_code=purpose, action=action, source="api", customer=c
            )
            for c in customers
        ]
    )


@pytest.fixture
def world(client_a):
    """c1: consent + ClientID (two orders: one paid, one cancelled); c2: ClientID, consent
    for audiences only; c3: consent, no ClientID; c4: consent + ClientID, an order 30 days
    old."""
    publish_texts(client_a)
    now = timezone.now()
    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": f"c{i}"} for i in range(1, 5)],
    )
    ingest_records(
        client=client_a,
        kind="events",
        records=[
            {
                "customer_external_id": "c1",
                "type": "visit",
                "occurred_at": now.isoformat(),
                "properties": {"_ym_uid": "1700000000111"},
            },
            {
                "customer_external_id": "c2",
                "type": "visit",
                "occurred_at": now.isoformat(),
                "properties": {"ym_client_id": 1700000000222},
            },
            {
                "customer_external_id": "c4",
                "type": "visit",
                "occurred_at": now.isoformat(),
                "properties": {"metrica_client_id": "1700000000444"},
            },
            {
                "customer_external_id": "c3",
                "type": "visit",
                "occurred_at": now.isoformat(),
                "properties": {"page": "/"},
            },
        ],
    )
    day = dt.timedelta(days=1)
    ingest_records(
        client=client_a,
        kind="orders",
        records=[
            {
                "external_id": "o1",
                "customer_external_id": "c1",
                "amount": "1990.50",
                "placed_at": (now - 2 * day).isoformat(),
            },
            {
                "external_id": "o1x",
                "customer_external_id": "c1",
                "amount": "500",
                "placed_at": (now - 2 * day).isoformat(),
                "status": "cancelled",
            },
            {
                "external_id": "o2",
                "customer_external_id": "c2",
                "amount": "700",
                "placed_at": (now - day).isoformat(),
            },
            {
                "external_id": "o3",
                "customer_external_id": "c3",
                "amount": "300",
                "placed_at": (now - day).isoformat(),
            },
            {
                "external_id": "o4",
                "customer_external_id": "c4",
                "amount": "100",
                "placed_at": (now - 30 * day).isoformat(),
            },
        ],
    )
    people = {c.external_id: c for c in Customer.objects.for_client(client_a)}
    _grant(client_a, [people["c1"], people["c3"], people["c4"]])
    _grant(client_a, [people["c2"]], purpose=AD_AUDIENCES)
    return people


def _account(client, stub, **options):
    return ad_account_save(
        client=client,
        provider=AdAccount.Provider.METRICA,
        remote_id=stub.counter,
        credentials=stub.credentials,
        conversion_target="offline_purchase",
        **options,
    )


def test_event_ingestion_keeps_the_metrica_client_id(client_a, world):
    ids = {c.external_id: c.metrica_client_id for c in world.values()}
    assert ids == {"c1": "1700000000111", "c2": "1700000000222", "c3": "", "c4": "1700000000444"}
    later = (timezone.now() + dt.timedelta(minutes=5)).isoformat()
    ingest_records(
        client=client_a,
        kind="events",
        records=[
            {
                "customer_external_id": "c1",
                "type": "visit",
                "occurred_at": later,
                "properties": {"_ym_uid": "1800000000999"},
            }
        ],
    )
    assert Customer.objects.for_client(client_a).get(external_id="c1").metrica_client_id == (
        "1800000000999"
    )


def test_only_consenting_customers_with_a_client_id_are_uploaded_once(
    client_a, world, metrica_stub
):
    account = _account(client_a, metrica_stub)
    result = metrica_conversions_upload(account=account, **FAST)
    assert result["rows"] == 1
    assert result["skipped"] == {"no_consent": 1, "no_client_id": 1}
    upload = MetricaUpload.objects.for_client(client_a).get()
    assert upload.status == MetricaUpload.Status.UPLOADED
    assert upload.revenue == Decimal("1990.50")
    assert upload.line_quantity == 1
    [row] = metrica_stub.rows[int(upload.remote_id)]
    assert row["ClientId"] == "1700000000111"
    assert row["Target"] == "offline_purchase"
    assert row["Price"] == "1990.50"
    assert row["Currency"] == "RUB"
    placed = Order.objects.for_client(client_a).get(external_id="o1").placed_at
    assert int(row["DateTime"]) == int(placed.timestamp())
    # The next day: o1 is not sent again; nothing new to send means no upload at all.
    again = metrica_conversions_upload(account=account, **FAST)
    assert again["rows"] == 0
    assert len(metrica_stub.uploadings) == 1
    assert MetricaUploadOrder.objects.for_client(client_a).count() == 1
    # c3 gets a ClientID later: only their order goes, in a new upload.
    ingest_records(
        client=client_a,
        kind="events",
        records=[
            {
                "customer_external_id": "c3",
                "type": "visit",
                "occurred_at": timezone.now().isoformat(),
                "properties": {"_ym_uid": "333"},
            }
        ],
    )
    third = metrica_conversions_upload(account=account, **FAST)
    assert third["rows"] == 1
    assert [r["ClientId"] for r in metrica_stub.rows[max(metrica_stub.rows)]] == ["333"]


def test_user_id_mode_sends_the_external_id(client_a, world, metrica_stub):
    account = _account(client_a, metrica_stub, client_id_type="USER_ID")
    result = metrica_conversions_upload(account=account, **FAST)
    assert result["skipped"] == {"no_consent": 1, "no_client_id": 0}
    [upload] = metrica_stub.uploadings.values()
    assert upload["client_id_type"] == "USER_ID"
    assert sorted(r["UserId"] for r in metrica_stub.rows[upload["id"]]) == ["c1", "c3"]


def test_a_withdrawal_keeps_the_person_out(client_a, world, metrica_stub):
    _grant(client_a, [world["c1"]], action=ConsentRecord.Action.WITHDRAWN)
    account = _account(client_a, metrica_stub)
    result = metrica_conversions_upload(account=account, **FAST)
    assert result["rows"] == 0
    assert result["skipped"]["no_consent"] == 2
    assert not metrica_stub.uploadings


def test_status_is_polled_until_final(client_a, world, metrica_stub):
    account = _account(client_a, metrica_stub)
    metrica_conversions_upload(account=account, **FAST)
    assert metrica_accounts_polling() == [account.pk]
    assert metrica_uploads_poll(account=account, **FAST) == 1
    upload = MetricaUpload.objects.for_client(client_a).get()
    assert upload.status == MetricaUpload.Status.PROCESSED
    assert upload.finished_at is not None
    assert metrica_accounts_polling() == []
    assert metrica_uploads_poll(account=account, **FAST) == 0


def test_linkage_failure_is_shown(client_a, world, metrica_stub):
    metrica_stub.linkage_failure = True
    account = _account(client_a, metrica_stub)
    metrica_conversions_upload(account=account, **FAST)
    metrica_uploads_poll(account=account, **FAST)
    assert MetricaUpload.objects.for_client(client_a).get().status == "LINKAGE_FAILURE"


def test_a_refused_upload_gives_the_orders_back(client_a, world, metrica_stub):
    account = _account(client_a, metrica_stub)
    metrica_stub.counters = {"1"}  # the token lost access to the counter
    outcome = ad_account_import(account=account, **FAST)
    assert "denied" in outcome["upload_error"]
    upload = MetricaUpload.objects.for_client(client_a).get()
    assert upload.status == MetricaUpload.Status.FAILED
    assert "denied" in upload.error
    assert not MetricaUploadOrder.objects.for_client(client_a).exists()
    metrica_stub.counters = {account.remote_id}
    assert metrica_conversions_upload(account=account, **FAST)["rows"] == 1


def test_a_lost_reply_is_found_by_its_comment_not_sent_twice(client_a, world, metrica_stub):
    account = _account(client_a, metrica_stub)
    metrica_stub.fault_rate = 1.0
    metrica_stub.fault_kinds = ("timeout",)
    metrica_stub.timeout_processes = 1.0  # the upload is done, the reply comes too late
    metrica_stub.timeout_sleep = 0.5
    metrica_conversions_upload(account=account, **{**FAST, "timeout": 0.2})
    upload = MetricaUpload.objects.for_client(client_a).get()
    assert upload.status == MetricaUpload.Status.PENDING
    assert len(metrica_stub.uploadings) == 1
    metrica_stub.fault_rate = 0.0
    metrica_conversions_upload(account=account, **FAST)
    upload.refresh_from_db()
    assert upload.status in (MetricaUpload.Status.UPLOADED, MetricaUpload.Status.PROCESSED)
    assert upload.remote_id == str(next(iter(metrica_stub.uploadings)))
    assert len(metrica_stub.uploadings) == 1
    assert MetricaUpload.objects.for_client(client_a).count() == 1


def test_erasure_blanks_the_client_id(client_a, world):
    customer_erase(customer=world["c1"])
    assert Customer.objects.for_client(client_a).get(pk=world["c1"].pk).metrica_client_id == ""


def test_the_poll_task_goes_on_past_an_account_it_cannot_read(client_a, world, metrica_stub):
    from reports.tasks import metrica_uploads_poll_task

    account = _account(client_a, metrica_stub)
    metrica_conversions_upload(account=account, **FAST)
    broken = ad_account_save(
        client=client_a,
        provider=AdAccount.Provider.METRICA,
        remote_id="999",
        credentials={"token": "t"},
        conversion_target="buy",
    )
    AdAccount.objects.for_client(client_a).filter(pk=broken.pk).update(
        credentials_encrypted="not-a-fernet-token"
    )
    MetricaUpload.objects.create(
        client=client_a,
        account=broken,
        counter="999",
        client_id_type="CLIENT_ID",
        comment="broken",
        status=MetricaUpload.Status.UPLOADED,
        remote_id="1",
    )
    done = metrica_uploads_poll_task()
    assert done == {account.pk: 1, broken.pk: 0}
