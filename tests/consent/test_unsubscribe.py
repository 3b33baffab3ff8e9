"""Signed one-click unsubscribe links: the page, the withdrawal, RFC 8058 headers, bad tokens."""

from __future__ import annotations

import re

import pytest
from django.core import signing

from consent.models import ConsentRecord
from consent.selectors import consent_is_granted
from consent.services import ConsentError, consent_record_append
from consent.unsubscribe import (
    SIGNING_SALT,
    purpose_code_for_channel,
    unsubscribe_headers,
    unsubscribe_url,
)

pytestmark = pytest.mark.django_db

BASE = "https://cvm.example.ru"


@pytest.fixture(autouse=True)
def _public_base(settings):
    settings.PUBLIC_BASE_URL = BASE


@pytest.fixture
def person(client_a, texts_a, customers_a):
    person = customers_a[0]
    for purpose in ("email_marketing", "sms_marketing"):
        consent_record_append(
            client=client_a,
            customer=person,
            purpose_code=purpose,
            action="granted",
            source="web_form",
        )
    return person


def _path(url: str) -> str:
    assert url.startswith(BASE + "/consent/u/")
    return url[len(BASE) :]


def _records(client, person):
    return ConsentRecord.objects.for_client(client).filter(customer=person).order_by("id")


def test_headers_follow_rfc_8058(person):
    headers = unsubscribe_headers(customer=person, purpose_code="email_marketing")

    assert set(headers) == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    assert re.fullmatch(
        r"<https://cvm\.example\.ru/consent/u/[^/<>\s]+/>", headers["List-Unsubscribe"]
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"] == (
        f"<{unsubscribe_url(customer=person, purpose_code='email_marketing')}>"
    )


def test_channel_maps_to_its_purpose(db):
    assert purpose_code_for_channel("email") == "email_marketing"
    assert purpose_code_for_channel("sms") == "sms_marketing"
    assert purpose_code_for_channel("push") == "push_marketing"
    with pytest.raises(ConsentError):
        purpose_code_for_channel("fax")


def test_unknown_purpose_is_refused_when_building_the_link(person):
    with pytest.raises(ConsentError):
        unsubscribe_url(customer=person, purpose_code="carrier_pigeon")


def test_get_shows_confirmation_and_writes_nothing(client, client_a, person):
    before = _records(client_a, person).count()
    url = _path(unsubscribe_url(customer=person, purpose_code="email_marketing"))

    response = client.get(url)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Отписаться от рассылки?" in page
    assert "Альфа Маркет" in page
    assert "email-рассылки" in page
    assert "p***@example.ru" in page  # the address, masked
    assert '<form method="post">' in page
    assert response["Referrer-Policy"] == "no-referrer"
    assert _records(client_a, person).count() == before
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is True


def test_post_records_withdrawal_with_evidence(client, client_a, person):
    url = _path(unsubscribe_url(customer=person, purpose_code="email_marketing"))

    response = client.post(url, {"confirm": "1"}, HTTP_USER_AGENT="Mozilla/5.0 (test)")

    assert response.status_code == 200
    assert "Вы отписаны" in response.content.decode()
    record = _records(client_a, person).last()
    assert record.action == ConsentRecord.Action.WITHDRAWN
    assert record.source == ConsentRecord.Source.UNSUBSCRIBE_LINK
    assert record.purpose.code == "email_marketing"
    assert record.ip == "127.0.0.1"
    assert record.user_agent == "Mozilla/5.0 (test)"
    assert record.url.endswith(url)
    assert record.form_id == "unsubscribe-page"
    assert record.details == {"channel": "email", "one_click": False}
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is False
    # Only that channel's purpose.
    assert consent_is_granted(customer=person, purpose_code="sms_marketing") is True


