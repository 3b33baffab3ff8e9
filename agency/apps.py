from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class AgencyConfig(AppConfig):
    name = "agency"
    verbose_name = gettext_lazy("Агентство")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
