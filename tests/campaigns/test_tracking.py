"""Opens and clicks: the pixel and the signed redirect become Events tied to the message and
move it forward; a tampered token is a 404 and no open redirect."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from campaigns.models import Message
from campaigns.services import chains_tick
from clients.models import Event

from .conftest import chain, consent, make_customers, register

pytestmark = pytest.mark.django_db
NOW = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0)


def sent_email(client_a):
    people = make_customers(client_a, 1)
    consent(client_a, people)
    chain(client_a, holdout_percent=0)
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    return Message.objects.for_client(client_a).get()


def test_open_and_click_become_events_of_the_message(client_a, recording, client):
    message = sent_email(client_a)
    assert message.state == "sent"
    body = recording["email"].sent[0].body
    pixel = re.search(r'<img src="http://[^/]+(/t/o/[^"]+)"', body).group(1)
    links = re.findall(r'href="http://[^/]+(/t/c/[^"]+)"', body)
    assert len(links) == 1  # the shop link is tracked...
    assert 'href="http://127.0.0.1' in body
    assert "/consent/u/" in body  # ...the unsubscribe link is not wrapped

    assert client.get(pixel).status_code == 200
    assert client.get(pixel).status_code == 200  # a second open adds no event
    message.refresh_from_db()
    assert message.state == "opened"
    assert message.opened_at is not None
    response = client.get(links[0])
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/sale"
    message.refresh_from_db()
    assert message.state == "clicked"
    events = Event.objects.for_client(client_a).filter(
        customer_id=message.customer_id, type__startswith="email_"
    )
    assert sorted(events.values_list("type", flat=True)) == ["email_click", "email_open"]
    assert {e.properties["message_id"] for e in events} == {message.pk}


def test_a_tampered_token_is_a_404_not_a_redirect(client_a, recording, client):
    sent_email(client_a)
    body = recording["email"].sent[0].body
    link = re.search(r'href="http://[^/]+(/t/c/[^"]+)"', body).group(1)
    assert client.get(link[:-3] + "abc").status_code == 404
    assert client.get("/t/c/not-a-token").status_code == 404
    assert client.get("/t/o/not-a-token.gif").status_code == 404


def test_sms_links_are_short_signed_redirects(client_b, recording, client):
    from .conftest import sms_settings

    sms_settings(client_b)
    people = make_customers(client_b, 2)
    consent(client_b, people, purpose="sms_marketing")
    chain(client_b, holdout_percent=0, steps=(("sms", 0, "always"),))
    register(client_b, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_b.pk, now=NOW)
    text = recording["sms"].sent[0].body
    link = re.search(r"http://\S+/t/s/\S+", text).group(0)
    assert len(link) < 70  # every character of an SMS counts
    path = link.split("127.0.0.1:8000", 1)[-1]
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/s"
    message = Message.objects.for_client(client_b).get(customer=people[0])
    assert message.state == "clicked"
    assert Event.objects.for_client(client_b).filter(type="sms_click").count() == 1
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert client.get(forged).status_code == 404


def test_short_link_signatures_never_contain_the_separator():
    from campaigns.tracking import _short_signature

    for number in range(2000):  # base64 would put a "-" in about one in six
        assert "-" not in _short_signature(f"{number}-1-1")
