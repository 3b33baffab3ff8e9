from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo agency (``seed_demo``): on top of every app, importing each app's services."""

    name = "demo"
    verbose_name = "Демо-данные"
