"""Re-encrypt every destination's credentials with the newest key of CREDENTIALS_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audiences.services import credentials_rotate


class Command(BaseCommand):
    help = (
        "Перешифровать учётные данные всех рекламных кабинетов первым (новым) ключом из "
        "CREDENTIALS_KEYS. Порядок смены ключа: добавить новый ключ первым в CREDENTIALS_KEYS, "
        "перезапустить, выполнить эту команду, затем убрать старый ключ."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = credentials_rotate()
        self.stdout.write(self.style.SUCCESS(f"Перешифровано кабинетов: {count}"))
