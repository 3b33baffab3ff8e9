"""System checks that stop a boot which would break the law or leak secrets.

Their messages are in the site's language (``LANGUAGE_CODE``: Russian by default,
``LANGUAGE_CODE=en`` for English), as every command's output is."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
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


# Caches that each process keeps to itself (or not at all): counters kept in them, such as the
# wrong-API-key counts of ``clients.auth``, are not shared between web processes.
_PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.caches)
def check_shared_cache_in_production(app_configs, **kwargs):
    """With DEBUG off the default cache must be shared by every web process (Redis): the
    wrong-API-key limit counts there, and a per-process count lets each process allow its own."""
    if settings.DEBUG:
        return []
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend not in _PROCESS_LOCAL_CACHES:
        return []
    return [
        Warning(
            _(
                "Кеш по умолчанию — память процесса (%(backend)s): счётчики неверных API-ключей "
                "не общие для процессов веб-сервера, и каждый процесс пропускает свой лимит."
            )
            % {"backend": backend.rsplit(".", 1)[-1]},
            hint=_("Укажите CACHE_URL=rediscache://хост:6379/3 (Redis) в рабочем окружении."),
            id="agency.W001",
        )
    ]
