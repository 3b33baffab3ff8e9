"""Trigger-chain benchmark: the enrolment tick over a large base, and dispatch rates.

    scripts/with_test_services.sh .venv/bin/python bench/campaigns.py [--size 1000000]
        [--emails 20000] [--sms 50000] [--drain 200000]

(or ``make bench-campaigns``). Set-up, not timed: N customers (email, phone), email consent for
95 %, one paid order each spread over two years (so a thin slice crossed "30 days without a
purchase" in the last two days), a churn score for everyone (about 30 % at ≥ 0.6), and a
registration event in the last hour for 0.5 %. Three active chains: welcome (registration),
30 days without a purchase, churn probability ≥ 0.6.

Timed:
- the enrolment tick (``campaigns.engine.chains_enrol``): the first one, which enrols everyone
  the state trigger holds (a big insert), and a steady-state one (nobody new, the usual
  minute); goal ≤ 10 s at 1M. Side by side: the naive way, a per-customer ORM loop checking
  each chain's trigger and re-entry, over the first 10k customers, extrapolated to N, as a
  ratio;
- dispatch: queued emails into a real local SMTP server (aiosmtpd, another process) through the
  platform's SMTP client, and queued SMS into the SMS.ru stub (another process), in messages
  per second (goals: ≥ 500 emails/s, ≥ 2,000 SMS/s), with this process's peak RSS while
  ``--drain`` SMS drain (bounded: the outbox is read batch by batch).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from measure import PeakRss  # noqa: E402

from campaigns import engine  # noqa: E402
from campaigns.models import (  # noqa: E402
    ChainStep,
    Enrollment,
    MessageTemplate,
    TriggerChain,
)
from clients.models import Client, Customer, Event, Order  # noqa: E402
from clients.services import client_create  # noqa: E402
from consent.models import ConsentPurpose, ConsentRecord  # noqa: E402
from consent.services import consent_text_create, consent_text_publish  # noqa: E402
from segments.models import CustomerScore  # noqa: E402
from tests.consent.conftest import TEXT_PARTS  # noqa: E402


def setup(size: int) -> Client:
    client = client_create(name=f"Бенчмарк цепочек {size} {time.time_ns()}", tier_code="enterprise")
    texts = {}
    for purpose in ConsentPurpose.objects.all():
        text = consent_text_create(
            client=client, purpose_code=purpose.code, title=purpose.name, **TEXT_PARTS
        )
        texts[purpose.code] = consent_text_publish(text=text)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_customer (client_id, external_id, email, phone, first_name, "
            "last_name, city, attributes, first_seen, source, created_at, updated_at) "
            "SELECT %s, 'c' || i, 'user' || i || '@example.ru', '+7916' || lpad(i::text, 7, '0'), "
            "'Анна', '', 'Москва', '{}', now() - interval '800 days', 'bench', now(), now() "
            "FROM generate_series(1, %s) AS i",
            [client.pk, size],
        )
        # One paid order each, placed uniformly over the last 730 days.
        cursor.execute(
            "INSERT INTO clients_order (client_id, external_id, customer_id, placed_at, amount, "
            "status, channel, items, created_at, updated_at) "
            "SELECT client_id, 'o' || id, id, now() - ((id * 7919) %% 730) * interval '1 day' "
            "- ((id * 104729) %% 86400) * interval '1 second', 1500, 'paid', '', '[]', now(), "
            "now() FROM clients_customer WHERE client_id = %s",
            [client.pk],
        )
        cursor.execute(
            "INSERT INTO segments_customerscore (customer_id, client_id, frequency, monetary, "
            "rfm_segment, lifecycle_stage, at_risk, churn_probability, computed_at) "
            "SELECT id, client_id, 1, 1500, '', 'Active', false, ((id * 2654435761) %% 1000) "
            "/ 1150.0, now() FROM clients_customer WHERE client_id = %s",
            [client.pk],
        )
        cursor.execute(
            "INSERT INTO clients_event (client_id, external_id, customer_id, type, occurred_at, "
            "properties, utm_source, utm_medium, utm_campaign, created_at, updated_at) "
            "SELECT client_id, 'r' || id, id, 'registration', now() - interval '20 minutes', "
            "'{}', '', '', '', now(), now() FROM clients_customer "
            "WHERE client_id = %s AND id %% 200 = 0",
            [client.pk],
        )
        purpose = ConsentPurpose.objects.get(code="email_marketing")
        cursor.execute(
            "INSERT INTO consent_consentrecord (client_id, customer_id, subject_id, purpose_id, "
            "text_id, action, at, source, user_agent, url, form_id, details, prev_hash, hash, "
            "recorded_at) SELECT client_id, id, '', %s, %s, %s, now() - interval '1 day', "
            "'api', '', '', '', '{}', '', md5(id::text), now() FROM clients_customer "
            "WHERE client_id = %s AND id %% 20 <> 0",
            [purpose.pk, texts["email_marketing"].pk, ConsentRecord.Action.GRANTED, client.pk],
        )
        cursor.execute(
            "ANALYZE clients_customer; ANALYZE clients_order; ANALYZE clients_event; "
            "ANALYZE segments_customerscore; ANALYZE consent_consentrecord"
        )
    template = MessageTemplate.objects.create(
        client=client,
        name="Письмо",
        channel="email",
        subject="Привет",
        body="<p>{{ first_name }}</p>",
    )
    activated = timezone.now() - dt.timedelta(days=3)
    for name, trigger in (
        ("Приветственная серия", {"trigger": "registration"}),
        ("30 дней без покупки", {"trigger": "days_since_purchase", "trigger_days": 30}),
        ("Риск оттока", {"trigger": "churn_probability", "trigger_churn_probability": 0.6}),
    ):
        chain = TriggerChain.objects.create(
            client=client, name=name, status="active", activated_at=activated, **trigger
        )
        ChainStep.objects.create(chain=chain, position=1, channel="email", template=template)
    return client


def naive_enrol_seconds(client: Client, sample: int) -> float:
    """The per-customer ORM way: for each customer, each chain's trigger and re-entry check."""
    chains = list(TriggerChain.objects.for_client(client).filter(status="active"))
    now = timezone.now()
    customers = list(Customer.objects.for_client(client).order_by("pk")[:sample])
    started = time.perf_counter()
    for customer in customers:
        for chain in chains:
            if (
                Enrollment.objects.for_client(client)
                .filter(chain=chain, customer=customer)
                .exists()
            ):
                continue
            if chain.trigger == "registration":
                ok = (
                    Event.objects.for_client(client)
                    .filter(
                        customer=customer,
                        type="registration",
                        occurred_at__gte=now - dt.timedelta(days=2),
                    )
                    .exists()
                )
            elif chain.trigger == "days_since_purchase":
                last = (
                    Order.objects.for_client(client)
                    .filter(customer=customer, status="paid")
                    .order_by("-placed_at")
                    .values_list("placed_at", flat=True)
                    .first()
                )
                ok = last is not None and now - dt.timedelta(days=32) <= last <= now - dt.timedelta(
                    days=30
                )
            else:
                score = CustomerScore.objects.for_client(client).filter(customer=customer).first()
                ok = score is not None and (score.churn_probability or 0) >= 0.6
            _ = ok
    return time.perf_counter() - started


