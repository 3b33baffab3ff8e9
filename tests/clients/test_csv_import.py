"""CSV import through the streaming pipeline: row numbers, reasons, chunks, all-or-nothing."""

from __future__ import annotations

import io

import pytest

from clients import ingest, services
from clients.ingest import BatchError
from clients.models import Customer, Order
from clients.services import csv_import

pytestmark = pytest.mark.django_db


def run(client, kind, text: str, *, encoding="utf-8", partial=False, delimiter=","):
    return csv_import(
        client=client,
        kind=kind,
        file=io.BytesIO(text.encode(encoding)),
        encoding=encoding,
        partial=partial,
        delimiter=delimiter,
    )


CUSTOMERS = "external_id,email,phone\nc1,a@example.ru,89161234567\nc2,b@example.ru,\n"


def test_bad_values_are_reported_by_spreadsheet_row_and_field(client_a):
    run(client_a, "customers", CUSTOMERS)
    orders = (
        "external_id,customer_external_id,placed_at,amount,items\n"
        'o1,c1,2025-01-05 10:00,100.50,"[{""sku"": ""A"", ""qty"": 1, ""price"": 100.5}]"\n'
        "o2,c1,2025-02-30,10,\n"  # no such date
        "o3,c2,2025-01-05,12.345,\n"  # three decimals
        'o4,c2,2025-01-05,5,"[{""sku"": ""A"", ""qty"": -1, ""price"": 5}]"\n'
        "o5,zz,2025-01-05,5,\n"  # unknown customer
        "o6,c2,2025-01-05,abc,\n"
    )
    result = run(client_a, "orders", orders)
    assert result.committed is False
    assert Order.objects.for_client(client_a).count() == 0
    found = {(e.index, e.field) for e in result.errors}
    assert found == {
        (3, "placed_at"),
        (4, "amount"),
        (5, "items"),
        (6, "customer_external_id"),
        (7, "amount"),
    }
    assert [e.index for e in result.errors] == sorted(e.index for e in result.errors)
    assert result.rejected == 5

    partial = run(client_a, "orders", orders, partial=True)
    assert (partial.committed, partial.created, partial.rejected) == (True, 1, 5)
    order = Order.objects.for_client(client_a).get()
    assert order.items == [{"sku": "A", "qty": 1, "price": 100.5}]


def test_cp1251_with_semicolons(client_a):
    text = "external_id;first_name;city\nc1;Пётр;Нижний Новгород\n"
    result = run(client_a, "customers", text, encoding="cp1251", delimiter=";")
    assert result.created == 1
    customer = Customer.objects.for_client(client_a).get()
    assert (customer.first_name, customer.city) == ("Пётр", "Нижний Новгород")


def test_cp1251_read_as_utf8_is_a_clear_error(client_a):
    text = "external_id;first_name\nc1;Пётр\n"
    with pytest.raises(BatchError) as utf8_error:
        csv_import(
            client=client_a, kind="customers", file=io.BytesIO(text.encode("cp1251")), delimiter=";"
        )
    assert utf8_error.value.code == "bad_encoding"
    assert "cp1251" in str(utf8_error.value)
    assert Customer.objects.for_client(client_a).count() == 0


def test_wrong_header_names_missing_and_unknown_columns(client_a):
    with pytest.raises(BatchError) as error:
        run(client_a, "orders", "id,customer,amount\n1,2,3\n")
    message = str(error.value)
    assert "customer_external_id" in message
    assert "placed_at" in message
    assert "неизвестные колонки: id, customer" in message


def test_chunks_keep_last_row_and_roll_back_together(client_a, monkeypatch):
    """Across chunk boundaries: a later row for the same id wins; a bad row in the last chunk
    undoes chunks already merged."""
    chunks = []
    monkeypatch.setattr(services, "read_csv_frames", _small_chunks(ingest.read_csv_frames, chunks))
    rows = [f"c{i},user{i}@example.ru,Город{i}" for i in range(10)]
    rows.append("c3,new3@example.ru,Тула")  # the same customer again, in a later chunk
    text = "external_id,email,city\n" + "\n".join(rows) + "\n"
    result = run(client_a, "customers", text)
    assert (result.created, result.updated, result.total) == (10, 1, 11)
    assert chunks == [3, 3, 3, 2]
    c3 = Customer.objects.for_client(client_a).get(external_id="c3")
    assert (c3.email, c3.city) == ("new3@example.ru", "Тула")

    bad = text.replace("c9,user9@example.ru", "c99,not-an-email")
    bad = bad + "c100,ok@example.ru,Тверь\n"
    failed = run(client_a, "customers", bad.replace("Тула", "Калуга"))
    assert failed.committed is False
    assert [(e.index, e.field) for e in failed.errors] == [(11, "email")]
    assert not Customer.objects.for_client(client_a).filter(external_id="c100").exists()
    assert Customer.objects.for_client(client_a).get(external_id="c3").city == "Тула"


def _small_chunks(original, sizes: list[int]):
    def read(file, **kwargs):
        columns, frames = original(file, **{**kwargs, "chunk_rows": 3})
        sizes.clear()

        def counted():
            for frame in frames:
                sizes.append(len(frame))
                yield frame

        return columns, counted()

    return read


def test_naive_times_use_the_clients_time_zone(client_a):
    client_a.time_zone = "Asia/Yekaterinburg"
    client_a.save(update_fields=["time_zone"])
    run(client_a, "customers", CUSTOMERS)
    run(
        client_a,
        "orders",
        "external_id,customer_external_id,placed_at,amount\n"
        "o1,c1,05.01.2025 10:00,1\no2,c1,2025-01-05T10:00:00Z,1\n",
    )
    o1 = Order.objects.for_client(client_a).get(external_id="o1")
    o2 = Order.objects.for_client(client_a).get(external_id="o2")
    assert o1.placed_at.isoformat() == "2025-01-05T05:00:00+00:00"
    assert o2.placed_at.isoformat() == "2025-01-05T10:00:00+00:00"


