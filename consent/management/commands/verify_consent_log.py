"""Recompute a client's consent-ledger hash chain and name the first broken record."""

import sys

from django.core.management.base import BaseCommand, CommandError

from clients.models import Client
from consent.services import consent_log_verify


class Command(BaseCommand):
    help = (
        "Проверяет цепочку хешей журнала согласий клиента: пересчитывает хеш каждой записи и "
        "называет первую изменённую. Код выхода 1, если цепочка нарушена."
    )

    def add_arguments(self, parser):
        parser.add_argument("client_slug", help="код клиента (slug)")

    def handle(self, *args, client_slug: str, **options):
        try:
            client = Client.objects.get(slug=client_slug)
        except Client.DoesNotExist as exc:
            raise CommandError(f"нет клиента {client_slug!r}") from exc
        result = consent_log_verify(client=client)
        if result.ok:
            self.stdout.write(f"OK: {result.checked} записей, цепочка цела.")
            return
        self.stdout.write(
            f"НАРУШЕНО: запись #{result.first_broken_id} — {result.reason} "
            f"(проверено {result.checked})."
        )
        sys.exit(1)
