"""The staff admin: client scoping by role, role permissions, exact search, API keys shown once,
the read-only audit log and CSV uploads."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from agency.admin_base import EstimatedCountPaginator
from agency.models import AuditLogEntry
from agency.roles import ACCOUNT_MANAGER
from agency.tenancy import TenantScopeError
from clients.models import ApiKey, Customer, ImportJob, Order
from clients.selectors import api_key_find_active, api_key_hash

pytestmark = pytest.mark.django_db

RAW_KEY_RE = re.compile(r"cvm_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def customer_a(client_a):
    return Customer.objects.create(
        client=client_a,
        external_id="A-1",
        email="anna.ivanova@mail.ru",
        phone="+79161234567",
        first_name="Анна",
        last_name="Иванова",
    )


@pytest.fixture
def customer_b(client_b):
    return Customer.objects.create(
        client=client_b,
        external_id="B-1",
        email="boris.petrov@yandex.ru",
        phone="+79037654321",
        first_name="Борис",
        last_name="Петров",
    )


@pytest.fixture
def manager_b(django_user_model, client_b):
    user = django_user_model.objects.create_user(
        username="manager-b", password="pass-12345", is_staff=True
    )
    user.groups.add(Group.objects.get_or_create(name=ACCOUNT_MANAGER)[0])
    client_b.account_managers.add(user)
    return user


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def _customer_post(customer, **changes) -> dict:
    data = {
        "external_id": customer.external_id,
        "email": customer.email,
        "phone": customer.phone,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "city": customer.city,
        "attributes": "{}",
        "first_seen_0": customer.first_seen.strftime("%d.%m.%Y"),
        "first_seen_1": customer.first_seen.strftime("%H:%M:%S"),
        "source": customer.source,
    }
    data.update(changes)
    return data


# --------------------------------------------------------------------------------------------
# Scoping by role


def test_account_manager_sees_only_assigned_clients_customers(
    client, account_manager, customer_a, customer_b
):
    client.force_login(account_manager)

    response = client.get(reverse("admin:clients_customer_changelist"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "A-1" in content
    assert "B-1" not in content
    assert "Бета Стор" not in content  # not even in the client filter


def test_account_manager_gets_not_found_for_other_clients_customer(
    client, account_manager, customer_b
):
    client.force_login(account_manager)
    missing_url = reverse("admin:clients_customer_change", args=[customer_b.pk + 1000])

    foreign = client.get(_change_url(customer_b))
    missing = client.get(missing_url)

    # The same answer as for an id that does not exist: back to the index, nothing shown.
    assert foreign.status_code == missing.status_code == 302
    assert foreign.url == missing.url == reverse("admin:index")
    assert "Петров" not in client.get(foreign.url).content.decode()


def test_account_manager_cannot_change_other_clients_customer(client, account_manager, customer_b):
    client.force_login(account_manager)

    response = client.post(_change_url(customer_b), _customer_post(customer_b, first_name="X"))

    assert response.status_code == 302
    customer_b.refresh_from_db()
    assert customer_b.first_name == "Борис"


def test_account_manager_sees_only_own_clients_in_client_list(
    client, account_manager, client_a, client_b
):
    client.force_login(account_manager)

    content = client.get(reverse("admin:clients_client_changelist")).content.decode()

    assert "Альфа Маркет" in content
    assert "Бета Стор" not in content


def test_agency_admin_sees_all_clients_customers(client, agency_admin, customer_a, customer_b):
    client.force_login(agency_admin)

    content = client.get(reverse("admin:clients_customer_changelist")).content.decode()

    assert "A-1" in content
    assert "B-1" in content


def test_analyst_sees_all_but_cannot_add_or_change(client, analyst, customer_a, customer_b):
    client.force_login(analyst)

    listing = client.get(reverse("admin:clients_customer_changelist")).content.decode()
    add = client.get(reverse("admin:clients_customer_add"))
    change = client.post(_change_url(customer_a), _customer_post(customer_a, first_name="X"))
    delete = client.post(
        reverse("admin:clients_customer_delete", args=[customer_a.pk]), {"post": "yes"}
    )

    assert "A-1" in listing
    assert "B-1" in listing
    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    customer_a.refresh_from_db()
    assert customer_a.first_name == "Анна"
    assert Customer.objects.for_client(customer_a.client).count() == 1


def test_analyst_change_page_is_read_only(client, analyst, customer_a):
    client.force_login(analyst)

    response = client.get(_change_url(customer_a))

    assert response.status_code == 200
    assert 'name="first_name"' not in response.content.decode()  # shown, not editable


def test_staff_without_role_sees_nothing(client, django_user_model, customer_a):
    user = django_user_model.objects.create_user(username="norole", password="x", is_staff=True)
    client.force_login(user)

    response = client.get(reverse("admin:clients_customer_changelist"))

    assert response.status_code == 403


def test_account_manager_cannot_delete_customer(client, account_manager, customer_a):
    client.force_login(account_manager)

    response = client.post(
        reverse("admin:clients_customer_delete", args=[customer_a.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert Customer.objects.for_client(customer_a.client).filter(pk=customer_a.pk).exists()


def test_no_bulk_delete_action_on_client_data(client, agency_admin, customer_a):
    client.force_login(agency_admin)

    content = client.get(reverse("admin:clients_customer_changelist")).content.decode()

    assert "delete_selected" not in content


def test_foreign_key_choices_are_scoped(client, account_manager, client_a, client_b):
    client.force_login(account_manager)

    content = client.get(reverse("admin:clients_customer_add")).content.decode()

    assert "Альфа Маркет" in content
    assert "Бета Стор" not in content


def test_order_cannot_point_to_another_clients_customer(client, agency_admin, client_a, customer_b):
    client.force_login(agency_admin)

    response = client.post(
        reverse("admin:clients_order_add"),
        {
            "client": client_a.pk,
            "external_id": "O-1",
            "customer": customer_b.pk,
            "placed_at_0": "01.06.2025",
            "placed_at_1": "12:00:00",
            "amount": "1000.00",
            "status": "paid",
            "channel": "web",
            "items": "[]",
        },
    )

    assert response.status_code == 200
    assert "другому клиенту" in response.content.decode()
    assert not Order.objects.unscoped().exists()


def test_raw_id_widget_shows_customer_of_the_order(client, agency_admin, customer_a):
    order = Order.objects.create(
        client=customer_a.client,
        customer=customer_a,
        external_id="O-7",
        placed_at="2025-06-01T12:00:00+03:00",
        amount="100.00",
    )
    client.force_login(agency_admin)

    response = client.get(_change_url(order))

    assert response.status_code == 200
    assert "Анна Иванова" in response.content.decode()


# --------------------------------------------------------------------------------------------
# Search: exact, normalised, indexed


def test_search_customer_by_phone_in_national_format(client, account_manager, customer_a):
    Customer.objects.create(client=customer_a.client, external_id="A-2", phone="+79160000000")
    client.force_login(account_manager)

    response = client.get(reverse("admin:clients_customer_changelist"), {"q": "8 (916) 123-45-67"})

    content = response.content.decode()
    assert response.status_code == 200
    assert "A-1" in content
    assert "A-2" not in content


def test_search_customer_by_email_in_any_case(client, account_manager, customer_a):
    client.force_login(account_manager)

    response = client.get(
        reverse("admin:clients_customer_changelist"), {"q": "  Anna.Ivanova@MAIL.ru "}
    )

    assert "A-1" in response.content.decode()


def test_search_does_not_cross_clients(client, account_manager, customer_b):
    client.force_login(account_manager)

    response = client.get(reverse("admin:clients_customer_changelist"), {"q": "B-1"})

    assert "Петров" not in response.content.decode()


def test_search_orders_by_customer_phone(client, account_manager, customer_a):
    Order.objects.create(
        client=customer_a.client,
        customer=customer_a,
        external_id="O-42",
        placed_at="2025-06-01T12:00:00+03:00",
        amount="100.00",
    )
    client.force_login(account_manager)

    response = client.get(reverse("admin:clients_order_changelist"), {"q": "+7 916 123 45 67"})

    assert "O-42" in response.content.decode()


def test_estimated_count_paginator_counts_past_the_exact_limit(customer_a, monkeypatch):
    for i in range(4):
        Customer.objects.create(client=customer_a.client, external_id=f"P-{i}")
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 2)
    queryset = Customer.objects.for_client(customer_a.client).order_by("pk")

    paginator = EstimatedCountPaginator(queryset, 2)

    # SQLite counts; PostgreSQL estimates, but never below what it has already counted.
    assert paginator.count >= 3


def test_tenant_default_manager_still_fails_closed():
    with pytest.raises(TenantScopeError):
        list(Customer.objects.all())


# --------------------------------------------------------------------------------------------
# API keys


def test_creating_api_key_shows_raw_key_once_and_stores_only_hash(
    client, account_manager, client_a
):
    client.force_login(account_manager)

    response = client.post(
        reverse("admin:clients_apikey_add"),
        {"client": client_a.pk, "name": "Битрикс24", "scopes": ["read", "write"]},
        follow=True,
    )

    assert response.status_code == 200
    shown = RAW_KEY_RE.findall(response.content.decode())
    assert len(shown) == 1
    raw_key = shown[0]
    api_key = ApiKey.objects.get(client=client_a, name="Битрикс24")
    secret = raw_key.split("_", 2)[2]
    assert api_key.hashed_secret == api_key_hash(secret)
    assert api_key.scopes == ["read", "write"]
    assert api_key.created_by == account_manager
    stored = [str(getattr(api_key, f.attname)) for f in ApiKey._meta.concrete_fields]
    assert not any(secret in value for value in stored)
    assert api_key_find_active(raw_key=raw_key) == api_key
    # Once: the next pages no longer show it.
    assert raw_key not in client.get(_change_url(api_key)).content.decode()
    assert raw_key not in client.get(reverse("admin:clients_apikey_changelist")).content.decode()


def test_creating_api_key_in_the_admin_is_audited_once_by_the_service(
    client, account_manager, client_a
):
    client.force_login(account_manager)
    before = AuditLogEntry.objects.filter(client=client_a).count()
    client.post(
        reverse("admin:clients_apikey_add"),
        {"client": client_a.pk, "name": "Битрикс24", "scopes": ["read"]},
    )
    api_key = ApiKey.objects.get(client=client_a, name="Битрикс24")
    added = AuditLogEntry.objects.filter(client=client_a).order_by("pk")[before:]
    assert [(e.action, e.actor, e.object_id) for e in added] == [
        ("api_key_created", account_manager, str(api_key.pk))
    ]


def test_account_manager_cannot_create_key_for_other_client(client, account_manager, client_b):
    client.force_login(account_manager)

    response = client.post(
        reverse("admin:clients_apikey_add"),
        {"client": client_b.pk, "name": "x", "scopes": ["read"]},
    )

    assert response.status_code == 200  # the form again, with an error
    assert not ApiKey.objects.filter(client=client_b).exists()


def test_revoke_action_revokes_through_the_service(client, account_manager, client_a, api_key_a):
    client.force_login(account_manager)
    api_key = ApiKey.objects.get(client=client_a)

    client.post(
        reverse("admin:clients_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk]},
    )

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert api_key_find_active(raw_key=api_key_a) is None
    assert AuditLogEntry.objects.filter(action="api_key_revoked", client=client_a).exists()


# --------------------------------------------------------------------------------------------
# Audit log


def test_audit_log_admin_is_read_only(client, agency_admin, client_a):
    client.force_login(agency_admin)
    entry = AuditLogEntry.objects.filter(client=client_a).first()

    listing = client.get(reverse("admin:agency_auditlogentry_changelist"))
    add = client.get(reverse("admin:agency_auditlogentry_add"))
    change = client.post(_change_url(entry), {"action": "forged"})
    delete = client.post(
        reverse("admin:agency_auditlogentry_delete", args=[entry.pk]), {"post": "yes"}
    )

    assert listing.status_code == 200
    assert 'select name="action"' not in listing.content.decode()  # no actions at all
    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    entry.refresh_from_db()
    assert entry.action == "client_created"


def test_audit_log_records_admin_changes(client, account_manager, customer_a):
    client.force_login(account_manager)

    response = client.post(
        _change_url(customer_a), _customer_post(customer_a, first_name="Анастасия")
    )

    assert response.status_code == 302
    customer_a.refresh_from_db()
    assert customer_a.first_name == "Анастасия"
    entry = AuditLogEntry.objects.get(action="admin_change")
    assert entry.source == AuditLogEntry.Source.ADMIN
    assert entry.actor == account_manager
    assert entry.client_id == customer_a.client_id
    assert entry.object_id == str(customer_a.pk)


def test_audit_log_scoped_for_account_manager(client, account_manager, client_a, client_b):
    client.force_login(account_manager)

    response = client.get(reverse("admin:agency_auditlogentry_changelist"))

    content = response.content.decode()
    assert "Альфа Маркет" in content
    assert "Бета Стор" not in content


# --------------------------------------------------------------------------------------------
# CSV imports


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _upload(client, client_obj, content: bytes, **fields):
    data = {
        "client": client_obj.pk,
        "kind": "customers",
        "file": SimpleUploadedFile("base.csv", content, content_type="text/csv"),
        "delimiter": ",",
        "encoding": "utf-8",
    }
    data.update(fields)
    return client.post(reverse("admin:clients_importjob_add"), data)


def test_import_job_upload_creates_job_and_enqueues_it_after_commit(
    client, account_manager, client_a, media_root, django_capture_on_commit_callbacks
):
    client.force_login(account_manager)
    csv_bytes = b"external_id,email,phone\nA-1,anna@mail.ru,8 (916) 123-45-67\n"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _upload(client, client_a, csv_bytes)

    job = ImportJob.objects.for_client(client_a).get()
    assert response.status_code == 302
    assert response.url == _change_url(job)
    assert job.status == ImportJob.Status.PENDING
    assert job.created_by == account_manager
    assert len(callbacks) == 1  # import_job_run_task.delay, after the commit
    page = client.get(_change_url(job)).content.decode()
    assert "<progress" in page
    assert 'http-equiv="refresh"' in page


def test_import_upload_goes_through_import_job_submit_with_one_audit_entry(
    client, account_manager, client_a, media_root, monkeypatch, django_capture_on_commit_callbacks
):
    from clients import tasks

    sent = []
    monkeypatch.setattr(tasks.import_job_run_task, "delay", lambda job_id: sent.append(job_id))
    client.force_login(account_manager)
    before = AuditLogEntry.objects.filter(client=client_a).count()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _upload(client, client_a, b"external_id\nA-1\n", partial="on")
        assert sent == []  # not before the commit

    job = ImportJob.objects.for_client(client_a).get()
    assert job.partial is True
    assert AuditLogEntry.objects.filter(client=client_a).count() == before + 1
    entry = AuditLogEntry.objects.get(client=client_a, action="csv_import_submitted")
    assert (entry.source, entry.actor, entry.object_id) == ("admin", account_manager, str(job.pk))
    assert entry.details["kind"] == "customers"
    for callback in callbacks:
        callback()
    assert sent == [job.pk]


@pytest.fixture
def eager_celery(monkeypatch):
    from config.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


def test_import_job_runs_and_shows_result(
    client, account_manager, client_a, media_root, django_capture_on_commit_callbacks, eager_celery
):
    client.force_login(account_manager)
    csv_bytes = "external_id;email\nA-1;anna@mail.ru\nA-2;не-email\n".encode()

    with django_capture_on_commit_callbacks(execute=True):
        _upload(client, client_a, csv_bytes, delimiter=";", partial="on")

    job = ImportJob.objects.for_client(client_a).get()
    assert job.status == ImportJob.Status.SUCCEEDED, job.error_message
    assert (job.rows_ok, job.rows_rejected) == (1, 1)
    assert Customer.objects.for_client(client_a).filter(external_id="A-1").exists()
    page = client.get(_change_url(job)).content.decode()
    assert 'http-equiv="refresh"' not in page
    assert 'value="100"' in page
    report_url = reverse("admin:clients_importjob_error_report", args=[job.pk])
    assert report_url in page
    report = client.get(report_url)
    assert report.status_code == 200
    body = b"".join(report.streaming_content).decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(body)))[1][:2] == ["3", "email"]


def test_import_error_report_download_neutralises_formulas(
    client, account_manager, client_a, media_root, django_capture_on_commit_callbacks, eager_celery
):
    client.force_login(account_manager)
    csv_bytes = b'external_id,email\nA-1,"=HYPERLINK(""http://x"")"\n'

    with django_capture_on_commit_callbacks(execute=True):
        _upload(client, client_a, csv_bytes)

    job = ImportJob.objects.for_client(client_a).get()
    assert job.status == ImportJob.Status.REJECTED
    report = client.get(reverse("admin:clients_importjob_error_report", args=[job.pk]))
    assert report["Content-Type"] == "text/csv; charset=utf-8"
    data = b"".join(report.streaming_content)
    assert data.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8
    row = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1]
    assert row[:2] == ["2", "email"]
    assert row[3] == '\'=HYPERLINK("http://x")'


def test_import_job_reads_cp1251_upload(
    client, account_manager, client_a, media_root, django_capture_on_commit_callbacks, eager_celery
):
    client.force_login(account_manager)
    csv_bytes = "external_id;first_name\nA-1;Анна\n".encode("cp1251")

    with django_capture_on_commit_callbacks(execute=True):
        _upload(client, client_a, csv_bytes, delimiter=";", encoding="cp1251")

    job = ImportJob.objects.for_client(client_a).get()
    assert job.status == ImportJob.Status.SUCCEEDED, job.error_message


def test_import_error_report_is_not_served_to_other_clients_manager(
    client, account_manager, manager_b, client_a, media_root
):
    job = ImportJob.objects.create(
        client=client_a, kind="customers", file=ContentFile(b"x", name="a.csv")
    )
    job.error_report.save("errors.csv", ContentFile(b"row,field\n2,email\n"))
    url = reverse("admin:clients_importjob_error_report", args=[job.pk])

    client.force_login(manager_b)
    foreign = client.get(url)
    client.force_login(account_manager)
    own = client.get(url)

    assert foreign.status_code == 404
    assert own.status_code == 200


def test_analyst_cannot_upload(client, analyst, client_a, media_root):
    client.force_login(analyst)

    response = _upload(client, client_a, b"external_id\nA-1\n")

    assert response.status_code == 403
    assert not ImportJob.objects.unscoped().exists()
