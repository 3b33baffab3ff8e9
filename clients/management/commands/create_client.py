"""Create a client (tenant) from the command line; prints its slug alone on the last line."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.commands import BaseCommand
from clients.services import client_create

TIERS = ("foundation", "advanced", "enterprise")


def rubles(value: str) -> Decimal:
    try:
        amount = Decimal(value.replace(" ", "").replace(",", "."))
    except InvalidOperation as exc:
        raise ValueError(value) from exc
    return amount


class Command(BaseCommand):
    help = gettext_lazy(
        "Создать клиента агентства. Печатает код (slug) клиента последней строкой, чтобы его "
        "можно было подставить в другие команды: create_api_key, import_csv."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help=_("Название клиента, например «Уютный дом»."))
        parser.add_argument("--tier", required=True, choices=TIERS, help=_("Тариф."))
        parser.add_argument("--slug", help=_("Код клиента (латиница); по умолчанию из названия."))
        parser.add_argument(
            "--inn", default="", help=_("ИНН (10 или 12 цифр, с контрольной суммой).")
        )
        parser.add_argument("--legal-name", default="", help=_("Юридическое наименование."))
        parser.add_argument(
            "--ad-spend",
            type=rubles,
            default=Decimal("0"),
            help=_("Рекламный бюджет клиента, ₽ в месяц (например, 300000)."),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            client = client_create(
                name=options["name"],
                tier_code=options["tier"],
                slug=options["slug"],
                inn=options["inn"],
                legal_name=options["legal_name"],
                monthly_ad_spend=options["ad_spend"],
                source="cli",
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()
            )
            raise CommandError(
                _("клиент не создан: %(problems)s") % {"problems": problems}
            ) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            _("Клиент создан: %(name)s (тариф %(tier)s).")
            % {"name": client.name, "tier": client.tier.name}
        )
        self.stdout.write(client.slug)
