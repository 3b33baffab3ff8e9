from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class ClientsConfig(AppConfig):
    name = "clients"
    verbose_name = gettext_lazy("Клиенты и клиентская база")
    default_auto_field = "django.db.models.BigAutoField"
