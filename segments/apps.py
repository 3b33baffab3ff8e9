from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = gettext_lazy("Скоринг и сегменты")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import personal_data

        personal_data.register()  # consent's access-archive sections and erasure step
