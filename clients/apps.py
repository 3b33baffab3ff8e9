from django.apps import AppConfig


class ClientsConfig(AppConfig):
    name = "clients"
    verbose_name = "Клиенты и клиентская база"
    default_auto_field = "django.db.models.BigAutoField"
