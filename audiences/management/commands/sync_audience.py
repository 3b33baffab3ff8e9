"""Sync one audience to its ad platform in the foreground and print the run's summary."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from audiences.models import Audience, SyncRun
from audiences.sync import DestinationBusy, audience_sync_now

SUMMARY_FIELDS = [
    ("status", "статус"),
    ("members", "участников сегмента"),
    ("held_back_erased", "удалены по запросу (не выгружены)"),
    ("held_back_consent", "нет согласия ad_audiences (не выгружены)"),
    ("suppressed", "исключены сегментами-исключениями"),
    ("no_identifier", "без email и телефона"),
    ("exported", "выгружено людей"),
    ("uploaded", "отправлено строк"),
    ("added", "добавлено"),
    ("removed", "удалено"),
    ("remote_status", "статус на платформе"),
    ("matched_percent", "распознано, %"),
]


class Command(BaseCommand):
    help = (
        "Синхронизировать аудиторию с рекламной платформой сейчас, с индикатором хода, и "
        "вывести итог запуска (кто выгружен, кто удержан и почему, ответ платформы). Если "
        "синхронизация этой аудитории уже в очереди, выполняется она. Код выхода 1 при ошибке."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("audience_id", type=int, help="id аудитории (см. админку).")
        parser.add_argument(
            "--no-progress", action="store_true", help="Без индикатора хода (для логов)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A command names one audience explicitly; the run is scoped to its client from here on.
        audience = Audience.objects.unscoped().filter(pk=options["audience_id"]).first()
        if audience is None:
            raise CommandError(f"нет аудитории с id {options['audience_id']}")
        bar = tqdm(
            total=100,
            desc=audience.name[:40],
            unit="%",
            disable=options["no_progress"],
            file=self.stderr._out,
        )

        def on_progress(percent: int, stage: str) -> None:
            bar.set_postfix_str(stage[:50])
            bar.update(max(0, percent - bar.n))

        try:
            run = audience_sync_now(audience, source="command", on_progress=on_progress)
        except DestinationBusy as exc:
            raise CommandError(f"{exc}; попробуйте позже") from exc
        finally:
            bar.update(100 - bar.n)
            bar.close()
        self.stdout.write(f"Синхронизация #{run.pk} аудитории «{audience.name}»")
        for field, label in SUMMARY_FIELDS:
            value = getattr(run, field)
            if field == "status":
                value = run.get_status_display()
            if value not in (None, ""):
                self.stdout.write(f"  {label}: {value}")
        for line in run.steps:
            self.stdout.write(f"  · {line}")
        if run.message:
            self.stdout.write(run.message)
        if run.status == SyncRun.Status.FAILED:
            raise CommandError(run.error or run.platform_error or "синхронизация не удалась")
