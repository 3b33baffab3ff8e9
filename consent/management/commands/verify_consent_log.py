"""Recompute a client's consent-ledger hash chain, hold it against the signed checkpoints, and
name the first broken record."""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from agency.errors import ServiceError
from clients.models import Client
from consent.checkpoints import Checkpoint
from consent.services import consent_log_verify


class Command(BaseCommand):
    help = (
        "Проверяет цепочку хешей журнала согласий клиента: пересчитывает хеш каждой записи, "
        "сверяет журнал с подписанными контрольными точками (число записей и последняя запись) "
        "и называет первую изменённую или недостающую. Код выхода 1, если журнал нарушен."
    )

    def add_arguments(self, parser):
        parser.add_argument("client_slug", help="код клиента (slug)")
        parser.add_argument(
            "--digest",
            action="append",
            default=[],
            metavar="FILE",
            help="дайджест контрольной точки, скачанный из портала (JSON); можно несколько",
        )

    def handle(self, *args, client_slug: str, digest: list[str], **options):
        try:
            client = Client.objects.get(slug=client_slug)
        except Client.DoesNotExist as exc:
            raise CommandError(f"нет клиента {client_slug!r}") from exc
        digests = []
        for name in digest:
            try:
                digests.append(Checkpoint.from_digest(json.loads(Path(name).read_text())))
            except (OSError, ValueError) as exc:
                raise CommandError(f"{name}: не читается: {exc}") from exc
            except ServiceError as exc:
                raise CommandError(f"{name}: {exc.message}") from exc
        try:
            result = consent_log_verify(client=client, digests=digests)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        if result.ok:
            anchored = (
                f"сверен с контрольными точками: {result.checkpoints} "
                f"(последняя от {result.last_checkpoint})"
                if result.checkpoints
                else "контрольных точек ещё нет"
            )
            self.stdout.write(f"OK: {result.checked} записей, цепочка цела, {anchored}.")
            return
        where = f"запись #{result.first_broken_id}" if result.first_broken_id else "журнал"
        self.stdout.write(f"НАРУШЕНО: {where} — {result.reason} (проверено {result.checked}).")
        sys.exit(1)
