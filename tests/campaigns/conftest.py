"""Fixtures of the campaigns tests: templates of each channel, a chain with its steps and an
outbox with known counts (enrolments in both arms, messages in every state); for the engine, a
client's customers with channel consents, chains written directly as rows, and a recording
channel client that checks consent at the moment of each send."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns import channels
from campaigns.authoring import chain_create, template_create
from campaigns.models import (
    ChainStep,
    ChannelSettings,
    Enrollment,
    Message,
    MessageTemplate,
    TriggerChain,
)
from clients.ingest import ingest_records
from clients.models import Customer, Event
from consent.models import ConsentRecord, DataRecipient
from consent.selectors import consent_is_granted
from consent.services import consent_record_build, consent_records_save
from integrations.messaging import OutgoingMessage, SendResult
from tests.consent.conftest import publish_texts

GRANTED, WITHDRAWN = ConsentRecord.Action.GRANTED, ConsentRecord.Action.WITHDRAWN


@dataclass
class RecordingClient:
    """A channel client that accepts everything and records what it was given, and which
    asserts, at the moment of each send, that the person has a current consent for the
    channel's purpose (the rule the engine must never break)."""

    channel: str
    purpose: str
    max_batch: int = 50
    idempotent: bool = False
    sent: list[OutgoingMessage] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    fail_keys: set[str] = field(default_factory=set)
    gone_addresses: set[str] = field(default_factory=set)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        from campaigns.models import Message

        results = []
        for outgoing in messages:
            message = (
                Message.objects.unscoped().select_related("customer").get(pk=int(outgoing.key))
            )
            if not consent_is_granted(customer=message.customer, purpose_code=self.purpose):
                self.violations.append(outgoing.key)
            self.sent.append(outgoing)
            if outgoing.to in self.gone_addresses:
                results.append(
                    SendResult(outgoing.key, "failed", error="550 5.1.1 user unknown", gone=True)
                )
            elif outgoing.key in self.fail_keys:
                results.append(SendResult(outgoing.key, "failed", error="550 no such user"))
            else:
                results.append(SendResult(outgoing.key, "accepted", provider_id=f"p{outgoing.key}"))
        return results

    def close(self) -> None:
        pass


@pytest.fixture
def recording(monkeypatch):
    """Recording clients for email (the platform SMTP default) and SMS (SMS.ru settings)."""
    clients = {
        "email": RecordingClient("email", "email_marketing"),
        "sms": RecordingClient("sms", "sms_marketing"),
        "push": RecordingClient("push", "push_marketing"),
    }
    monkeypatch.setitem(channels.BUILDERS, "smtp", lambda *a: clients["email"])
    monkeypatch.setitem(channels.BUILDERS, "smsru", lambda *a: clients["sms"])
    monkeypatch.setitem(channels.BUILDERS, "rustore", lambda *a: clients["push"])
    return clients


def sms_settings(client) -> ChannelSettings:
    recipient = DataRecipient.objects.create(
        client=client, name="SMS.ru", kind=DataRecipient.Kind.SMS, country="RU"
    )
    return ChannelSettings.objects.create(
        client=client, channel="sms", provider="smsru", sender="SHOP", recipient=recipient
    )


def consent(client, customers, purpose="email_marketing", action=GRANTED, at=None):
    consent_records_save(
        [
            consent_record_build(
                client=client,
                purpose_code=purpose,
                action=action,
                source="api",
                customer=c,
                **({"at": at} if at else {}),
            )
            for c in customers
        ]
    )


def make_customers(client, n: int, *, prefix: str = "c", **extra) -> list[Customer]:
    publish_texts(client)
    records = [
        {
            "external_id": f"{prefix}{i:05d}",
            "email": f"{prefix}{i}@example.ru",
            "phone": f"+7916{i:07d}",
            "first_name": "Анна",
            **extra,
        }
        for i in range(n)
    ]
    ingest_records(client=client, kind="customers", records=records)
    by_ext = {c.external_id: c for c in Customer.objects.for_client(client)}
    return [by_ext[r["external_id"]] for r in records]


def register(client, customers, at: dt.datetime) -> None:
    Event.objects.bulk_create(
        [
            Event(
                client=client,
                customer=c,
                external_id=f"reg-{c.pk}-{at.timestamp()}",
                type="registration",
                occurred_at=at,
            )
            for c in customers
        ]
    )


def template(client, channel="email", name=None, body=None, subject="Привет, {{ first_name }}"):
    return MessageTemplate.objects.create(
        client=client,
        name=name or f"{channel} {MessageTemplate.objects.for_client(client).count()}",
        channel=channel,
        subject=subject if channel != "sms" else "",
        body=body
        or (
            '<p>Здравствуйте, {{ first_name }}! <a href="https://shop.example/sale">Скидки</a> '
            '<a href="{{ unsubscribe_url }}">Отписаться</a></p>'
            if channel == "email"
            else "{{ first_name }}, скидка 10%: https://shop.example/s"
        ),
    )


