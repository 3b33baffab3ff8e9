from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = "Скоринг и сегменты"
    default_auto_field = "django.db.models.BigAutoField"
