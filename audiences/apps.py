from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class AudiencesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audiences"
    verbose_name = gettext_lazy("Аудитории рекламных платформ")

    def ready(self) -> None:
        from agency.crypto import secrets_rotation_register

        from .services import credentials_rotate

        secrets_rotation_register(
            "audiences.destinations", gettext_lazy("кабинетов"), credentials_rotate
        )
        from . import personal_data

        personal_data.register()  # consent's access-archive section and erasure step
