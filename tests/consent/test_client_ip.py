"""The banner's rate limit and the consent evidence take the client's IP from X-Forwarded-For
only behind a trusted proxy (TRUSTED_PROXIES), through agency.audit.request_ip."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client as HttpClient

from consent.models import ConsentRecord, ConsentSite

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example.ru"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # the banner's rate limit lives in the cache
    yield
    cache.clear()


@pytest.fixture
def site_a(client_a, texts_a):
    return ConsentSite.objects.create(client=client_a, name="shop", allowed_origins=[SHOP])


def post(site, subject: str, **extra):
    body = {"subject_id": subject, "choices": {"analytics_cookies": True, "ad_cookies": False}}
    return HttpClient().post(
        f"/consent/api/banner/?site={site.site_key}",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_ORIGIN=SHOP,
        **extra,
    )


def ips(client) -> set[str]:
    return set(ConsentRecord.objects.for_client(client).values_list("ip", flat=True))


def test_evidence_ignores_forwarded_for_from_an_untrusted_peer(client_a, site_a, settings):
    settings.TRUSTED_PROXIES = []
    response = post(
        site_a, "subject-0001", REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    assert response.status_code == 201
    assert ips(client_a) == {"198.51.100.4"}


def test_evidence_uses_forwarded_for_from_a_trusted_proxy(client_a, site_a, settings):
    settings.TRUSTED_PROXIES = ["198.51.100.0/24"]
    response = post(
        site_a, "subject-0001", REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    assert response.status_code == 201
    assert ips(client_a) == {"203.0.113.9"}


def test_rate_limit_counts_the_real_client(client_a, site_a, settings):
    settings.CONSENT_BANNER_RATE = "2/minute"
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    # A visitor who invents X-Forwarded-For per post is still one IP to the limit.
    codes = [
        post(
            site_a, f"subject-{i:04}", REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}"
        ).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]
    # Behind the trusted proxy, two visitors are two IPs: neither is limited by the other.
    for visitor in ("203.0.113.1", "203.0.113.2"):
        for i in range(2):
            response = post(
                site_a,
                f"subject-{visitor[-1]}{i:03}",
                REMOTE_ADDR="10.0.0.1",
                HTTP_X_FORWARDED_FOR=visitor,
            )
            assert response.status_code == 201
    limited = post(
        site_a, "subject-9999", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.1"
    )
    assert limited.status_code == 429
    assert ips(client_a) == {"198.51.100.4", "203.0.113.1", "203.0.113.2"}
