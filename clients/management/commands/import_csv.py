"""Import a CSV file into a client's customer base through the ingestion pipeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from agency.audit import audit_log
from clients.ingest import KINDS, BatchError
from clients.models import Client
from clients.services import ErrorReport, count_csv_rows, csv_import

ERRORS_SHOWN = 20
DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t"}


class Command(BaseCommand):
    help = (
        "Загрузить CSV (покупатели, заказы или события) в базу клиента. Строки проверяются; без "
        "--partial одна ошибочная строка отменяет весь файл. Отклонённые строки пишутся в "
        "CSV-отчёт (строка, поле, причина, значение). Код выхода не ноль, если файл отклонён "
        "или не читается (например, неверный заголовок)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_slug", help="Код клиента (slug).")
        parser.add_argument("kind", choices=KINDS, help="Что загружаем.")
        parser.add_argument("file", help="Путь к CSV-файлу с заголовком в первой строке.")
        parser.add_argument(
            "--delimiter", default=",", help="Разделитель: , (по умолчанию), ; (Excel) или tab."
        )
        parser.add_argument(
            "--encoding", default="utf-8", help="Кодировка: utf-8 (по умолчанию) или cp1251."
        )
        parser.add_argument(
            "--partial",
            action="store_true",
            help="Принять корректные строки, даже если в файле есть ошибочные.",
        )
        parser.add_argument(
            "--errors-out",
            help="Куда записать отчёт об ошибках (по умолчанию <FILE>.errors.csv, если они есть).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(slug=options["client_slug"]).first()
        if client is None:
            raise CommandError(f"нет клиента с кодом {options['client_slug']!r}")
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"нет файла {path}")
        delimiter = DELIMITER_ALIASES.get(options["delimiter"], options["delimiter"])
        if len(delimiter) != 1:
            raise CommandError("разделитель — один символ: , ; | или tab")
        kind = options["kind"]

        report = ErrorReport()
        with path.open("rb") as handle:
            total = count_csv_rows(handle)
            with tqdm(total=total, unit=" строк", file=sys.stderr, desc=path.name) as bar:
                try:
                    result = csv_import(
                        client=client,
                        kind=kind,
                        file=handle,
                        delimiter=delimiter,
                        encoding=options["encoding"],
                        partial=options["partial"],
                        on_progress=bar.update,
                        on_error=report.add,
                    )
                except BatchError as exc:
                    raise CommandError(f"{path.name}: {exc}") from exc
                except LookupError as exc:  # unknown encoding name
                    raise CommandError(f"неизвестная кодировка {options['encoding']!r}") from exc

        audit_log(
            action="csv_import",
            source="cli",
            actor_label="manage.py import_csv",
            client=client,
            details={
                "kind": kind,
                "file": path.name,
                "total": result.total,
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "rejected": result.rejected,
                "committed": result.committed,
            },
        )

        self.stdout.write(
            f"{path.name} → {client.slug} ({kind}): всего строк {result.total}, "
            f"создано {result.created}, обновлено {result.updated}, "
            f"без изменений {result.unchanged}, "
            f"отклонено {result.rejected}, записано: {'да' if result.committed else 'нет'}"
        )
        for error in result.errors[:ERRORS_SHOWN]:
            self.stdout.write(
                f"  строка {error.index}, поле {error.field or '—'}: {error.message}"
                + (f" (значение: {error.value!r})" if error.value else "")
            )
        if report.count > ERRORS_SHOWN:
            self.stdout.write(f"  … и ещё {report.count - ERRORS_SHOWN}")

        errors_out = options["errors_out"]
        if report.count or errors_out:
            destination = Path(errors_out or f"{path}.errors.csv")
            destination.write_bytes(report.content())
            self.stdout.write(f"Отчёт об ошибках: {destination}")

        if not result.committed:
            raise CommandError(
                f"файл отклонён: {result.rejected} строк с ошибками, ничего не записано. "
                "Исправьте строки из отчёта или запустите с --partial."
            )
