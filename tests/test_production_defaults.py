"""Production defaults: HTTPS on unless DJANGO_SECURE_HTTPS=0, a Content-Security-Policy on
every page, the client's IP from a proxy header only behind a trusted proxy, and the API schema
and docs for signed-in callers only unless API_DOCS_PUBLIC."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import RequestFactory

from agency.audit import request_ip

ROOT = Path(__file__).resolve().parent.parent
HTTPS_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def deploy_check(**env: str) -> str:
    """``manage.py check --deploy`` in a fresh process with DEBUG off and the given variables."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SECURE_HTTPS", "API_DOCS_PUBLIC", "TRUSTED_PROXIES")
    }
    environment.update(
        DJANGO_DEBUG="0",
        SECRET_KEY="deploy-check-" + "k" * 60,
        CREDENTIALS_KEYS="dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0zMi1ieXQ=",
        **env,
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout + result.stderr


def test_check_deploy_is_clean_of_https_warnings_by_default():
    output = deploy_check()
    assert "System check identified" in output or "no issues" in output, output
    for warning in HTTPS_WARNINGS:
        assert warning not in output, output


def test_secure_https_off_turns_hsts_redirect_and_secure_cookies_off():
    output = deploy_check(DJANGO_SECURE_HTTPS="0")
    for warning in HTTPS_WARNINGS:
        assert warning in output, output


# --------------------------------------------------------------------------------------------
# Content-Security-Policy


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.django_db
def test_every_page_has_a_strict_content_security_policy(client):
    policy = _policy(client.get("/portal/login/"))
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"][0] == "'self'"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["style-src"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
def test_inline_tags_of_the_banner_demo_carry_the_responses_nonce(client, client_a):
    from consent.models import ConsentSite

    site = ConsentSite.objects.create(client=client_a, name="shop", allowed_origins=[])
    response = client.get(f"/consent/demo/?site={site.site_key}")
    assert response.status_code == 200
    nonces = [v for v in _policy(response)["script-src"] if v.startswith("'nonce-")]
    assert len(nonces) == 1
    nonce = nonces[0][len("'nonce-") : -1]
    page = response.content.decode()
    assert f'nonce="{nonce}"' in page
    # No inline script or style without the nonce, and no inline event handler.
    for tag in re.findall(r"<(?:script|style)\b[^>]*>", page):
        assert "src=" in tag or f'nonce="{nonce}"' in tag, tag
    assert not re.search(r"\son[a-z]+=", page)


# --------------------------------------------------------------------------------------------
# The client's IP


def _request(remote_addr: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_forwarded_for_is_ignored_from_an_untrusted_peer(settings):
    settings.TRUSTED_PROXIES = []
    assert request_ip(_request("198.51.100.4", "203.0.113.9")) == "198.51.100.4"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert request_ip(_request("198.51.100.4", "203.0.113.9")) == "198.51.100.4"


def test_forwarded_for_is_used_from_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.1"]
    assert request_ip(_request("10.0.0.1", "203.0.113.9")) == "203.0.113.9"
    # Through two trusted proxies; what the client itself wrote at the left does not count.
    chain = "1.1.1.1, 203.0.113.9, 192.0.2.1"
    assert request_ip(_request("10.0.0.1", chain)) == "203.0.113.9"
    # A malformed hop ends the trust: the last proxy that named it is the client.
    assert request_ip(_request("10.0.0.1", "203.0.113.9, nonsense")) == "10.0.0.1"
    # No header: the proxy itself.
    assert request_ip(_request("10.0.0.1")) == "10.0.0.1"
    # IPv4 through an IPv6 socket.
    assert request_ip(_request("::ffff:10.0.0.1", "203.0.113.9")) == "203.0.113.9"
    settings.TRUSTED_PROXIES = ["2001:db8::/32"]
    assert request_ip(_request("2001:db8::1", "2001:db8:1::5, 203.0.113.9")) == "203.0.113.9"


def test_forwarded_proto_counts_only_from_a_trusted_proxy(client, settings, db):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    trusted = client.get("/portal/login/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="10.0.0.1")
    assert trusted.status_code == 200
    spoofed = client.get(
        "/portal/login/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.5"
    )
    assert spoofed.status_code == 301
    assert spoofed["Location"].startswith("https://")


# --------------------------------------------------------------------------------------------
# API schema and docs


@pytest.mark.django_db
def test_api_schema_and_docs_need_a_login_or_key_in_production(client, settings, api_a):
    settings.API_DOCS_PUBLIC = False
    for url in ("/api/schema/", "/api/docs/", "/api/docs/?script="):
        assert client.get(url).status_code in (401, 403), url
    assert api_a.get("/api/schema/").status_code == 200
    assert api_a.get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_api_docs_public_serves_them_to_anyone(client, settings):
    settings.API_DOCS_PUBLIC = True
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui-bundle.js" in docs.content
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"/api/schema/" in script.content


@pytest.mark.django_db
def test_staff_session_reads_the_docs(client, settings, agency_admin):
    settings.API_DOCS_PUBLIC = False
    client.force_login(agency_admin)
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/schema/").status_code == 200
