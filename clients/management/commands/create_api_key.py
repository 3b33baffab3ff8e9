"""Issue an API key for a client; prints the raw key alone on the last line (shown only once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clients.models import ApiKey, Client
from clients.services import api_key_create


class Command(BaseCommand):
    help = (
        "Выпустить API-ключ клиента. Ключ печатается последней строкой один раз: в базе "
        "хранится только его хеш. Использование: Authorization: Api-Key <ключ>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_slug", help="Код клиента (slug).")
        parser.add_argument("--name", default="", help="Название ключа, например «Битрикс24».")
        parser.add_argument(
            "--scopes",
            default="read,write",
            help="Права через запятую: read, write (по умолчанию read,write).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(slug=options["client_slug"]).first()
        if client is None:
            raise CommandError(f"нет клиента с кодом {options['client_slug']!r}")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
        if not scopes or unknown:
            raise CommandError(
                f"неизвестные права: {', '.join(unknown) or '(пусто)'}; "
                f"допустимо: {', '.join(ApiKey.Scope.values)}"
            )
        api_key, raw_key = api_key_create(
            client=client, name=options["name"], scopes=scopes, source="cli"
        )
        if not client.is_active:
            self.stderr.write(self.style.WARNING("Клиент отключён: ключ не пройдёт до включения."))
        self.stdout.write(
            f"Ключ {api_key.prefix}… для «{client.name}» (права: {', '.join(scopes)}). "
            "Сохраните его сейчас: больше он показан не будет."
        )
        self.stdout.write(raw_key)
