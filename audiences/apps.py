from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audiences"
    verbose_name = "Аудитории рекламных платформ"

    def ready(self) -> None:
        from . import personal_data

        personal_data.register()  # consent's access-archive section and erasure step
