"""Issue an API key for a client; prints the raw key alone on the last line (shown only once)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.commands import BaseCommand
from clients.models import ApiKey, Client
from clients.services import api_key_create


class Command(BaseCommand):
    help = gettext_lazy(
        "Выпустить API-ключ клиента. Ключ печатается последней строкой один раз: в базе "
        "хранится только его хеш. Использование: Authorization: Api-Key <ключ>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_slug", help=_("Код клиента (slug)."))
        parser.add_argument("--name", default="", help=_("Название ключа, например «Битрикс24»."))
        parser.add_argument(
            "--scopes",
            default="read,write",
            help=_("Права через запятую: read, write (по умолчанию read,write)."),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(slug=options["client_slug"]).first()
        if client is None:
            raise CommandError(
                _("нет клиента с кодом %(slug)s") % {"slug": repr(options["client_slug"])}
            )
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(ApiKey.Scope.values))
        if not scopes or unknown:
            raise CommandError(
                _("неизвестные права: %(unknown)s; допустимо: %(known)s")
                % {
                    "unknown": ", ".join(unknown) or _("(пусто)"),
                    "known": ", ".join(ApiKey.Scope.values),
                }
            )
        api_key, raw_key = api_key_create(
            client=client, name=options["name"], scopes=scopes, source="cli"
        )
        if not client.is_active:
            self.stderr.write(
                self.style.WARNING(_("Клиент отключён: ключ не пройдёт до включения."))
            )
        self.stdout.write(
            _(
                "Ключ %(prefix)s… для «%(client)s» (права: %(scopes)s). "
                "Сохраните его сейчас: больше он показан не будет."
            )
            % {"prefix": api_key.prefix, "client": client.name, "scopes": ", ".join(scopes)}
        )
        self.stdout.write(raw_key)
