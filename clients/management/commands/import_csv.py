"""Import a CSV file into a client's customer base through the ingestion pipeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from tqdm import tqdm

from agency.audit import audit_log
from agency.commands import BaseCommand
from clients.ingest import KINDS, BatchError
from clients.models import Client
from clients.services import ErrorReport, count_csv_rows, csv_import

ERRORS_SHOWN = 20
DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t"}


class Command(BaseCommand):
    help = gettext_lazy(
        "Загрузить CSV (покупатели, заказы или события) в базу клиента. Строки проверяются; без "
        "--partial одна ошибочная строка отменяет весь файл. Отклонённые строки пишутся в "
        "CSV-отчёт (строка, поле, причина, значение). Код выхода не ноль, если файл отклонён "
        "или не читается (например, неверный заголовок)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_slug", help=_("Код клиента (slug)."))
        parser.add_argument("kind", choices=KINDS, help=_("Что загружаем."))
        parser.add_argument("file", help=_("Путь к CSV-файлу с заголовком в первой строке."))
        parser.add_argument(
            "--delimiter", default=",", help=_("Разделитель: , (по умолчанию), ; (Excel) или tab.")
        )
        parser.add_argument(
            "--encoding", default="utf-8", help=_("Кодировка: utf-8 (по умолчанию) или cp1251.")
        )
        parser.add_argument(
            "--partial",
            action="store_true",
            help=_("Принять корректные строки, даже если в файле есть ошибочные."),
        )
        parser.add_argument(
            "--errors-out",
            help=_(
                "Куда записать отчёт об ошибках (по умолчанию <FILE>.errors.csv, если они есть)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(slug=options["client_slug"]).first()
        if client is None:
            raise CommandError(
                _("нет клиента с кодом %(slug)s") % {"slug": repr(options["client_slug"])}
            )
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(_("нет файла %(path)s") % {"path": path})
        delimiter = DELIMITER_ALIASES.get(options["delimiter"], options["delimiter"])
        if len(delimiter) != 1:
            raise CommandError(_("разделитель — один символ: , ; | или tab"))
        kind = options["kind"]

        report = ErrorReport()
        with path.open("rb") as handle:
            total = count_csv_rows(handle)
            with tqdm(total=total, unit=_(" строк"), file=sys.stderr, desc=path.name) as bar:
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
                    raise CommandError(
                        _("неизвестная кодировка %(encoding)s")
                        % {"encoding": repr(options["encoding"])}
                    ) from exc

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
            _(
                "%(file)s → %(client)s (%(kind)s): всего строк %(total)s, создано %(created)s, "
                "обновлено %(updated)s, без изменений %(unchanged)s, отклонено %(rejected)s, "
                "записано: %(committed)s"
            )
            % {
                "file": path.name,
                "client": client.slug,
                "kind": kind,
                "total": result.total,
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "rejected": result.rejected,
                "committed": _("да") if result.committed else _("нет"),
            }
        )
        for error in result.errors[:ERRORS_SHOWN]:
            where = {"row": error.index, "field": error.field or "—", "reason": error.message}
            self.stdout.write(
                _("  строка %(row)s, поле %(field)s: %(reason)s") % where
                + (
                    _(" (значение: %(value)s)") % {"value": repr(error.value)}
                    if error.value
                    else ""
                )
            )
        if report.count > ERRORS_SHOWN:
            self.stdout.write(_("  … и ещё %(n)s") % {"n": report.count - ERRORS_SHOWN})

        errors_out = options["errors_out"]
        if report.count or errors_out:
            destination = Path(errors_out or f"{path}.errors.csv")
            destination.write_bytes(report.content())
            self.stdout.write(_("Отчёт об ошибках: %(path)s") % {"path": destination})

        if not result.committed:
            raise CommandError(
                _(
                    "файл отклонён: %(n)s строк с ошибками, ничего не записано. "
                    "Исправьте строки из отчёта или запустите с --partial."
                )
                % {"n": result.rejected}
            )
