"""Pytest fixtures of the owned-channel stubs, imported by tests/conftest.py so every test
folder (tests/campaigns, tests/integrations, ...) can use them.

Each starts its stub on a free loopback port and points the provider's setting at it for the
test (the ``settings`` fixture restores it), as `make run` does with environment variables; a
worker started by ``start_worker`` inherits the settings. ``stub.credentials`` is what a client
company would enter for the stub's account; ``stub.sent`` lists the accepted messages.
"""

from __future__ import annotations

import pytest

from tests.stubs.calltouch import CalltouchStub
from tests.stubs.roistat import RoistatStub
from tests.stubs.rustore import RuStoreStub
from tests.stubs.sendsay import SendsayStub
from tests.stubs.smsc import SmscStub
from tests.stubs.smsru import SmsRuStub
from tests.stubs.smtp_sink import SmtpSink
from tests.stubs.unisender import UniSenderStub
from tests.stubs.webpush import WebPushStub
from tests.stubs.yandex_direct import YandexDirectStub
from tests.stubs.yandex_metrica import YandexMetricaStub

# Options of a provider client in tests: short timeouts and pauses, enough attempts to get
# through injected faults.
FAST_HTTP = {"timeout": 5, "max_attempts": 8, "max_backoff": 0.05}


@pytest.fixture
def unisender_stub(settings):
    """UniSender; its 60-second rule between two sends to one address is off here
    (``min_interval=0``), so a chain may mail one person twice in a test."""
    with UniSenderStub(min_interval=0) as stub:
        settings.UNISENDER_BASE_URL = stub.base_url
        yield stub


@pytest.fixture
def sendsay_stub(settings):
    with SendsayStub() as stub:
        settings.SENDSAY_BASE_URL = stub.base_url
        yield stub


@pytest.fixture
def smsru_stub(settings):
    with SmsRuStub() as stub:
        settings.SMSRU_BASE_URL = stub.base_url
        yield stub


@pytest.fixture
def smsc_stub(settings):
    with SmscStub() as stub:
        settings.SMSC_BASE_URL = stub.base_url
        yield stub


@pytest.fixture
def rustore_stub(settings):
    with RuStoreStub() as stub:
        settings.RUSTORE_BASE_URL = stub.base_url
        yield stub


@pytest.fixture
def webpush_stub(settings):
    """A push service on loopback: its endpoints are http://127.0.0.1:..., so private endpoints
    are allowed for the test. ``webpush_stub.subscribe()`` makes a subscription."""
    with WebPushStub() as stub:
        settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = True
        yield stub


@pytest.fixture
def smtp_sink(settings):
    """A real SMTP server (aiosmtpd) with Django's SMTP backend pointed at it
    (``smtp_sink.messages`` holds what it received)."""
    with SmtpSink() as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = sink.host
        settings.EMAIL_PORT = sink.port
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 10
        settings.EMAIL_URL = sink.email_url
        yield sink


@pytest.fixture
def direct_stub(settings):
    """Yandex Direct: one advertiser (``direct_stub.login``) reachable with
    ``direct_stub.credentials`` ({"token"}); reports are ready on the second poll."""
    with YandexDirectStub(retry_in=0) as stub:
        settings.YANDEX_DIRECT_BASE_URL = stub.base_url
        yield stub


# Spend, calls and offline conversions (reports): the same pattern, for the import services.


@pytest.fixture
def roistat_stub(settings):
    with RoistatStub() as stub:
        settings.ROISTAT_BASE_URL = stub.base_url
        yield stub


@pytest.fixture
def calltouch_stub(settings):
    with CalltouchStub() as stub:
        settings.CALLTOUCH_BASE_URL = stub.base_url
        yield stub


@pytest.fixture
def metrica_stub(settings):
    """Metrica with processing finished on the next request (``processing_delay=0``)."""
    with YandexMetricaStub() as stub:
        settings.YANDEX_METRICA_BASE_URL = stub.base_url
        yield stub
