"""Wrong API keys (issue 11, security 3): at most API_KEY_FAILURE_LIMIT (20) a minute from one
address, then 429 JSON with Retry-After for every key from it; other addresses are not
affected. The counters live in Django's cache (emptied before each test: tests/conftest.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from clients import auth

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers/"


def call(key: str, ip: str):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return api.get(URL, REMOTE_ADDR=ip)


def test_21_wrong_keys_in_a_minute_answer_429_and_other_addresses_still_work(api_key_a):
    statuses = [call(f"cvm_wrong_{n}", "10.9.9.9").status_code for n in range(20)]
    assert statuses == [401] * 20
    refused = call("cvm_wrong_21", "10.9.9.9")
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "throttled"
    assert "неверных API-ключей" in body["message"]
    assert 0 < int(refused["Retry-After"]) <= 60
    # From the blocked address even the right key waits: a lucky guess is not told apart.
    assert call(api_key_a, "10.9.9.9").status_code == 429
    # Another address is not affected.
    assert call(api_key_a, "10.9.9.10").status_code == 200
    assert call("cvm_wrong_22", "10.9.9.10").status_code == 401


def test_the_browsable_api_gets_the_429_too(client_a):
    for n in range(20):
        call(f"cvm_wrong_{n}", "10.8.8.8")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Api-Key cvm_wrong")
    response = api.get(URL, REMOTE_ADDR="10.8.8.8", HTTP_ACCEPT="text/html")
    assert response.status_code == 429


def test_good_keys_are_never_counted(api_key_a):
    for _ in range(40):
        assert call(api_key_a, "10.7.7.7").status_code == 200
    assert call("cvm_wrong", "10.7.7.7").status_code == 401


def test_empty_keys_count_as_wrong_ones():
    for _ in range(20):
        assert call("", "10.6.6.6").status_code == 401
    assert call("", "10.6.6.6").status_code == 429


def test_the_block_ends_after_a_minute(api_key_a, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(auth.time, "time", lambda: now[0])
    for n in range(20):
        now[0] += 1  # 20 failures over 20 seconds
        call(f"cvm_wrong_{n}", "10.5.5.5")
    assert call(api_key_a, "10.5.5.5").status_code == 429
    now[0] += 59
    assert call(api_key_a, "10.5.5.5")["Retry-After"] == "1"
    now[0] += 1
    assert call(api_key_a, "10.5.5.5").status_code == 200


def test_at_most_the_limit_in_any_minute_across_windows(api_key_a, monkeypatch):
    """19 failures late in one minute and more early in the next: the 20th within any 60
    seconds blocks, whatever the clock's minute."""
    now = [2_000_055.0]
    monkeypatch.setattr(auth.time, "time", lambda: now[0])
    for n in range(19):
        assert call(f"cvm_a_{n}", "10.4.4.4").status_code == 401
    now[0] += 10  # a new clock minute, 10 s later
    assert call("cvm_b", "10.4.4.4").status_code == 401  # the 20th within a minute
    assert call("cvm_c", "10.4.4.4").status_code == 429
