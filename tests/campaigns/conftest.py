"""Fixtures of the campaigns tests: templates of each channel, a chain with its steps and an
outbox with known counts (enrolments in both arms, messages in every state)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.authoring import chain_create, template_create
from campaigns.models import Enrollment, Message
from clients.ingest import ingest_records
from clients.models import Customer

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
