"""Shared fixtures: clients on each tier, users in each role, API keys, an API client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.utils import translation
from rest_framework.test import APIClient

from agency.roles import ACCOUNT_MANAGER, AGENCY_ADMIN, ANALYST
from clients.models import ClientMembership
from clients.services import api_key_create, client_create
from tests.stubs.fixtures import (  # noqa: F401 - fixtures of the owned-channel stubs
    calltouch_stub,
    direct_stub,
    metrica_stub,
    roistat_stub,
    rustore_stub,
    sendsay_stub,
    smsc_stub,
    smsru_stub,
    smtp_sink,
    unisender_stub,
    webpush_stub,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Counters kept in Django's cache (wrong API keys per address, DRF throttles) start at zero
    in every test, as the login lockouts (django-axes, in the database) do with the test's
    rollback: both stay on in tests."""
    cache.clear()


@pytest.fixture(autouse=True)
def _site_language():
    """Every test starts and ends in the site's language: a request in English (the language
    cookie, Accept-Language) leaves English active in its thread, as in any Django process."""
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture
def client_a(db):
    return client_create(name="Альфа Маркет", tier_code="foundation", inn="7707083893")


@pytest.fixture
def client_b(db):
    return client_create(name="Бета Стор", tier_code="advanced")


@pytest.fixture
def api_key_a(client_a):
    _key, raw = api_key_create(client=client_a, name="test")
    return raw


@pytest.fixture
def api_key_b(client_b):
    _key, raw = api_key_create(client=client_b, name="test")
    return raw


def _api(raw_key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return api


@pytest.fixture
def api_a(api_key_a) -> APIClient:
    return _api(api_key_a)


@pytest.fixture
def api_b(api_key_b) -> APIClient:
    return _api(api_key_b)


@pytest.fixture
def make_api():
    return _api


def _staff(django_user_model, username: str, group: str | None, superuser: bool = False):
    user = django_user_model.objects.create_user(
        username=username, password="pass-12345", is_staff=True, is_superuser=superuser
    )
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def agency_admin(django_user_model):
    return _staff(django_user_model, "boss", AGENCY_ADMIN)


@pytest.fixture
def account_manager(django_user_model, client_a):
    user = _staff(django_user_model, "manager", ACCOUNT_MANAGER)
    client_a.account_managers.add(user)
    return user


@pytest.fixture
def analyst(django_user_model):
    return _staff(django_user_model, "analyst", ANALYST)


@pytest.fixture
def portal_owner_a(django_user_model, client_a):
    user = django_user_model.objects.create_user(username="owner-a", password="pass-12345")
    ClientMembership.objects.create(user=user, client=client_a, role=ClientMembership.Role.OWNER)
    return user


ROOT = Path(__file__).resolve().parent.parent


# Deployment settings a worker reads from its environment that tests point elsewhere (the ad
# platforms' addresses, at the stubs): a started worker gets the test's values.
WORKER_SETTINGS = (
    "YANDEX_AUDIENCES_BASE_URL",
    "VK_ADS_BASE_URL",
    "MYTARGET_BASE_URL",
    "YANDEX_DIRECT_BASE_URL",
    "UNISENDER_BASE_URL",
    "SENDSAY_BASE_URL",
    "SMSRU_BASE_URL",
    "SMSC_BASE_URL",
    "RUSTORE_BASE_URL",
    "WEBPUSH_ALLOW_PRIVATE_ENDPOINTS",
    "EMAIL_URL",
)


@pytest.fixture
def start_worker(settings):
    """Start real Celery worker processes on the test database and the Redis broker of
    `make test` (extra environment variables as keyword arguments, and the test's values of
    ``WORKER_SETTINGS``); all are stopped at the end. Tests that use it need
    ``django_db(transaction=True)`` so the worker sees their rows."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs the Redis broker that scripts/with_test_services.sh starts")
    processes: list[subprocess.Popen] = []

    def start(**extra_env: str) -> subprocess.Popen:
        db = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            **{name: str(getattr(settings, name)) for name in WORKER_SETTINGS},
            **extra_env,
        }
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
                "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# Append-only tables whose statement trigger refuses TRUNCATE (agency and consent migrations).
TRUNCATE_GUARDED = {
    "agency_auditlogentry": "agency_auditlog_no_truncate",
    "consent_consentrecord": "consent_record_no_truncate",
}


@pytest.fixture(scope="session", autouse=True)
def _flush_past_the_truncate_guards():
    """Transactional tests end with Django's flush, one TRUNCATE of every table, which the
    append-only tables refuse. As a database owner could, the flush disables those triggers
    for its own transaction and enables them again before it commits."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        sql = original(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        guarded = [(t, trigger) for t, trigger in TRUNCATE_GUARDED.items() if t in tables]
        if not sql or not guarded:
            return sql
        return [
            *(f"ALTER TABLE {t} DISABLE TRIGGER {trigger}" for t, trigger in guarded),
            *sql,
            *(f"ALTER TABLE {t} ENABLE TRIGGER {trigger}" for t, trigger in guarded),
        ]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original
