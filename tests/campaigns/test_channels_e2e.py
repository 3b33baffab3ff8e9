"""The engine through the real channel clients: email into a real SMTP server (aiosmtpd), SMS
into the SMS.ru stub (per-number errors, injected faults), push into the RuStore stub."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.authoring import channel_settings_save, push_device_register
from campaigns.models import Message
from campaigns.services import chains_tick

from .conftest import chain, consent, make_customers, register

pytestmark = pytest.mark.django_db
NOW = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0)


def final(client):
    return Message.objects.for_client(client)


def test_email_reaches_a_real_smtp_server_once_with_unsubscribe_headers(client_a, smtp_sink):
    people = make_customers(client_a, 3)
    consent(client_a, people)
    chain(client_a, holdout_percent=0)
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    assert len(smtp_sink.messages) == 3
    mail = smtp_sink.sent_to(people[0].email)[0]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/consent/u/" in mail["List-Unsubscribe"]
    html = mail.get_body(("html",)).get_content()
    assert "/t/o/" in html  # the open pixel
    assert "/t/c/" in html  # the tracked link
    sent = final(client_a).get(customer=people[0])
    assert sent.state == "sent"
    assert sent.provider == "smtp"
    assert sent.provider_message_id == mail["Message-ID"].strip("<>") or sent.provider_message_id
    chains_tick(client_a.pk, now=NOW + dt.timedelta(minutes=5))
    assert len(smtp_sink.messages) == 3  # never twice


def sms_world(client, smsru_stub, n):
    channel_settings_save(
        client=client,
        channel="sms",
        provider="smsru",
        sender="CVM-DEMO",
        credentials=smsru_stub.credentials,
    )
    people = make_customers(client, n)
    consent(client, people, purpose="sms_marketing")
    chain(client, holdout_percent=0, steps=(("sms", 0, "always"),))
    register(client, people, NOW - dt.timedelta(hours=1))
    return people


def test_sms_a_bad_number_fails_alone_with_the_providers_words(client_b, smsru_stub):
    people = sms_world(client_b, smsru_stub, 5)
    smsru_stub.unroutable.add(people[2].phone.lstrip("+"))
    chains_tick(client_b.pk, now=NOW)
    states = dict(final(client_b).values_list("customer_id", "state"))
    assert states[people[2].pk] == "failed"
    assert [states[p.pk] for p in people if p != people[2]] == ["sent"] * 4
    assert final(client_b).get(customer=people[2]).reason  # the provider's own text
    assert len(smsru_stub.sent) == 4


def test_sms_under_20_percent_faults_every_message_ends_once(client_b, smsru_stub, settings):
    settings.AD_PLATFORM_TIMEOUT = 1
    settings.AD_PLATFORM_MAX_BACKOFF = 0.05
    people = sms_world(client_b, smsru_stub, 300)
    smsru_stub.fault_rate = 0.2
    smsru_stub.timeout_sleep = 1.5
    moment = NOW
    for _tick in range(40):
        chains_tick(client_b.pk, now=moment)
        if not final(client_b).filter(state__in=("queued", "deferred", "sending")).exists():
            break
        moment += dt.timedelta(minutes=20)
    states = list(final(client_b).values_list("state", flat=True))
    assert len(states) == 300
    assert set(states) <= {"sent", "failed"}
    deliveries = smsru_stub.deliveries()
    assert max(deliveries.values()) == 1  # none twice
    sent = final(client_b).filter(state="sent").count()
    assert sent == len(deliveries) - final(client_b).filter(outcome_unknown=True).count() or (
        sent <= len(deliveries)
    )
    assert {p.phone.lstrip("+") for p in people} >= set(deliveries)


def test_push_through_rustore_and_a_dead_token_stops_that_device(client_b, rustore_stub):
    channel_settings_save(
        client=client_b, channel="push", provider="rustore", credentials=rustore_stub.credentials
    )
    people = make_customers(client_b, 2)
    consent(client_b, people, purpose="push_marketing")
    for i, person in enumerate(people):
        push_device_register(
            client=client_b, customer=person, provider="rustore", token=f"device-token-{i:016d}"
        )
    rustore_stub.revoke("device-token-0000000000000001")
    chain(client_b, holdout_percent=0, steps=(("push", 0, "always"),))
    register(client_b, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_b.pk, now=NOW)
    assert final(client_b).get(customer=people[0]).state == "sent"
    dead = final(client_b).get(customer=people[1])
    assert dead.state == "failed"
    from campaigns.models import PushDevice

    device = PushDevice.objects.for_client(client_b).get(customer=people[1])
    assert device.gone_at is not None


def test_web_push_abroad_needs_a_cross_border_notice(client_b, webpush_stub):
    """A subscription on this machine's push service is sent; one on FCM (US) is held back by
    the cross-border guard, with its reason, and never leaves."""
    import json

    from consent.models import TransferRefusal

    channel_settings_save(
        client=client_b, channel="push", provider="webpush", credentials=webpush_stub.credentials
    )
    local, abroad = make_customers(client_b, 2)
    consent(client_b, [local, abroad], purpose="push_marketing")
    push_device_register(
        client=client_b, customer=local, provider="webpush", token=webpush_stub.subscribe()
    )
    fcm = dict(webpush_stub.subscribe())
    fcm["endpoint"] = "https://fcm.googleapis.com/fcm/send/abc123"
    push_device_register(client=client_b, customer=abroad, provider="webpush", token=fcm)
    chain(client_b, holdout_percent=0, steps=(("push", 0, "always"),))
    register(client_b, [local, abroad], NOW - dt.timedelta(hours=1))
    chains_tick(client_b.pk, now=NOW)
    sent = final(client_b).get(customer=local)
    assert sent.state == "sent", sent.reason
    held = final(client_b).get(customer=abroad)
    assert held.state == "suppressed"
    assert "US" in held.reason or "США" in held.reason or "fcm" in held.reason
    assert TransferRefusal.objects.for_client(client_b).exists()
    assert all("fcm.googleapis.com" not in json.dumps(r) for r in getattr(webpush_stub, "sent", []))
