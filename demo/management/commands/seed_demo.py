"""Seed the demo agency: staff, three clients on the three tiers, portal owners, API keys and a
simulated customer base written through the ingestion pipeline."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from tqdm import tqdm

from agency.commands import BaseCommand
from clients.models import Client
from demo.audiences import demo_audiences
from demo.campaigns import demo_campaigns
from demo.consents import demo_consents
from demo.customer_base import DEMO_STEPS, DemoSeedError, demo_seed
from demo.reports import demo_reports
from demo.segments import demo_scoring, demo_segments
from segments.models import ScoringRun, Segment


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = gettext_lazy(
        "Создать демо-данные: администратора агентства (admin), аккаунт-менеджера (manager), "
        "аналитика (analyst), трёх клиентов на трёх тарифах, владельцев в портале "
        "(owner-<код>), по API-ключу на клиента, клиентскую базу (покупатели, заказы, события) "
        "через обычный конвейер загрузки, согласия, сегменты с первым скорингом (здесь же, с "
        "индикатором хода) и аудитории с первой синхронизацией в очереди. При DJANGO_DEBUG=1 "
        "пароль равен логину; без DEBUG (production) пароли случайные и показываются один раз. "
        "Повторный запуск не создаёт дублей."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--customers",
            type=positive_int,
            default=2000,
            help=_(
                "Покупателей на клиента (по умолчанию 2000); у клиента на тарифе Enterprise "
                "вчетверо больше, чтобы списки VK Реклама набрали минимум в 2000 строк."
            ),
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help=_("Ничего не делать, если в базе уже есть хотя бы один клиент."),
        )
        parser.add_argument("--seed", type=int, default=42, help=_("Зерно генератора (42)."))
        parser.add_argument(
            "--base-url",
            default=settings.PUBLIC_BASE_URL,
            help=_("Адрес сайта для ссылки на админку (по умолчанию PUBLIC_BASE_URL)."),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and Client.objects.exists():
            self.stdout.write(_("Клиенты уже есть: демо-данные не создаются (--if-empty)."))
            return
        with tqdm(total=DEMO_STEPS, file=sys.stderr, desc=_("демо-данные")) as bar:

            def on_step(label: str) -> None:
                bar.set_postfix_str(label)
                bar.update(1)

            try:
                result = demo_seed(
                    customers=options["customers"],
                    seed=options["seed"],
                    on_step=on_step,
                    # Production (DEBUG off): no well-known password, random ones shown once.
                    random_passwords=not settings.DEBUG,
                )
            except DemoSeedError as exc:
                raise CommandError(str(exc)) from exc

        for entry in result.clients:
            entry.consents = demo_consents(client=entry.client, seed=options["seed"])
            demo_segments(client=entry.client)
            entry.scoring = self._score(entry.client)
            entry.audiences = demo_audiences(client=entry.client)
            entry.chains = demo_campaigns(client=entry.client, seed=options["seed"])
            entry.reports = demo_reports(client=entry.client, seed=options["seed"])

        self.stdout.write(_("Клиенты:"))
        for entry in result.clients:
            client = entry.client
            self.stdout.write(
                f"  {client.slug:<24} "
                + _(
                    "%(name)s (%(tier)s): покупателей %(customers)s, заказов %(orders)s, событий "
                    "%(events)s, записей о согласиях %(consents)s"
                )
                % {
                    "name": client.name,
                    "tier": client.tier.name,
                    "customers": entry.customers,
                    "orders": entry.orders,
                    "events": entry.events,
                    "consents": entry.consents,
                }
            )
        self.stdout.write(_("Скоринг и сегменты (участников):"))
        for entry in result.clients:
            run = entry.scoring
            self.stdout.write(
                f"  {entry.client.slug:<24} "
                + _("скоринг, запуск %(run)s: %(status)s")
                % {"run": run.pk, "status": run.get_status_display()}
            )
            for segment in Segment.objects.for_client(entry.client).order_by("pk"):
                self.stdout.write(f"  {'':<24}   {segment.name}: {segment.size}")
        self.stdout.write(
            _(
                "Аудитории (кабинеты — заглушки платформ на 127.0.0.1, первая синхронизация в "
                "очереди):"
            )
        )
        for entry in result.clients:
            for audience in entry.audiences:
                self.stdout.write(f"  {entry.client.slug:<24} #{audience.pk} {audience.name}")
        self.stdout.write(
            _(
                "Триггерные цепочки (запущены; такт каждую минуту; письма — в var/mail/, SMS и "
                "push — в заглушках):"
            )
        )
        for entry in result.clients:
            for chain in entry.chains:
                self.stdout.write(f"  {entry.client.slug:<24} #{chain.pk} {chain.name}")
        self.stdout.write(_("API-ключи (показываются один раз; Authorization: Api-Key <ключ>):"))
        for entry in result.clients:
            self.stdout.write(f"  {entry.client.slug:<24} {entry.api_key}")
        self.stdout.write(
            _("Админка: %(url)s") % {"url": options["base_url"].rstrip("/") + "/admin/"}
        )
        if settings.DEBUG:
            self.stdout.write(_("Входы (логин / пароль):"))
        else:
            self.stdout.write(
                _(
                    "Входы (логин / пароль; пароли случайные и показываются один раз — сохраните "
                    "их):"
                )
            )
        for who, username, password in result.logins:
            self.stdout.write(f"  {who:<26} {username} / {password}")

    def _score(self, client: Client) -> ScoringRun:
        """The client's first scoring run, here and now, with a progress bar."""
        with tqdm(
            total=100,
            unit="%",
            file=sys.stderr,
            desc=_("скоринг %(client)s") % {"client": client.slug},
        ) as bar:

            def on_progress(percent: int, stage: str) -> None:
                bar.set_postfix_str(stage, refresh=False)
                bar.update(max(percent - bar.n, 0))

            try:
                return demo_scoring(client=client, on_progress=on_progress)
            except Exception as exc:
                raise CommandError(
                    _("скоринг клиента %(client)s не удался: %(error)s")
                    % {"client": client.slug, "error": f"{type(exc).__name__}: {exc}"}
                ) from exc
