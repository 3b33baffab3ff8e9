"""System checks that stop a boot which would break the law or leak secrets.

Their messages are in the site's language (``LANGUAGE_CODE``: Russian by default,
``LANGUAGE_CODE=en`` for English), as every command's output is."""

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.utils.translation import gettext as _


@register("compliance")
def check_personal_data_location(app_configs, **kwargs):
    """152-FZ art. 18 part 5: the personal-data database must be located in Russia."""
    country = (getattr(settings, "PD_DATABASE_COUNTRY", "") or "").strip().upper()
    if country != "RU":
        return [
            Error(
                _(
                    "База персональных данных объявлена расположенной в стране «%(country)s»; "
                    "152-ФЗ требует России."
                )
                % {"country": country or _("не указана")},
                hint=_("Укажите PD_DATABASE_COUNTRY=RU для базы, расположенной в России."),
                id="agency.E001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_no_debug_in_production(app_configs, **kwargs):
    if settings.DEBUG:
        return [
            Error(
                _("DJANGO_DEBUG включён при проверке развёртывания."),
                hint=_("Укажите DJANGO_DEBUG=0 в рабочем окружении."),
                id="agency.E002",
            )
        ]
    return []
