"""Recompute a client's consent-ledger hash chain, hold it against the signed checkpoints, and
name the first broken record."""

import json
import sys
from pathlib import Path

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.commands import BaseCommand
from agency.errors import ServiceError
from clients.models import Client
from consent.checkpoints import Checkpoint
from consent.services import consent_log_verify


class Command(BaseCommand):
    help = gettext_lazy(
        "Проверяет цепочку хешей журнала согласий клиента: пересчитывает хеш каждой записи, "
        "сверяет журнал с подписанными контрольными точками (число записей и последняя запись) "
        "и называет первую изменённую или недостающую. Код выхода 1, если журнал нарушен."
    )

    def add_arguments(self, parser):
        parser.add_argument("client_slug", help=_("код клиента (slug)"))
        parser.add_argument(
            "--digest",
            action="append",
            default=[],
            metavar="FILE",
            help=_("дайджест контрольной точки, скачанный из портала (JSON); можно несколько"),
        )

    def handle(self, *args, client_slug: str, digest: list[str], **options):
        try:
            client = Client.objects.get(slug=client_slug)
        except Client.DoesNotExist as exc:
            raise CommandError(_("нет клиента %(slug)s") % {"slug": repr(client_slug)}) from exc
        digests = []
        for name in digest:
            try:
                digests.append(Checkpoint.from_digest(json.loads(Path(name).read_text())))
            except (OSError, ValueError) as exc:
                raise CommandError(
                    _("%(file)s: не читается: %(error)s") % {"file": name, "error": exc}
                ) from exc
            except ServiceError as exc:
                raise CommandError(f"{name}: {exc.message}") from exc
        try:
            result = consent_log_verify(client=client, digests=digests)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        if result.ok:
            anchored = (
                _("сверен с контрольными точками: %(n)s (последняя от %(last)s)")
                % {"n": result.checkpoints, "last": result.last_checkpoint}
                if result.checkpoints
                else _("контрольных точек ещё нет")
            )
            self.stdout.write(
                _("OK: %(n)s записей, цепочка цела, %(anchored)s.")
                % {"n": result.checked, "anchored": anchored}
            )
            return
        where = (
            _("запись #%(id)s") % {"id": result.first_broken_id}
            if result.first_broken_id
            else _("журнал")
        )
        self.stdout.write(
            _("НАРУШЕНО: %(where)s — %(reason)s (проверено %(n)s).")
            % {"where": where, "reason": result.reason, "n": result.checked}
        )
        sys.exit(1)
