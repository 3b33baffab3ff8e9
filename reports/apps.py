from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = _("Отчёты и измерения")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agency.crypto import secrets_rotation_register

        from .accounts import ad_accounts_credentials_rotate

        secrets_rotation_register(
            "reports.ad_accounts", _("рекламных аккаунтов"), ad_accounts_credentials_rotate
        )
