from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Кампании и триггеры")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agency.crypto import secrets_rotation_register

        from .authoring import channel_settings_credentials_rotate

        secrets_rotation_register(
            "campaigns.channels", _("каналов рассылок"), channel_settings_credentials_rotate
        )
        from . import personal_data

        personal_data.register()  # consent's archive sections, erasure step, withdrawal hook
        personal_data.audiences_register()  # chain members left out of chosen audiences
