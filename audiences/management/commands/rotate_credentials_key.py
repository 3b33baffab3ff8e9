"""Re-encrypt every stored credential (ad cabinets, clients' Bitrix24 webhooks) with the newest
key of CREDENTIALS_KEYS."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.commands import BaseCommand
from audiences.services import credentials_rotate
from clients.services import client_credentials_rotate


class Command(BaseCommand):
    help = gettext_lazy(
        "Перешифровать учётные данные всех рекламных кабинетов и входящие вебхуки Битрикс24 "
        "клиентов первым (новым) ключом из "
        "CREDENTIALS_KEYS. Порядок смены ключа: добавить новый ключ первым в CREDENTIALS_KEYS, "
        "перезапустить, выполнить эту команду, затем убрать старый ключ."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = credentials_rotate()
        clients = client_credentials_rotate()
        self.stdout.write(
            self.style.SUCCESS(
                _("Перешифровано кабинетов: %(count)s, вебхуков Битрикс24 клиентов: %(clients)s")
                % {"count": count, "clients": clients}
            )
        )
