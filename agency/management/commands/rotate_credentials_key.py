"""Re-encrypt every stored credential (ad cabinets, channels, ad and analytics accounts,
clients' Bitrix24 webhooks: whatever the apps register in ``agency.crypto``) with the newest
key of CREDENTIALS_KEYS."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.commands import BaseCommand
from agency.crypto import secrets_rotate_all


class Command(BaseCommand):
    help = gettext_lazy(
        "Перешифровать все хранимые учётные данные (рекламные кабинеты, каналы рассылок, "
        "рекламные и аналитические аккаунты, входящие вебхуки Битрикс24 клиентов) первым "
        "(новым) ключом из CREDENTIALS_KEYS. Порядок смены ключа: добавить новый ключ первым в "
        "CREDENTIALS_KEYS, перезапустить, выполнить эту команду, затем убрать старый ключ."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = secrets_rotate_all()
        self.stdout.write(
            self.style.SUCCESS(
                _("Перешифровано: %(counts)s")
                % {"counts": ", ".join(f"{label}: {count}" for label, count in done)}
            )
        )
