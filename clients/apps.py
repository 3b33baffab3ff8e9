from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class ClientsConfig(AppConfig):
    name = "clients"
    verbose_name = gettext_lazy("Клиенты и клиентская база")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agency.crypto import secrets_rotation_register

        from .services import client_credentials_rotate

        secrets_rotation_register(
            "clients.bitrix24",
            gettext_lazy("вебхуков Битрикс24 клиентов"),
            client_credentials_rotate,
        )
