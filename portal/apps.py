from django.apps import AppConfig


class PortalConfig(AppConfig):
    """Above every domain app: each page calls its app's selectors."""

    name = "portal"
    verbose_name = "Портал клиента"