def chain(client, *, steps=(("email", 0, "always"),), activated_at=None, **fields) -> TriggerChain:
    defaults = {
        "name": f"Цепочка {TriggerChain.objects.for_client(client).count() + 1}",
        "trigger": TriggerChain.Trigger.REGISTRATION,
        "status": TriggerChain.Status.ACTIVE,
        "holdout_percent": 10,
        "activated_at": activated_at or dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    defaults.update(fields)
    row = TriggerChain.objects.create(client=client, **defaults)
    for position, (channel, delay_hours, condition) in enumerate(steps, start=1):
        ChainStep.objects.create(
            chain=row,
            position=position,
            channel=channel,
            delay_hours=delay_hours,
            condition=condition,
            template=template(client, channel),
        )
    return row


EMAIL_BODY = (
    "<p>{{ first_name|default:'Здравствуйте' }}, промокод {{ offer_code }}.</p>"
    '<p><a href="https://shop.example.ru/sale?utm_source=email&amp;x=1">В магазин</a></p>'
    "{% for item in recommendations %}<li>{{ item.name }} — {{ item.price }} ₽</li>{% endfor %}"
    '<p><a href="{{ unsubscribe_url }}">Отписаться</a></p>'
)


def make_templates(client, suffix=""):
    return {
        "email": template_create(
            client=client,
            name=f"Письмо{suffix}",
            channel="email",
            subject="{{ first_name }}, скидка",
            body=EMAIL_BODY,
            offer_code="SALE10",
        ),
        "sms": template_create(
            client=client,
            name=f"SMS{suffix}",
            channel="sms",
            body="{{ first_name }}, код {{ offer_code }}: https://shop.example.ru/s "
            "Отказ: {{ unsubscribe_url }}",
            offer_code="SALE10",
        ),
        "push": template_create(
            client=client,
            name=f"Push{suffix}",
            channel="push",
            subject="Скидка",
            body="{{ first_name }}, промокод {{ offer_code }}",
        ),
    }


@pytest.fixture
def templates_a(client_a):
    return make_templates(client_a)


@pytest.fixture
def templates_b(client_b):
    return make_templates(client_b)


@pytest.fixture
def chain_a(client_a, templates_a):
    return chain_create(
        client=client_a,
        data={"name": "Скучаем", "trigger": "days_since_purchase", "trigger_days": 30},
        steps=[
            {"template": templates_a["email"]},
            {"template": templates_a["email"], "delay_hours": 48, "condition": "no_purchase"},
        ],
    )


@pytest.fixture
def customers_a(client_a):
    ingest_records(
        client=client_a,
        kind="customers",
        records=[
            {
                "external_id": f"c{i}",
                "email": f"person{i}@example.ru",
                "phone": f"+7916000000{i}",
                "first_name": f"Имя{i}",
            }
            for i in range(10)
        ],
    )
    return list(Customer.objects.for_client(client_a).order_by("external_id"))


# The outbox of ``outbox_a``: step 1 of the chain, by arm and state.
OUTBOX = [
    # (customer index, arm, enrolment state, message state, reason, stamps)
    (0, "treatment", "active", "queued", "", ()),
    (1, "treatment", "active", "sent", "", ("sent",)),
    (2, "treatment", "active", "delivered", "", ("sent", "delivered")),
    (3, "treatment", "converted", "opened", "", ("sent", "delivered", "opened")),
    (4, "treatment", "active", "clicked", "", ("sent", "delivered", "opened", "clicked")),
    (5, "treatment", "active", "suppressed", "нет согласия", ()),
    (6, "treatment", "active", "suppressed", "нет согласия", ()),
    (7, "treatment", "exited", "failed", "HTTP 400", ()),
    (8, "holdout", "active", "holdout", "", ()),
    (9, "holdout", "converted", "holdout", "", ()),
]


@pytest.fixture
def outbox_a(client_a, chain_a, customers_a):
    step = chain_a.steps.get(position=1)
    now = timezone.now()
    for index, arm, enrolment_state, state, reason, stamps in OUTBOX:
        customer = customers_a[index]
        enrollment = Enrollment.objects.create(
            client=client_a,
            chain=chain_a,
            customer=customer,
            arm=arm,
            state=enrolment_state,
            conversion_value=Decimal("1000.00") if enrolment_state == "converted" else None,
        )
        Message.objects.create(
            client=client_a,
            enrollment=enrollment,
            step=step,
            chain=chain_a,
            customer=customer,
            channel="email",
            arm=arm,
            address=customer.email,
            state=state,
            reason=reason,
            **{f"{name}_at": now for name in stamps},
        )
    return chain_a
