"""Sync one audience to its ad platform in the foreground and print the run's summary."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from tqdm import tqdm

from agency.commands import BaseCommand
from audiences.models import Audience, SyncRun
from audiences.sync import DestinationBusy, audience_sync_now

SUMMARY_FIELDS = [
    ("status", gettext_lazy("статус")),
    ("members", gettext_lazy("участников сегмента")),
    ("held_back_erased", gettext_lazy("удалены по запросу (не выгружены)")),
    ("held_back_consent", gettext_lazy("нет согласия ad_audiences (не выгружены)")),
    ("suppressed", gettext_lazy("исключены сегментами-исключениями")),
    ("held_out", gettext_lazy("в контрольной группе (не выгружены)")),
    ("no_identifier", gettext_lazy("без email и телефона")),
    ("exported", gettext_lazy("выгружено людей")),
    ("uploaded", gettext_lazy("отправлено строк")),
    ("added", gettext_lazy("добавлено")),
    ("removed", gettext_lazy("удалено")),
    ("remote_status", gettext_lazy("статус на платформе")),
    ("matched_percent", gettext_lazy("распознано, %")),
]


class Command(BaseCommand):
    help = gettext_lazy(
        "Синхронизировать аудиторию с рекламной платформой сейчас, с индикатором хода, и "
        "вывести итог запуска (кто выгружен, кто удержан и почему, ответ платформы). Если "
        "синхронизация этой аудитории уже в очереди, выполняется она. Код выхода 1 при ошибке."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("audience_id", type=int, help=_("id аудитории (см. админку)."))
        parser.add_argument(
            "--no-progress", action="store_true", help=_("Без индикатора хода (для логов).")
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A command names one audience explicitly; the run is scoped to its client from here on.
        audience = Audience.objects.unscoped().filter(pk=options["audience_id"]).first()
        if audience is None:
            raise CommandError(_("нет аудитории с id %(id)s") % {"id": options["audience_id"]})
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
            raise CommandError(_("%(error)s; попробуйте позже") % {"error": exc}) from exc
        finally:
            bar.update(100 - bar.n)
            bar.close()
        self.stdout.write(
            _("Синхронизация #%(run)s аудитории «%(audience)s»")
            % {"run": run.pk, "audience": audience.name}
        )
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
            raise CommandError(run.error or run.platform_error or _("синхронизация не удалась"))