def test_one_click_post_records_withdrawal_without_page(client, client_a, person):
    url = _path(unsubscribe_url(customer=person, purpose_code="sms_marketing"))

    # What a mail client sends (RFC 8058): no cookies, no CSRF token.
    response = client.post(
        url,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert "<form" not in response.content.decode()
    record = _records(client_a, person).last()
    assert record.action == ConsentRecord.Action.WITHDRAWN
    assert record.form_id == "list-unsubscribe-one-click"
    assert record.details == {"channel": "sms", "one_click": True}
    assert consent_is_granted(customer=person, purpose_code="sms_marketing") is False
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is True


def test_csrf_is_not_required(client_a, person):
    from django.test import Client as BrowserClient

    browser = BrowserClient(enforce_csrf_checks=True)
    url = _path(unsubscribe_url(customer=person, purpose_code="email_marketing"))

    assert browser.post(url, {"confirm": "1"}).status_code == 200
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is False


def test_second_click_writes_nothing_new(client, client_a, person):
    url = _path(unsubscribe_url(customer=person, purpose_code="email_marketing"))
    client.post(url, {"confirm": "1"})
    count = _records(client_a, person).count()

    again = client.post(url, {"confirm": "1"})
    one_click = client.post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    page = client.get(url)

    assert again.status_code == one_click.status_code == page.status_code == 200
    assert "уже было отозвано" in again.content.decode()
    assert "Вы отписаны" in page.content.decode()  # GET after withdrawal: no button again
    assert "<form" not in page.content.decode()
    assert _records(client_a, person).count() == count


def test_grant_after_unsubscribe_then_link_withdraws_again(client, client_a, person):
    url = _path(unsubscribe_url(customer=person, purpose_code="email_marketing"))
    client.post(url, {"confirm": "1"})
    consent_record_append(
        client=client_a,
        customer=person,
        purpose_code="email_marketing",
        action="granted",
        source="web_form",
    )
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is True

    client.post(url, {"confirm": "1"})

    assert consent_is_granted(customer=person, purpose_code="email_marketing") is False
    actions = list(
        _records(client_a, person)
        .filter(purpose__code="email_marketing")
        .values_list("action", flat=True)
    )
    assert actions == ["granted", "withdrawn", "granted", "withdrawn"]


def test_unsubscribe_without_any_record_is_recorded_once(client, client_a, customers_a, texts_a):
    person = customers_a[1]
    url = _path(unsubscribe_url(customer=person, purpose_code="push_marketing"))

    client.post(url, {"confirm": "1"})
    client.post(url, {"confirm": "1"})

    assert list(_records(client_a, person).values_list("action", flat=True)) == ["withdrawn"]


@pytest.mark.parametrize("method", ["get", "post"])
def test_tampered_token_is_400_and_writes_nothing(client, client_a, client_b, person, method):
    url = _path(unsubscribe_url(customer=person, purpose_code="email_marketing"))
    token = url.split("/")[3]
    payload, _, signature = token.rpartition(":")
    forged_payload = signing.dumps([client_a.pk, person.pk + 1, "email_marketing"], salt="x")
    forged = [
        "/consent/u/garbage/",
        f"/consent/u/{payload}:{signature[:-2]}xx/",  # damaged signature
        f"/consent/u/{forged_payload}/",  # signed with another salt
        # A valid signature over someone else's data cannot be made without the key; a token
        # of another salt or a cut one is all an attacker has.
        f"/consent/u/{token[:-5]}/",
    ]
    before = ConsentRecord.objects.unscoped().count()

    for bad in forged:
        response = getattr(client, method)(bad, {"confirm": "1"} if method == "post" else None)
        assert response.status_code == 400, bad
        assert "Ссылка недействительна" in response.content.decode()

    assert ConsentRecord.objects.unscoped().count() == before
    assert consent_is_granted(customer=person, purpose_code="email_marketing") is True


def test_token_naming_a_customer_of_another_client_is_400(client, client_a, client_b, person):
    # Correctly signed, but the customer does not belong to the client it names.
    token = signing.dumps([client_b.pk, person.pk, "email_marketing"], salt=SIGNING_SALT)
    before = ConsentRecord.objects.unscoped().count()

    response = client.post(f"/consent/u/{token}/", {"confirm": "1"})

    assert response.status_code == 400
    assert ConsentRecord.objects.unscoped().count() == before