def timed_enrol(client: Client, label: str) -> float:
    report = engine.TickReport()
    started = time.perf_counter()
    with PeakRss() as rss:
        engine.chains_enrol(client.pk, timezone.now(), report)
    seconds = time.perf_counter() - started
    enrolled = sum(v["treatment"] + v["holdout"] for v in report.enrolled.values())
    names = dict(TriggerChain.objects.for_client(client).values_list("pk", "name"))
    shown = "; ".join(
        f"{names[pk]}: {arms['treatment']:,} + {arms['holdout']:,} holdout"
        for pk, arms in report.enrolled.items()
    )
    print(
        f"  {label}: {seconds:.2f} s, enrolled {enrolled:,} "
        f"({shown}), "
        f"peak RSS +{rss.delta_mib:.0f} MiB"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=10_000)
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--sms", type=int, default=50_000)
    parser.add_argument("--drain", type=int, default=200_000)
    parser.add_argument("--skip-dispatch", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {connection.vendor} "
          f"{connection.cursor().connection.info.server_version}")  # fmt: skip
    print(f"\nEnrolment tick, {args.size:,} customers, 3 active chains")
    t0 = time.perf_counter()
    client = setup(args.size)
    print(f"  set-up (not timed): {time.perf_counter() - t0:.1f} s")
    first = timed_enrol(client, "first tick (state trigger enrols its whole slice)")
    steady = timed_enrol(client, "steady tick (nobody new)")
    naive = naive_enrol_seconds(client, args.naive_sample)
    naive_full = naive * args.size / args.naive_sample
    print(
        f"  naive per-customer ORM loop: {naive:.2f} s for {args.naive_sample:,} customers, "
        f"≈ {naive_full:,.0f} s for {args.size:,}; set-based steady tick is "
        f"{naive_full / steady:,.0f}× faster, first tick {naive_full / first:,.0f}×"
    )
    if not args.skip_dispatch:
        from dispatch_bench import dispatch_rates

        dispatch_rates(args)


if __name__ == "__main__":
    main()
