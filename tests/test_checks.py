"""System checks: the platform refuses to run on a personal-data database outside Russia."""

from __future__ import annotations

import pytest
from django.core.checks import Error, Warning, run_checks


def _ids(messages) -> set[str]:
    return {m.id for m in messages}


def test_database_outside_russia_stops_the_boot(settings):
    settings.PD_DATABASE_COUNTRY = "DE"

    messages = run_checks()

    errors = [m for m in messages if m.id == "agency.E001"]
    assert len(errors) == 1
    assert isinstance(errors[0], Error)
    assert errors[0].is_serious()  # ERROR level: manage.py runserver/migrate refuse to start
    assert "DE" in errors[0].msg
    assert "PD_DATABASE_COUNTRY=RU" in errors[0].hint


def test_database_in_russia_passes(settings):
    settings.PD_DATABASE_COUNTRY = "RU"

    assert "agency.E001" not in _ids(run_checks())


@pytest.mark.parametrize("value", ["ru", " RU ", "Ru"])
def test_country_is_compared_case_and_space_insensitively(settings, value):
    settings.PD_DATABASE_COUNTRY = value

    assert "agency.E001" not in _ids(run_checks(tags=["compliance"]))


@pytest.mark.parametrize("value", ["", None, "KZ", "RUS"])
def test_missing_or_other_country_is_an_error(settings, value):
    settings.PD_DATABASE_COUNTRY = value

    assert "agency.E001" in _ids(run_checks(tags=["compliance"]))


def test_undeclared_setting_is_an_error(settings):
    del settings.PD_DATABASE_COUNTRY

    messages = run_checks(tags=["compliance"])

    assert [m.id for m in messages] == ["agency.E001"]
    assert "«не указана»" in messages[0].msg


def test_the_check_speaks_russian_by_default_and_english_when_the_site_does(settings):
    settings.PD_DATABASE_COUNTRY = "DE"
    [error] = run_checks(tags=["compliance"])
    assert error.msg == (
        "База персональных данных объявлена расположенной в стране «DE»; 152-ФЗ требует России."
    )

    settings.LANGUAGE_CODE = "en"  # manage.py speaks the site's language
    [error] = run_checks(tags=["compliance"])
    assert error.msg == (
        "The personal-data database is declared as located in DE; 152-FZ requires Russia."
    )
    assert error.hint == "Set PD_DATABASE_COUNTRY=RU for a database located in Russia."


def test_debug_in_a_deployment_check_is_an_error(settings):
    settings.DEBUG = True

    assert "agency.E002" in _ids(run_checks(include_deployment_checks=True))
    assert "agency.E002" not in _ids(run_checks())

    settings.DEBUG = False
    assert "agency.E002" not in _ids(run_checks(include_deployment_checks=True))


LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/3",
    }
}


def test_a_per_process_cache_in_production_is_a_warning(settings):
    """The wrong-API-key counters live in the cache: each process of its own would allow the
    limit once per process."""
    settings.DEBUG = False
    settings.CACHES = LOCMEM

    [warning] = [m for m in run_checks(tags=["caches"]) if m.id == "agency.W001"]
    assert isinstance(warning, Warning)
    assert not warning.is_serious()  # a warning: the boot goes on
    assert "LocMemCache" in warning.msg
    assert "CACHE_URL" in warning.hint
    assert "Redis" in warning.hint

    settings.LANGUAGE_CODE = "en"
    [warning] = [m for m in run_checks(tags=["caches"]) if m.id == "agency.W001"]
    assert warning.msg.startswith("The default cache is process memory (LocMemCache)")

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert "agency.W001" in _ids(run_checks(tags=["caches"]))


def test_a_shared_cache_or_debug_passes_the_cache_check(settings):
    settings.DEBUG = False
    settings.CACHES = REDIS
    assert "agency.W001" not in _ids(run_checks(tags=["caches"]))

    settings.DEBUG = True  # development: one process, the default is fine
    settings.CACHES = LOCMEM
    assert "agency.W001" not in _ids(run_checks(tags=["caches"]))
