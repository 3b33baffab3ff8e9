"""System checks that stop a boot which would break the law or leak secrets."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register("compliance")
def check_personal_data_location(app_configs, **kwargs):
    """152-FZ art. 18 part 5: the personal-data database must be located in Russia."""
    country = (getattr(settings, "PD_DATABASE_COUNTRY", "") or "").strip().upper()
    if country != "RU":
        return [
            Error(
                f"The personal-data database is declared as located in {country or 'nowhere'}; "
                "152-FZ requires Russia.",
                hint="Set PD_DATABASE_COUNTRY=RU for a database located in Russia.",
                id="agency.E001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_no_debug_in_production(app_configs, **kwargs):
    if settings.DEBUG:
        return [
            Error(
                "DJANGO_DEBUG is on in a deployment check.",
                hint="Set DJANGO_DEBUG=0 in production.",
                id="agency.E002",
            )
        ]
    return []