# --------------------------------------------------------------------------------------------
# Bad input in a file: rejected rows with their spreadsheet row numbers, never a failed job

BAD_ORDERS = (
    "external_id,customer_external_id,placed_at,amount,channel,items\n"
    "o1,c1,2025-01-05 10:00,100.50,web,\n"  # row 2: good
    "o2,c1,2025-01-05 10:00,100.50,w\x00eb,\n"  # 3: NUL in text
    'o3,c1,2025-01-05 10:00,5,web,"' + "[" * 1000 + "]" * 1000 + '"\n'  # 4: nested 1,000 deep
    "o4,c1,2025-01-05 10:00,١٢٣,web,\n"  # 5: Arabic-Indic digits
    "o5,c1,2026-13-01 10:00,5,web,\n"  # 6: month 13
    "o6,c1,2025-01-05T10:00:00+16:00,5,web,\n"  # 7: offset beyond ±15:59
    "o7,c1,2025-01-05 10:00,1000000000000.00,web,\n"  # 8: 13 digits: numeric(14,2) overflow
    'o8,c1,2025-01-05 10:00,5,web,"[{""sku"": ""A"", ""price"": 1e400}]"\n'  # 9: no double
    'o9,c1,2025-01-05 10:00,5,web,"[{""sku"": ""A\\u0000""}]"\n'  # 10: NUL inside JSON
    "o10,zz,2025-01-05 10:00,5,web,\n"  # 11: unknown customer
    "o11,c2,2025-01-06 10:00,7,app,\n"  # 12: good
)
BAD_ROWS = {
    3: ("channel", "nul_character"),
    4: ("items", "too_deep"),
    5: ("amount", "invalid_amount"),
    6: ("placed_at", "invalid_time"),
    7: ("placed_at", "invalid_time"),
    8: ("amount", "invalid_amount"),
    9: ("items", "number_out_of_range"),
    10: ("items", "nul_character"),
    11: ("customer_external_id", "unknown_customer"),
}


@pytest.mark.parametrize("partial", [False, True])
def test_bad_values_in_a_file_are_rejected_rows(client_a, partial):
    run(client_a, "customers", CUSTOMERS)
    reported: list[int] = []

    result = csv_import(
        client=client_a,
        kind="orders",
        file=io.BytesIO(BAD_ORDERS.encode()),
        partial=partial,
        on_error=lambda e: reported.append(e.index),
    )

    assert {e.index: (e.field, e.code) for e in result.errors} == BAD_ROWS
    assert reported == sorted(reported)  # in file order, as the rejected-rows CSV lists them
    assert result.rejected == len(BAD_ROWS)
    stored = set(Order.objects.for_client(client_a).values_list("external_id", flat=True))
    if partial:
        assert (result.committed, result.created) == (True, 2)
        assert stored == {"o1", "o11"}
    else:
        assert result.committed is False
        assert stored == set()
    nul = next(e for e in result.errors if e.index == 3)
    assert nul.value == "w\\u0000eb"  # shown escaped, storable in the report


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def test_import_job_with_bad_values_ends_rejected_or_succeeded_never_failed(
    client_a, media_root, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from clients.models import ImportJob

    run(client_a, "customers", CUSTOMERS)
    jobs = []
    for partial in (False, True):
        with django_capture_on_commit_callbacks(execute=False):
            job = services.import_job_submit(
                client=client_a,
                kind="orders",
                file=SimpleUploadedFile("orders.csv", BAD_ORDERS.encode()),
                partial=partial,
                source="admin",
            )
        jobs.append(services.import_job_run(job=job))

    rejected, accepted = jobs
    assert rejected.status == ImportJob.Status.REJECTED, rejected.error_message
    assert accepted.status == ImportJob.Status.SUCCEEDED, accepted.error_message
    for job in jobs:
        assert job.rows_rejected == len(BAD_ROWS)
        report = job.error_report.read().decode("utf-8-sig").splitlines()[1:]
        assert [int(line.split(",")[0]) for line in report] == sorted(BAD_ROWS)
    assert (accepted.rows_ok, accepted.rows_created) == (2, 2)


def test_rejected_rows_are_reported_in_file_order_across_checks(client_a):
    """Row 5's customer is unknown (found by the database, after the other checks of its
    chunk): the report still reads 3, 4, 5, 6, not 3, 4, 6, 5."""
    run(client_a, "customers", CUSTOMERS)
    orders = (
        "external_id,customer_external_id,placed_at,amount\n"
        "o1,c1,2025-01-05,10\n"
        "o2,c1,2025-01-05,abc\n"
        "o3,c1,2025-99-05,10\n"
        "o4,nobody,2025-01-05,10\n"
        "o5,c1,2025-01-05,-1\n"
    )
    reported: list[int] = []
    result = csv_import(
        client=client_a,
        kind="orders",
        file=io.BytesIO(orders.encode()),
        partial=True,
        on_error=lambda e: reported.append(e.index),
    )
    assert reported == [3, 4, 5, 6]
    assert result.created == 1


def test_a_header_with_a_nul_fails_the_job_with_a_message_it_can_store(
    client_a, media_root, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from clients.models import ImportJob

    with django_capture_on_commit_callbacks(execute=False):
        job = services.import_job_submit(
            client=client_a,
            kind="customers",
            file=SimpleUploadedFile("c.csv", b"external_id,ci\x00ty\nc1,x\n"),
            source="admin",
        )
    job = services.import_job_run(job=job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "ci\\u0000ty" in job.error_message  # the header named, the NUL written out
