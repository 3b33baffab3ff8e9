"""The spend CSV upload (row errors with row number, field and reason; good rows kept; days
replaced), ``GET /api/v1/spend/``, ``GET /api/v1/metrica/uploads/``, and the admin: ad account
credentials write-only and encrypted, "import now", the upload page."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from agency.crypto import secret_decrypt
from agency.models import AuditLogEntry
from reports.accounts import ad_account_save
from reports.models import AdAccount, MetricaUpload, SpendDay
from reports.spend import spend_csv_upload, spend_day_replace

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)

GOOD_AND_BAD = (
    "day;campaign;cost;clicks;channel\n"
    "2026-11-01;Промо;1 500,50;120;telegram\n"  # row 2: good
    "01.11.2026;Промо;100;5;telegram\n"  # row 3: good, same campaign: summed
    "2026-11-02;Баннер;abc;1;\n"  # row 4: cost not a number
    "2026-13-01;Баннер;10;;\n"  # row 5: no such day
    "2026-11-02;;10;-3;\n"  # row 6: campaign missing, clicks negative
    "2026-11-02;Посев;300;;\n"  # row 7: good
)


def test_csv_rows_with_errors_are_reported_and_the_good_ones_written(client_a):
    spend_day_replace(
        client=client_a, source="csv", day=D1, rows=[{"campaign": "Старое", "cost": 999}]
    )
    result = spend_csv_upload(client=client_a, content=GOOD_AND_BAD.encode())
    assert (result.rows_total, result.rows_ok, result.rows_rejected) == (6, 3, 3)
    errors = [(e.index, e.field, e.code) for e in result.errors]
    assert errors == [
        (4, "cost", "invalid_amount"),
        (5, "day", "invalid_day"),
        (6, "campaign", "required"),
        (6, "clicks", "invalid_count"),
    ]
    assert result.errors[0].value == "abc"
    assert result.errors[0].message == "не число"
    rows = sorted(
        SpendDay.objects.for_client(client_a).values_list("day", "campaign", "cost", "clicks")
    )
    # Day 1 replaced (the old row is gone), its two rows of one campaign summed.
    assert rows == [
        (D1, "Промо", Decimal("1600.50"), 125),
        (D2, "Посев", Decimal("300.00"), 0),
    ]
    assert result.days == ["2026-11-01", "2026-11-02"]
    # The same file again: the same rows, nothing doubled.
    spend_csv_upload(client=client_a, content=GOOD_AND_BAD.encode())
    assert SpendDay.objects.for_client(client_a).count() == 2


def test_csv_with_wrong_columns_is_refused_whole(client_a):
    from agency.errors import ServiceError

    with pytest.raises(ServiceError) as refused:
        spend_csv_upload(client=client_a, content=b"date,campaign,cost\n2026-11-01,a,1\n")
    assert refused.value.code == "invalid_columns"
    assert refused.value.extra == {"missing": ["day"], "unknown": ["date"]}
    assert not SpendDay.objects.for_client(client_a).exists()


def test_spend_api_lists_days_and_totals(api_a, client_a, client_b):
    spend_day_replace(
        client=client_a, source="roistat", day=D1, rows=[{"campaign": "direct", "cost": 100}]
    )
    spend_day_replace(
        client=client_a,
        source="csv",
        day=D2,
        rows=[{"campaign": "x", "cost": Decimal("50.25"), "clicks": 3}],
    )
    spend_day_replace(client=client_b, source="csv", day=D1, rows=[{"campaign": "b", "cost": 7}])
    reply = api_a.get("/api/v1/spend/", {"from": "2026-11-01", "to": "2026-11-30"})
    assert reply.status_code == 200
    body = reply.json()
    assert [(r["day"], r["source"], r["cost"]) for r in body["rows"]] == [
        ("2026-11-01", "roistat", "100.00"),
        ("2026-11-02", "csv", "50.25"),
    ]
    assert body["totals"]["cost"] == "150.25"
    assert body["totals"]["clicks"] == 3
    assert body["per_source"]["roistat"]["cost"] == "100.00"
    assert body["from"] == "2026-11-01"
    bad = api_a.get("/api/v1/spend/", {"from": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "from"
    reversed_period = api_a.get("/api/v1/spend/", {"from": "2026-11-05", "to": "2026-11-01"})
    assert reversed_period.status_code == 400


def test_spend_upload_api(api_a, client_a):
    reply = api_a.post(
        "/api/v1/spend/upload/",
        {"file": SimpleUploadedFile("s.csv", GOOD_AND_BAD.encode(), "text/csv")},
        format="multipart",
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["rows_ok"] == 3
    assert body["errors"][0] == {
        "index": 4,
        "field": "cost",
        "code": "invalid_amount",
        "message": "не число",
        "value": "abc",
    }
    only_bad = api_a.post(
        "/api/v1/spend/upload/",
        {"file": SimpleUploadedFile("s.csv", b"day,campaign,cost\nx,y,z\n", "text/csv")},
        format="multipart",
    )
    assert only_bad.status_code == 422
    assert only_bad.json()["code"] == "invalid_rows"
    missing = api_a.post("/api/v1/spend/upload/", {}, format="multipart")
    assert missing.status_code == 400
    assert missing.json()["field"] == "file"
    columns = api_a.post(
        "/api/v1/spend/upload/",
        {"file": SimpleUploadedFile("s.csv", b"foo\n1\n", "text/csv")},
        format="multipart",
    )
    assert columns.status_code == 400
    assert columns.json()["code"] == "invalid_columns"
    # Both files that were read are in the audit log (the refused ones were never read).
    assert AuditLogEntry.objects.filter(action="spend_csv_uploaded", client=client_a).count() == 2


def test_metrica_uploads_api_shows_only_the_clients_own(api_a, api_b, client_a):
    account = ad_account_save(
        client=client_a,
        provider="metrica",
        remote_id="123",
        credentials={"token": "t"},
        conversion_target="buy",
    )
    MetricaUpload.objects.create(
        client=client_a,
        account=account,
        counter="123",
        client_id_type="CLIENT_ID",
        comment="c1",
        status="PROCESSED",
        rows=4,
        line_quantity=3,
        skipped={"no_consent": 2, "no_client_id": 1},
    )
    body = api_a.get("/api/v1/metrica/uploads/").json()
    [upload] = body["results"]
    assert upload["status"] == "PROCESSED"
    assert upload["skipped"] == {"no_consent": 2, "no_client_id": 1}
    assert upload["rejected_lines"] == 1
    assert api_b.get("/api/v1/metrica/uploads/").json()["results"] == []


def test_ad_account_credentials_are_write_only_and_audited(client, agency_admin, client_a):
    client.force_login(agency_admin)
    add_url = reverse("admin:reports_adaccount_add")
    reply = client.post(
        add_url,
        {
            "client": client_a.pk,
            "provider": "roistat",
            "name": "Roistat",
            "remote_id": "777",
            "client_id_type": "CLIENT_ID",
            "is_active": "on",
            "credentials": json.dumps({"api_key": "secret-key-123"}),
        },
    )
    assert reply.status_code == 302, reply.content.decode()[:2000]
    account = AdAccount.objects.for_client(client_a).get()
    assert secret_decrypt(account.credentials_encrypted) == {"api_key": "secret-key-123"}
    assert "secret-key-123" not in account.credentials_encrypted
    page = client.get(reverse("admin:reports_adaccount_change", args=[account.pk]))
    assert page.status_code == 200
    assert "secret-key-123" not in page.content.decode()
    entry = AuditLogEntry.objects.get(action="ad_account_created")
    assert "secret-key-123" not in json.dumps(entry.details)
    # A change with the field left empty keeps the stored secret.
    client.post(
        reverse("admin:reports_adaccount_change", args=[account.pk]),
        {
            "provider": "roistat",
            "name": "Roistat 2",
            "remote_id": "777",
            "client_id_type": "CLIENT_ID",
            "is_active": "on",
            "credentials": "",
        },
    )
    account.refresh_from_db()
    assert account.name == "Roistat 2"
    assert secret_decrypt(account.credentials_encrypted) == {"api_key": "secret-key-123"}
    # Missing credentials are refused on the field.
    refused = client.post(
        add_url,
        {
            "client": client_a.pk,
            "provider": "calltouch",
            "remote_id": "12",
            "client_id_type": "CLIENT_ID",
            "credentials": json.dumps({"token": "x"}),
        },
    )
    assert refused.status_code == 200
    assert "client_api_id" in refused.content.decode()


def test_import_now_action_and_the_upload_page(client, agency_admin, client_a, roistat_stub):
    yesterday = timezone.localdate(timezone=client_a.tzinfo) - dt.timedelta(days=1)
    roistat_stub.days[yesterday] = [{"channel": "direct", "visits": 3, "marketing_cost": 42}]
    account = ad_account_save(
        client=client_a,
        provider="roistat",
        remote_id=roistat_stub.project,
        credentials=roistat_stub.credentials,
    )
    client.force_login(agency_admin)
    client.post(
        reverse("admin:reports_adaccount_changelist"),
        {"action": "import_now", "_selected_action": [account.pk]},
    )
    account.refresh_from_db()
    assert account.last_imported_at is not None
    assert SpendDay.objects.for_client(client_a).filter(source="roistat").exists()
    upload_url = reverse("admin:reports_spendday_upload")
    assert client.get(upload_url).status_code == 200
    page = client.post(
        upload_url,
        {
            "client": client_a.pk,
            "file": SimpleUploadedFile("s.csv", GOOD_AND_BAD.encode(), "text/csv"),
        },
    )
    assert page.status_code == 200
    assert "invalid_amount" in page.content.decode()
    assert SpendDay.objects.for_client(client_a).filter(source="csv").count() == 2
    assert client.get(reverse("admin:reports_spendday_changelist")).status_code == 200
    assert client.get(reverse("admin:reports_metricaupload_changelist")).status_code == 200


def test_an_analyst_cannot_upload(client, analyst):
    client.force_login(analyst)
    assert client.get(reverse("admin:reports_spendday_upload")).status_code == 403
