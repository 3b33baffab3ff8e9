"""One tick of a client's trigger chains in the foreground, with a progress bar."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from tqdm import tqdm

from campaigns.models import TriggerChain
from campaigns.services import chains_tick
from clients.models import Client


class Command(BaseCommand):
    help = _(
        "Один такт триггерных цепочек клиента сейчас, в этом процессе: вход новых участников "
        "(основная и контрольная группы), выходы по цели, постановка шагов в очередь и отправка "
        "с учётом согласий, лимитов и тихих часов. С --dry-run только показывает, кто вошёл бы "
        "в каждую цепочку, ничего не записывая и не отправляя."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_slug", help=_("Код клиента (slug)."))
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=_("Ничего не записывать и не отправлять: только посчитать входящих."),
        )
        parser.add_argument(
            "--no-send", action="store_true", help=_("Поставить в очередь, но не отправлять.")
        )
        parser.add_argument(
            "--max-messages",
            type=int,
            default=None,
            help=_("Отправить не больше стольких сообщений за такт."),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(slug=options["client_slug"]).first()
        if client is None:
            raise CommandError(_("нет клиента с кодом %(slug)r") % {"slug": options["client_slug"]})
        with tqdm(unit=_(" шт."), file=sys.stderr, desc=client.slug) as bar:

            def on_progress(stage: str, count: int) -> None:
                bar.set_postfix_str(stage, refresh=False)
                bar.update(count)

            report = chains_tick(
                client.pk,
                dispatch=not options["no_send"],
                dry_run=options["dry_run"],
                max_messages=options["max_messages"],
                progress=on_progress,
            )
        names = dict(TriggerChain.objects.for_client(client).values_list("pk", "name"))
        w = self.stdout.write
        verb = _("вошли бы") if options["dry_run"] else _("вошли")
        for chain_id, counts in report.enrolled.items():
            w(
                _("%(chain)s: %(verb)s %(treatment)s в основную группу, %(holdout)s в контрольную")
                % {"chain": names.get(chain_id, chain_id), "verb": verb, **counts}
            )
        if options["dry_run"]:
            return
        w(
            _(
                "Выходы: достигли цели %(converted)s, завершили %(completed)s, вышли %(exited)s. "
                "Шаги: в очереди %(queued)s, контрольной группе записано %(held_out)s, "
                "пропущено по условию %(skipped)s."
            )
            % report.as_dict()
        )
        for reason, count in report.suppressed.items():
            w(_("Не отправлено (%(reason)s): %(count)s") % {"reason": reason, "count": count})
        if report.dispatch:
            shown = ", ".join(f"{key} {value}" for key, value in sorted(report.dispatch.items()))
            w(_("Отправка: %(shown)s") % {"shown": shown})
