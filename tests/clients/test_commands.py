"""Management commands: create_client, create_api_key, import_csv (seed_demo: tests/demo)."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from agency.models import AuditLogEntry
from clients.auth import ApiKeyAuthentication
from clients.models import ApiKey, Client, Customer, Order

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue().splitlines()


# --------------------------------------------------------------------------------------------
# create_client / create_api_key


def test_create_client_prints_slug_on_last_line():
    lines = run(
        "create_client", "Гамма Трейд", "--tier", "advanced", "--inn", "7707083893",
        "--ad-spend", "300000",
    )  # fmt: skip

    client = Client.objects.get(slug=lines[-1])
    assert client.name == "Гамма Трейд"
    assert client.tier.code == "advanced"
    assert client.inn == "7707083893"
    assert client.monthly_ad_spend == 300000
    assert lines[-1] == "gamma-treid"


def test_create_client_refuses_bad_inn():
    with pytest.raises(CommandError, match="ИНН|inn"):
        run("create_client", "Дельта", "--tier", "foundation", "--inn", "7707083890")

    assert not Client.objects.filter(name="Дельта").exists()


def test_create_api_key_prints_a_key_that_authenticates(client_a):
    lines = run("create_api_key", client_a.slug, "--name", "amoCRM", "--scopes", "read")

    raw_key = lines[-1]
    request = RequestFactory().get("/api/v1/", HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    principal, api_key = ApiKeyAuthentication().authenticate(request)
    assert api_key.client == client_a
    assert api_key.name == "amoCRM"
    assert api_key.scopes == ["read"]
    assert raw_key not in api_key.hashed_secret


def test_create_api_key_unknown_client_or_scope(client_a):
    with pytest.raises(CommandError, match="нет клиента"):
        run("create_api_key", "nope")
    with pytest.raises(CommandError, match="admin"):
        run("create_api_key", client_a.slug, "--scopes", "read,admin")
    assert not ApiKey.objects.filter(client=client_a).exists()


# --------------------------------------------------------------------------------------------
# import_csv


def write_csv(path, rows: list[list[str]], *, delimiter=",", encoding="utf-8"):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


CUSTOMERS = [
    ["external_id", "email", "phone", "first_name", "last_name", "city"],
    ["C-1", "Anna@Mail.ru", "8 (916) 123-45-67", "Анна", "Иванова", "Москва"],
    ["C-2", "boris@yandex.ru", "+7 903 765-43-21", "Борис", "Петров", "Казань"],
]


def test_import_csv_cp1251_semicolon_happy_path(client_a, tmp_path):
    path = write_csv(tmp_path / "base.csv", CUSTOMERS, delimiter=";", encoding="cp1251")

    lines = run(
        "import_csv", client_a.slug, "customers", str(path),
        "--delimiter", ";", "--encoding", "cp1251",
    )  # fmt: skip

    summary = lines[0]
    assert "всего строк 2" in summary
    assert "создано 2" in summary
    assert "отклонено 0" in summary
    assert "записано: да" in summary
    anna = Customer.objects.for_client(client_a).get(external_id="C-1")
    assert (anna.first_name, anna.email, anna.phone) == ("Анна", "anna@mail.ru", "+79161234567")
    assert not (tmp_path / "base.csv.errors.csv").exists()
    assert AuditLogEntry.objects.filter(source="cli", action="csv_import", client=client_a).exists()


def test_import_csv_wrong_header_names_the_columns(client_a, tmp_path):
    path = write_csv(tmp_path / "bad.csv", [["id", "emale"], ["C-1", "a@mail.ru"]])

    with pytest.raises(CommandError) as excinfo:
        run("import_csv", client_a.slug, "customers", str(path))

    message = str(excinfo.value)
    assert "external_id" in message  # missing
    assert "emale" in message  # unknown
    assert not Customer.objects.for_client(client_a).exists()


def test_import_csv_one_bad_row_rejects_the_whole_file(client_a, tmp_path):
    rows = [*CUSTOMERS, ["C-3", "not-an-email", "", "Ирина", "", ""]]
    path = write_csv(tmp_path / "base.csv", rows)

    out = io.StringIO()
    with pytest.raises(CommandError, match="отклонён"):
        call_command(
            "import_csv", client_a.slug, "customers", str(path), stdout=out, stderr=io.StringIO()
        )

    assert not Customer.objects.for_client(client_a).exists()
    assert "строка 4, поле email" in out.getvalue()
    report = (tmp_path / "base.csv.errors.csv").read_text(encoding="utf-8-sig")
    assert list(csv.reader(io.StringIO(report)))[1][:2] == ["4", "email"]


def test_import_csv_partial_writes_good_rows_and_reports_bad(client_a, tmp_path):
    rows = [
        CUSTOMERS[0],
        CUSTOMERS[1],
        ["C-2", "boris@yandex.ru", "12345", "Борис", "", ""],
        CUSTOMERS[2],
    ]
    path = write_csv(tmp_path / "base.csv", rows)
    errors_out = tmp_path / "rejected.csv"

    lines = run(
        "import_csv", client_a.slug, "customers", str(path), "--partial",
        "--errors-out", str(errors_out),
    )  # fmt: skip

    assert "создано 2" in lines[0]
    assert "отклонено 1" in lines[0]
    assert set(Customer.objects.for_client(client_a).values_list("external_id", flat=True)) == {
        "C-1",
        "C-2",
    }
    report = list(csv.reader(io.StringIO(errors_out.read_text(encoding="utf-8-sig"))))
    assert report[0] == ["row", "field", "reason", "value"]
    assert report[1][:2] == ["3", "phone"]
    assert report[1][3] == "12345"


def test_import_csv_error_report_neutralises_formulas(client_a, tmp_path):
    formula = '=HYPERLINK("http://x","click")'
    path = write_csv(tmp_path / "base.csv", [CUSTOMERS[0], ["C-1", formula, "", "", "", ""]])

    with pytest.raises(CommandError):
        run("import_csv", client_a.slug, "customers", str(path))

    data = (tmp_path / "base.csv.errors.csv").read_bytes()
    assert data.startswith("\ufeff".encode())  # the BOM: Excel reads UTF-8
    report = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert report[1][:2] == ["2", "email"]
    assert report[1][3] == "'" + formula


def test_import_csv_orders_reference_known_customers(client_a, tmp_path):
    run("import_csv", client_a.slug, "customers", str(write_csv(tmp_path / "c.csv", CUSTOMERS)))
    orders = write_csv(
        tmp_path / "o.csv",
        [
            ["external_id", "customer_external_id", "placed_at", "amount"],
            ["O-1", "C-1", "31.05.2025 14:30", "7 990,50"],
        ],
    )

    lines = run("import_csv", client_a.slug, "orders", str(orders))

    assert "создано 1" in lines[0]
    order = Order.objects.for_client(client_a).get(external_id="O-1")
    assert str(order.amount) == "7990.50"
