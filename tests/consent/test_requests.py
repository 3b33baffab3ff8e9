"""Data-subject requests: deadlines, withdrawal at once, the access archive, erasure, the admin."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from agency.models import AuditLogEntry
from agency.roles import ACCOUNT_MANAGER
from clients.ingest import ingest_records
from clients.models import Customer, Event, Order
from consent import requests as dsr_module
from consent.hooks import ArchiveSection
from consent.models import ConsentPurpose, ConsentRecord, DataSubjectRequest
from consent.requests import (
    customer_erase,
    customers_not_erased,
    dsr_access_archive,
    dsr_complete,
    dsr_create,
    dsr_subject_set,
)
from consent.selectors import consent_history, consent_is_granted
from consent.services import (
    ConsentError,
    Evidence,
    consent_log_verify,
    consent_record_append,
    consent_subject_link,
)

pytestmark = pytest.mark.django_db

MSK = ZoneInfo("Europe/Moscow")
Kind = DataSubjectRequest.Kind
Status = DataSubjectRequest.Status


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def grant(client, customer, purpose="email_marketing", at=None, evidence=None, **kw):
    return consent_record_append(
        client=client,
        customer=customer,
        purpose_code=purpose,
        action="granted",
        source="web_form",
        at=at,
        evidence=evidence,
        **kw,
    )


def add_history(client, external_id: str, prefix: str) -> None:
    """Two orders and two events of one customer."""
    ingest_records(
        client=client,
        kind="orders",
        records=[
            {
                "external_id": f"{prefix}-order-{i}",
                "customer_external_id": external_id,
                "placed_at": f"2026-03-0{i + 1}T12:00:00+03:00",
                "amount": f"{1000 + i}.50",
                "items": [{"sku": f"SKU-{prefix}-{i}", "qty": 1, "price": 1000 + i}],
            }
            for i in range(2)
        ],
    )
    ingest_records(
        client=client,
        kind="events",
        records=[
            {
                "external_id": f"{prefix}-event-{i}",
                "customer_external_id": external_id,
                "type": "visit",
                "occurred_at": f"2026-03-0{i + 1}T13:00:00+03:00",
                "properties": {"page": f"https://shop.example.ru/{prefix}/{i}"},
                "utm_source": f"utm-{prefix}",
                "utm_campaign": f"camp-{prefix}",
            }
            for i in range(2)
        ],
    )


def archive_files(request: DataSubjectRequest) -> dict[str, bytes]:
    with request.archive.open("rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


# --------------------------------------------------------------------------------------------
# Deadlines


def test_due_dates_by_kind_across_the_2026_new_year(client_a):
    received = datetime(2025, 12, 29, 12, 0, tzinfo=MSK)
    due = {
        kind: dsr_create(
            client=client_a, kind=kind, subject_contact="a@example.ru", received_at=received
        ).due_date
        for kind in Kind.values
    }
    # Counted by hand: 30.12, then 31.12-11.01 off, 12-16.01, 19-22.01.
    assert due == {
        Kind.ACCESS: date(2026, 1, 22),
        Kind.RECTIFICATION: date(2026, 1, 19),
        Kind.ERASURE: date(2026, 1, 22),
        Kind.WITHDRAWAL: date(2026, 1, 28),  # 30 calendar days
        Kind.STOP_PROCESSING: date(2026, 1, 22),
    }


def test_due_dates_across_the_2026_may_holidays(client_a):
    received = datetime(2026, 4, 30, 10, 0, tzinfo=MSK)

    def due(kind):
        return dsr_create(
            client=client_a, kind=kind, subject_contact="a@example.ru", received_at=received
        ).due_date

    # 1-3.05 off, 4-8.05, 9-11.05 off, 12-15.05, 18.05.
    assert due(Kind.ACCESS) == date(2026, 5, 18)
    assert due(Kind.RECTIFICATION) == date(2026, 5, 13)


def test_day_of_receipt_is_the_clients_local_date(client_a, client_b):
    client_b.time_zone = "Asia/Vladivostok"
    client_b.save(update_fields=["time_zone"])
    moment = datetime(2025, 12, 29, 15, 0, tzinfo=ZoneInfo("UTC"))  # 18:00 MSK, 01:00 on 30.12 VVO

    moscow = dsr_create(client=client_a, kind=Kind.ACCESS, subject_contact="x", received_at=moment)
    vladivostok = dsr_create(
        client=client_b, kind=Kind.ACCESS, subject_contact="x", received_at=moment
    )

    assert moscow.due_date == date(2026, 1, 22)
    assert vladivostok.due_date == date(2026, 1, 23)  # 30.12 is the receipt day there


def test_request_from_the_future_or_of_another_clients_customer_is_refused(
    client_a, client_b, customers_a
):
    with pytest.raises(ConsentError, match="будущем"):
        dsr_create(
            client=client_a,
            kind=Kind.ACCESS,
            subject_contact="x",
            received_at=timezone.now() + timedelta(days=1),
        )
    with pytest.raises(ConsentError, match="не найден"):
        dsr_create(client=client_b, kind=Kind.ACCESS, customer=customers_a[0])
    assert not DataSubjectRequest.objects.unscoped().exists()


# --------------------------------------------------------------------------------------------
# Withdrawal and stop_processing: in the ledger at once


def test_withdrawal_request_withdraws_marketing_consents_at_once(client_a, texts_a, customers_a):
    person, other = customers_a[0], customers_a[1]
    for purpose in ("email_marketing", "sms_marketing", "ad_audiences", "analytics_cookies"):
        grant(client_a, person, purpose)
    grant(client_a, other, "email_marketing")

    request = dsr_create(
        client=client_a, kind=Kind.WITHDRAWAL, customer=person, details="Отзываю согласие"
    )

    for purpose in ("email_marketing", "sms_marketing", "ad_audiences"):
        assert consent_is_granted(customer=person, purpose_code=purpose) is False
    # Analytics cookies are not marketing: the banner governs them.
    assert consent_is_granted(customer=person, purpose_code="analytics_cookies") is True
    assert consent_is_granted(customer=other, purpose_code="email_marketing") is True
    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    assert request.completed_at is not None
    assert "Отзыв записан в журнал" in request.resolution
    withdrawals = ConsentRecord.objects.for_client(client_a).filter(
        customer=person, action="withdrawn"
    )
    assert {w.source for w in withdrawals} == {"subject_request"}
    assert {w.details["request_id"] for w in withdrawals} == {request.pk}
    assert {w.purpose.code for w in withdrawals} == set(dsr_module.WITHDRAWAL_PURPOSES)
    assert consent_log_verify(client=client_a).ok


def test_withdrawal_is_not_undone_by_a_late_back_dated_grant(client_a, texts_a, customers_a):
    person = customers_a[0]
    dsr_create(client=client_a, kind=Kind.WITHDRAWAL, customer=person)
    # The CRM syncs late a push consent it collected yesterday, before the request.
    grant(client_a, person, "push_marketing", at=timezone.now() - timedelta(days=1))

    assert consent_is_granted(customer=person, purpose_code="push_marketing") is False


def test_stop_processing_withdraws_every_purpose(client_a, texts_a, customers_a):
    person = customers_a[0]
    codes = list(ConsentPurpose.objects.values_list("code", flat=True))
    for code in codes:
        grant(client_a, person, code)
    # A cookie subject linked to the person counts as him.
    consent_subject_link(client=client_a, subject_id="cookie-1", customer=person)

    request = dsr_create(client=client_a, kind=Kind.STOP_PROCESSING, customer=person)

    assert [c for c in codes if consent_is_granted(customer=person, purpose_code=c)] == []
    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    assert "по всем целям" in request.resolution
    assert consent_log_verify(client=client_a).ok


def test_withdrawal_of_an_unknown_person_waits_until_staff_name_him(client_a, texts_a, customers_a):
    person = customers_a[0]
    grant(client_a, person, "sms_marketing")

    request = dsr_create(
        client=client_a, kind=Kind.WITHDRAWAL, subject_contact="SMS с номера +79160000000"
    )
    assert request.status == Status.RECEIVED
    assert consent_is_granted(customer=person, purpose_code="sms_marketing") is True

    dsr_subject_set(request=request, customer=person)

    assert consent_is_granted(customer=person, purpose_code="sms_marketing") is False
    request.refresh_from_db()
    assert (request.status, request.customer_id) == (Status.COMPLETED, person.pk)


# --------------------------------------------------------------------------------------------
# Access


def test_access_archive_holds_the_persons_data_and_nothing_of_anyone_else(
    client_a, client_b, texts_a, customers_a
):
    person, other = customers_a[0], customers_a[1]
    add_history(client_a, person.external_id, "mine")
    add_history(client_a, other.external_id, "theirs")
    ingest_records(
        client=client_b, kind="customers", records=[{"external_id": "p0", "email": "b@b.ru"}]
    )
    evidence = Evidence(
        ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64)",
        url="https://shop.example.ru/subscribe",
        form_id="footer-form",
    )
    grant(client_a, person, "email_marketing", evidence=evidence)
    grant(client_a, other, "email_marketing", evidence=Evidence(ip="198.51.100.9"))
    request = dsr_create(client=client_a, kind=Kind.ACCESS, customer=person)

    with pytest.raises(ConsentError, match="архив"):
        dsr_complete(request=request)
    dsr_access_archive(request=request)

    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS
    files = archive_files(request)
    assert {
        "README.txt",
        "data.json",
        "profile.csv",
        "orders.csv",
        "events.csv",
        "consent_records.csv",
        "consent_texts.csv",
        "consent_links.csv",
        "consent_state.csv",
        "subject_requests.csv",
    } <= set(files)
    data = json.loads(files["data.json"])
    sections = data["sections"]
    assert sections["profile"][0]["email"] == "p0@example.ru"
    assert [o["external_id"] for o in sections["orders"]] == ["mine-order-0", "mine-order-1"]
    assert sections["orders"][0]["amount"] == "1000.50"
    assert [e["external_id"] for e in sections["events"]] == ["mine-event-0", "mine-event-1"]
    (record,) = sections["consent_records"]
    assert record["ip"] == "203.0.113.7"
    assert record["user_agent"] == "Mozilla/5.0 (X11; Linux x86_64)"
    assert record["url"] == "https://shop.example.ru/subscribe"
    assert record["form_id"] == "footer-form"
    assert record["text_version"] == 1
    (text,) = sections["consent_texts"]
    assert text["purpose"] == "email_marketing"
    assert text["operator_name"] == "ООО «Альфа Маркет»"
    state = {s["purpose"]: s["granted"] for s in sections["consent_state"]}
    assert state["email_marketing"] is True
    assert state["sms_marketing"] is False
    assert "mine-order-0" in files["orders.csv"].decode("utf-8-sig")
    assert "203.0.113.7" in files["consent_records.csv"].decode("utf-8-sig")
    everything = b"".join(files.values()).decode("utf-8", errors="replace")
    for foreign in ("p1@example.ru", "theirs-", "198.51.100.9", "b@b.ru"):
        assert foreign not in everything

    dsr_complete(request=request)
    request.refresh_from_db()
    assert request.status == Status.COMPLETED


def test_access_archive_csv_neutralises_formulas(client_a, customers_a):
    formula = '=HYPERLINK("http://x","click")'
    customer = customers_a[0]
    Customer.objects.for_client(client_a).filter(pk=customer.pk).update(first_name=formula)
    customer.refresh_from_db()
    request = dsr_create(client=client_a, kind=Kind.ACCESS, customer=customer)

    dsr_access_archive(request=request)

    data = archive_files(request)["profile.csv"]
    assert data.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8
    (profile,) = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    assert profile["first_name"] == "'" + formula
    assert profile["phone"] == "'+79160000000"
    assert profile["external_id"] == "p0"


def test_access_archive_takes_sections_registered_by_later_apps(client_a, customers_a, monkeypatch):
    def memberships(customer):
        return [{"segment": "VIP", "customer": customer.external_id}]

    section = ArchiveSection(
        app="segments",
        name="segment_memberships",
        title="участие в сегментах",
        models=("segments.SegmentMembership",),
        build=memberships,
    )
    monkeypatch.setattr(dsr_module, "ACCESS_ARCHIVE_SECTIONS", [section])
    request = dsr_create(client=client_a, kind=Kind.ACCESS, customer=customers_a[0])

    dsr_access_archive(request=request)

    files = archive_files(request)
    assert "VIP" in files["segment_memberships.csv"].decode("utf-8-sig")
    assert "segment_memberships.csv — участие в сегментах (записей: 1)" in files[
        "README.txt"
    ].decode("utf-8")
    assert json.loads(files["data.json"])["sections"]["segment_memberships"] == [
        {"segment": "VIP", "customer": "p0"}
    ]


def test_rebuilding_the_archive_replaces_the_old_file(
    client_a, customers_a, media_root, django_capture_on_commit_callbacks
):
    request = dsr_create(client=client_a, kind=Kind.ACCESS, customer=customers_a[0])
    dsr_access_archive(request=request)
    first = media_root / request.archive.name

    with django_capture_on_commit_callbacks(execute=True):
        dsr_access_archive(request=request)

    assert not first.exists()
    assert (media_root / request.archive.name).exists()


# --------------------------------------------------------------------------------------------
# Erasure


def test_erasure_clears_the_person_and_keeps_orders_and_a_verifying_ledger(
    client_a, texts_a, customers_a, media_root, django_capture_on_commit_callbacks
):
    person, other = customers_a[0], customers_a[1]
    Customer.objects.for_client(client_a).filter(pk=person.pk).update(
        first_name="Анна", last_name="Иванова", city="Москва", attributes={"vip": True}
    )
    add_history(client_a, person.external_id, "mine")
    add_history(client_a, other.external_id, "theirs")
    consent_subject_link(client=client_a, subject_id="cookie-anna", customer=person)
    consent_record_append(
        client=client_a,
        subject_id="cookie-anna",
        purpose_code="analytics_cookies",
        action="granted",
        source="cookie_banner",
        evidence=Evidence(ip="203.0.113.7", user_agent="Firefox"),
    )
    for purpose in ("email_marketing", "ad_audiences"):
        grant(client_a, person, purpose, evidence=Evidence(ip="203.0.113.7", url="https://x.ru"))
    grant(client_a, other, "email_marketing")
    orders = Order.objects.for_client(client_a)
    revenue_before = orders.aggregate(total=Sum("amount"))["total"]
    access = dsr_create(client=client_a, kind=Kind.ACCESS, customer=person)
    dsr_access_archive(request=access)
    archive_path = media_root / access.archive.name
    request = dsr_create(client=client_a, kind=Kind.ERASURE, customer=person)

    with django_capture_on_commit_callbacks(execute=True):
        customer_erase(customer=person, request=request)

    person.refresh_from_db()
    for name in ("email", "phone", "first_name", "last_name", "city", "source"):
        assert getattr(person, name) == "", name
    assert person.attributes == {}
    assert person.external_id == f"erased-{person.pk}"
    assert person.erased_at is not None
    # Orders stay, with their amounts and items, on the anonymised customer.
    assert orders.aggregate(total=Sum("amount"))["total"] == revenue_before == Decimal("4004.00")
    assert orders.filter(customer=person).count() == 2
    assert orders.get(external_id="mine-order-0").items[0]["sku"] == "SKU-mine-0"
    for event in Event.objects.for_client(client_a).filter(customer=person):
        assert (event.properties, event.utm_source, event.utm_campaign) == ({}, "", "")
    assert event.type == "visit"
    # The ledger: personal fields gone, hashes kept, an erasure record, the chain verifies.
    records = ConsentRecord.objects.for_client(client_a)
    mine = records.filter(customer=person).exclude(action="erasure")
    assert mine.exists()
    assert all(r.ip is None and r.url == "" and r.erased_at for r in mine)
    assert records.filter(customer=person, action="erasure").count() == 1
    assert not records.filter(subject_id="cookie-anna").exists()
    assert consent_log_verify(client=client_a).ok
    for code in ("email_marketing", "ad_audiences", "analytics_cookies"):
        assert consent_is_granted(customer=person, purpose_code=code) is False
    # Out of every audience: erased customers are excluded before consent is even asked.
    assert person not in customers_not_erased(Customer.objects.for_client(client_a))
    assert other in customers_not_erased(Customer.objects.for_client(client_a))
    # The other customer is untouched.
    other.refresh_from_db()
    assert other.email == "p1@example.ru"
    assert consent_is_granted(customer=other, purpose_code="email_marketing") is True
    assert (
        Event.objects.for_client(client_a).filter(customer=other, utm_source="utm-theirs").count()
        == 2
    )
    # The access archive built for him is gone; the requests stay as evidence.
    assert not archive_path.exists()
    access.refresh_from_db()
    assert not access.archive
    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    assert "удалены" in request.resolution
    entry = AuditLogEntry.objects.get(action="customer_erased")
    assert entry.object_repr == f"erased-{person.pk}"
    assert "p0@example.ru" not in json.dumps(entry.details)


def test_crm_resending_an_erased_person_creates_a_new_customer_without_consents(
    client_a, texts_a, customers_a
):
    person = customers_a[0]
    grant(client_a, person, "email_marketing")
    customer_erase(customer=person)

    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": "p0", "email": "p0@example.ru"}],
    )

    again = Customer.objects.for_client(client_a).get(external_id="p0")
    assert again.pk != person.pk
    assert again.erased_at is None
    assert not consent_history(customer=again).exists()
    assert consent_is_granted(customer=again, purpose_code="email_marketing") is False
    person.refresh_from_db()
    assert person.email == ""


def test_erasure_is_idempotent_and_only_for_erasure_requests(client_a, texts_a, customers_a):
    person = customers_a[0]
    access = dsr_create(client=client_a, kind=Kind.ACCESS, customer=person)
    with pytest.raises(ConsentError, match="запросу на удаление"):
        customer_erase(customer=person, request=access)
    assert Customer.objects.for_client(client_a).get(pk=person.pk).erased_at is None

    customer_erase(customer=person)
    erased_at = Customer.objects.for_client(client_a).get(pk=person.pk).erased_at
    second = dsr_create(
        client=client_a, kind=Kind.ERASURE, subject_contact="p0@example.ru (повторно)"
    )
    customer_erase(customer=person, request=second)

    second.refresh_from_db()
    assert second.status == Status.COMPLETED
    assert "ранее" in second.resolution
    assert Customer.objects.for_client(client_a).get(pk=person.pk).erased_at == erased_at
    assert (
        ConsentRecord.objects.for_client(client_a).filter(customer=person, action="erasure").count()
        <= 1
    )
    assert consent_log_verify(client=client_a).ok


# --------------------------------------------------------------------------------------------
# Admin


@pytest.fixture
def manager_b(django_user_model, client_b):
    user = django_user_model.objects.create_user(
        username="manager-b", password="pass-12345", is_staff=True
    )
    user.groups.add(Group.objects.get_or_create(name=ACCOUNT_MANAGER)[0])
    client_b.account_managers.add(user)
    return user


CHANGELIST = "admin:consent_datasubjectrequest_changelist"


def _received(days_ago: int) -> datetime:
    return timezone.now() - timedelta(days=days_ago)


def test_admin_queue_is_sorted_by_due_date_open_first_overdue_in_red(
    client, account_manager, client_a
):
    late = dsr_create(
        client=client_a, kind=Kind.ACCESS, subject_contact="late", received_at=_received(40)
    )
    soon = dsr_create(
        client=client_a, kind=Kind.RECTIFICATION, subject_contact="soon", received_at=_received(1)
    )
    later = dsr_create(client=client_a, kind=Kind.ACCESS, subject_contact="later")
    done = dsr_create(
        client=client_a, kind=Kind.ERASURE, subject_contact="done", received_at=_received(60)
    )
    dsr_complete(request=done, resolution="Данных о субъекте нет.")
    client.force_login(account_manager)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [
        late.pk,
        soon.pk,
        later.pk,
        done.pk,
    ]
    assert late.is_overdue
    assert not soon.is_overdue
    content = response.content.decode()
    assert content.count("dsr-overdue") == 1
    assert "просрочен на" in content

    overdue = client.get(reverse(CHANGELIST), {"overdue": "yes"})
    assert [r.pk for r in overdue.context["cl"].result_list] == [late.pk]


def test_admin_intake_form_sets_the_due_date(client, account_manager, client_a, customers_a):
    client.force_login(account_manager)

    response = client.post(
        reverse("admin:consent_datasubjectrequest_add"),
        {
            "client": client_a.pk,
            "kind": Kind.ACCESS,
            "customer": customers_a[0].pk,
            "subject_contact": "p0@example.ru",
            "details": "Прошу сообщить, какие данные обо мне хранятся",
            "received_at_0": "30.04.2026",
            "received_at_1": "10:00:00",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    request = DataSubjectRequest.objects.for_client(client_a).get()
    assert request.due_date == date(2026, 5, 18)
    assert request.customer == customers_a[0]
    assert AuditLogEntry.objects.filter(action="dsr_received", client=client_a).exists()


def test_admin_intake_refuses_another_clients_customer(
    client, agency_admin, client_a, client_b, customers_a
):
    client.force_login(agency_admin)

    response = client.post(
        reverse("admin:consent_datasubjectrequest_add"),
        {
            "client": client_b.pk,
            "kind": Kind.ACCESS,
            "customer": customers_a[0].pk,
            "received_at_0": "30.04.2026",
            "received_at_1": "10:00:00",
        },
    )

    assert response.status_code == 200
    assert "customer" in response.context["adminform"].form.errors
    assert not DataSubjectRequest.objects.unscoped().exists()


def test_admin_builds_archive_and_serves_it_only_through_the_admin(
    client, account_manager, analyst, client_a, customers_a
):
    request = dsr_create(client=client_a, kind=Kind.ACCESS, customer=customers_a[0])
    client.force_login(account_manager)

    client.post(
        reverse(CHANGELIST),
        {"action": "build_access_archive", "_selected_action": [request.pk]},
    )

    request.refresh_from_db()
    assert request.archive
    url = reverse("admin:consent_datasubjectrequest_archive", args=[request.pk])
    download = client.get(url)
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).testzip()
    assert AuditLogEntry.objects.filter(action="dsr_access_archive_downloaded").count() == 1
    # Analysts read the queue but do not handle requests: no personal-data download.
    client.force_login(analyst)
    assert client.get(url).status_code == 404

    client.force_login(account_manager)
    client.post(reverse(CHANGELIST), {"action": "mark_completed", "_selected_action": [request.pk]})
    request.refresh_from_db()
    assert request.status == Status.COMPLETED


def test_admin_erase_action_asks_for_confirmation_first(
    client, account_manager, client_a, texts_a, customers_a
):
    person = customers_a[0]
    request = dsr_create(client=client_a, kind=Kind.ERASURE, customer=person)
    client.force_login(account_manager)
    data = {"action": "erase_person", "_selected_action": [request.pk]}

    confirm = client.post(reverse(CHANGELIST), data)

    assert confirm.status_code == 200
    assert "Да, удалить данные" in confirm.content.decode()
    assert Customer.objects.for_client(client_a).get(pk=person.pk).erased_at is None

    done = client.post(reverse(CHANGELIST), {**data, "post": "yes"})

    assert done.status_code == 302
    person.refresh_from_db()
    assert person.erased_at is not None
    assert person.email == ""
    request.refresh_from_db()
    assert request.status == Status.COMPLETED


def test_other_clients_account_manager_cannot_see_the_request(
    client, manager_b, client_a, customers_a
):
    request = dsr_create(client=client_a, kind=Kind.ACCESS, customer=customers_a[0])
    dsr_access_archive(request=request)
    client.force_login(manager_b)

    listing = client.get(reverse(CHANGELIST))
    change = client.get(reverse("admin:consent_datasubjectrequest_change", args=[request.pk]))
    archive = client.get(reverse("admin:consent_datasubjectrequest_archive", args=[request.pk]))
    erase = client.post(
        reverse(CHANGELIST),
        {"action": "erase_person", "_selected_action": [request.pk], "post": "yes"},
    )

    assert list(listing.context["cl"].result_list) == []
    assert change.status_code == 302
    assert change.url == reverse("admin:index")
    assert archive.status_code == 404
    assert erase.status_code in (200, 302)
    assert Customer.objects.for_client(client_a).get(pk=customers_a[0].pk).erased_at is None
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS


def test_admin_pages_render_and_staff_can_name_the_person_later(
    client, account_manager, client_a, texts_a, customers_a
):
    person = customers_a[0]
    grant(client_a, person, "email_marketing")
    request = dsr_create(client=client_a, kind=Kind.WITHDRAWAL, subject_contact="письмо без имени")
    client.force_login(account_manager)
    assert client.get(reverse("admin:consent_datasubjectrequest_add")).status_code == 200
    change_url = reverse("admin:consent_datasubjectrequest_change", args=[request.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert "ст. 21 ч. 5" in page.content.decode()  # the deadline's basis is shown

    response = client.post(
        change_url,
        {
            "customer": person.pk,
            "subject_contact": "письмо без имени",
            "details": "",
            "assignee": account_manager.pk,
            "resolution": "",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    request.refresh_from_db()
    assert request.customer == person
    assert request.status == Status.COMPLETED
    assert request.assignee == account_manager
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is False
    # A closed request is read-only evidence.
    closed = client.get(change_url).content.decode()
    assert 'name="resolution"' not in closed


def test_erased_person_is_never_consented_and_read_only_in_admin(
    client, agency_admin, client_a, texts_a, customers_a
):
    from consent.selectors import consent_is_granted, customers_consented_for
    from consent.services import consent_record_append

    person = customers_a[0]
    consent_record_append(
        client=client_a,
        customer=person,
        purpose_code="ad_audiences",
        action="granted",
        source="api",
    )
    assert consent_is_granted(customer=person, purpose_code="ad_audiences")
    customer_erase(customer=person)
    person.refresh_from_db()
    assert not consent_is_granted(customer=person, purpose_code="ad_audiences")
    consented = customers_consented_for(Customer.objects.for_client(client_a), "ad_audiences")
    assert person.pk not in set(consented.values_list("pk", flat=True))

    client.force_login(agency_admin)
    page = client.get(reverse("admin:clients_customer_change", args=[person.pk]))
    assert page.status_code == 200
    assert b'name="email"' not in page.content
