from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = gettext_lazy("Согласия и 152-ФЗ")
    default_auto_field = "django.db.models.BigAutoField"
