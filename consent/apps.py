from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Согласия и 152-ФЗ"
    default_auto_field = "django.db.models.BigAutoField"
