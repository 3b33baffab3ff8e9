"""A chain with hand-computable results: enrolments in both arms, their orders and messages.

Window 30 days, holdout 50 %. Enrolled 10.03.2026 12:00 UTC (20 treated t0..t19, 20 held out
h0..h19), plus one treated person enrolled 27.02.2026 (outside a March period).

- t0..t4 buy 100 ₽, t5..t9 200 ₽ (t5 also 50 ₽ more, inside the window): 10 conversions,
  1,550 ₽. Not counted: t10's order after the window, t11's cancelled order, t12's order before
  enrolment, another chain's and another client's people.
- h0..h4 buy 100 ₽: 5 conversions, 500 ₽.
- Step 1 (email) for everyone: sent to the treated, a ``holdout`` row for the held out; step 2
  (SMS) for t0..t9 and h0..h9.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from campaigns.models import ChainStep, Enrollment, Message, MessageTemplate, TriggerChain
from clients.models import Customer, Order

ENROLLED = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
SENT = ENROLLED + dt.timedelta(hours=1)


def make_chain(client, *, name="Брошенная корзина", holdout_percent=50, window=30):
    chain = TriggerChain.objects.create(
        client=client,
        name=name,
        trigger=TriggerChain.Trigger.REGISTRATION,
        status=TriggerChain.Status.ACTIVE,
        holdout_percent=holdout_percent,
        conversion_window_days=window,
    )
    for position, channel in ((1, "email"), (2, "sms")):
        template = MessageTemplate.objects.create(
            client=client, name=f"{name} {channel}", channel=channel, subject="Тема", body="Текст"
        )
        ChainStep.objects.create(chain=chain, position=position, channel=channel, template=template)
    return chain


def make_people(client, prefix: str, n: int) -> list[Customer]:
    return Customer.objects.bulk_create(
        [Customer(client=client, external_id=f"{prefix}{i}") for i in range(n)]
    )


def enrol(chain, people, arm, at=ENROLLED) -> list[Enrollment]:
    return Enrollment.objects.bulk_create(
        [
            Enrollment(client_id=chain.client_id, chain=chain, customer=c, arm=arm, enrolled_at=at)
            for c in people
        ]
    )


def order(client, customer, amount, at, status=Order.Status.PAID) -> Order:
    return Order.objects.create(
        client=client,
        customer=customer,
        external_id=f"o{Order.objects.for_client(client).count()}-{customer.pk}",
        placed_at=at,
        amount=Decimal(amount),
        status=status,
    )


def messages(chain, enrollments, position, *, sent: bool) -> None:
    step = chain.steps.get(position=position)
    Message.objects.bulk_create(
        [
            Message(
                client_id=chain.client_id,
                enrollment=e,
                step=step,
                chain=chain,
                customer_id=e.customer_id,
                channel=step.channel,
                arm=e.arm,
                state=Message.State.SENT if sent else Message.State.HOLDOUT,
                sending_at=SENT if sent else None,
                sent_at=SENT if sent else None,
            )
            for e in enrollments
        ]
    )


def build_results_data(client):
    chain = make_chain(client)
    treated = make_people(client, "t", 20)
    held = make_people(client, "h", 20)
    early = make_people(client, "early", 1)
    e_t = enrol(chain, treated, Enrollment.Arm.TREATMENT)
    e_h = enrol(chain, held, Enrollment.Arm.HOLDOUT)
    enrol(chain, early, Enrollment.Arm.TREATMENT, at=dt.datetime(2026, 2, 27, 9, tzinfo=dt.UTC))
    day = dt.timedelta(days=1)
    for i in range(5):
        order(client, treated[i], "100", ENROLLED + 2 * day)
        order(client, treated[5 + i], "200", ENROLLED + 3 * day)
        order(client, held[i], "100", ENROLLED + 4 * day)
    order(client, treated[5], "50", ENROLLED + 29 * day)
    order(client, treated[10], "999", ENROLLED + 31 * day)  # after the window
    order(client, treated[11], "999", ENROLLED + 5 * day, status=Order.Status.CANCELLED)
    order(client, treated[12], "999", ENROLLED - 20 * day)  # before enrolment (February)
    messages(chain, e_t, 1, sent=True)
    messages(chain, e_h, 1, sent=False)
    messages(chain, e_t[:10], 2, sent=True)
    messages(chain, e_h[:10], 2, sent=False)
    # Another chain of the same client: its people and orders are not this chain's.
    other = make_chain(client, name="Другая")
    stranger = make_people(client, "s", 1)
    enrol(other, stranger, Enrollment.Arm.HOLDOUT)
    order(client, stranger[0], "5000", ENROLLED + day)
    return chain
