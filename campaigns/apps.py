from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Кампании и триггеры"
    default_auto_field = "django.db.models.BigAutoField"
