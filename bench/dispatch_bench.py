"""Dispatch rates for bench/campaigns.py: queued messages drained by the real dispatcher through
the real clients into a local SMTP server (aiosmtpd) and the SMS.ru stub, each in a child
process (the provider is another machine: its CPU and memory are not ours, though it shares
the 2 cores)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from measure import PeakRss
from ports import free_ports

from campaigns.authoring import channel_settings_save
from campaigns.dispatch import outbox_dispatch
from campaigns.engine import TickReport
from campaigns.models import (
    CampaignSettings,
    ChainStep,
    Enrollment,
    Message,
    MessageTemplate,
    TriggerChain,
)
from clients.models import Client
from clients.services import client_create

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def providers_process():
    """SMS.ru stub and the SMTP sink in a child process (python -m tests.stubs)."""
    ports = free_ports(11)
    base = ports[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.stubs", "--quiet", "--smsru-port", str(ports[1]),
         "--smtp-port", str(ports[2]), "--yandex-port", str(ports[3]), "--vk-port", str(ports[4]),
         "--mytarget-port", str(ports[5]), "--unisender-port", str(ports[6]),
         "--sendsay-port", str(ports[7]), "--smsc-port", str(ports[8]),
         "--rustore-port", str(ports[9]), "--webpush-port", str(ports[10])],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in process.stdout:
            if "running" in line:
                break
        yield f"http://127.0.0.1:{ports[1]}/", f"smtp://127.0.0.1:{ports[2]}", base
    finally:
        process.terminate()
        process.wait(timeout=20)


def queue(client: Client, channel: str, count: int) -> None:
    """``count`` queued messages on ``channel`` (one enrolment each), written by SQL."""
    template = MessageTemplate.objects.create(
        client=client, name=f"{channel} bench", channel=channel,
        subject="Скидка" if channel == "email" else "",
        body="<p>Анна, для вас скидка 10 %: <a href='https://shop.example/s'>в магазин</a></p>"
        if channel == "email" else "Анна, скидка 10% до воскресенья: https://127.0.0.1/t/c/x",
    )  # fmt: skip
    chain = TriggerChain.objects.create(
        client=client, name=f"{channel} bench", trigger="registration", status="paused"
    )
    step = ChainStep.objects.create(chain=chain, position=1, channel=channel, template=template)
    now = timezone.now()
    address = "'user' || c.id || '@example.ru'" if channel == "email" else "c.phone"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Enrollment._meta.db_table} (client_id, chain_id, customer_id, arm, "  # noqa: S608
            "state, exit_reason, enrolled_at) SELECT c.client_id, %s, c.id, 'treatment', "
            "'completed', '', %s FROM clients_customer c WHERE c.client_id = %s "
            "ORDER BY c.id LIMIT %s",
            [chain.pk, now, client.pk, count],
        )
        cursor.execute(
            f"INSERT INTO {Message._meta.db_table} (client_id, enrollment_id, step_id, chain_id, "  # noqa: S608
            "customer_id, channel, arm, transactional, priority, address, subject, body, state, "
            "reason, provider, provider_message_id, attempts, outcome_unknown, due_at, "
            "created_at) SELECT e.client_id, e.id, %s, e.chain_id, e.customer_id, %s, "
            f"'treatment', false, 100, {address}, %s, %s, 'queued', '', '', '', 0, false, %s, %s "
            f"FROM {Enrollment._meta.db_table} e JOIN clients_customer c ON c.id = e.customer_id "
            "WHERE e.chain_id = %s",
            [step.pk, channel, template.subject, template.body, now, now, chain.pk],
        )
        cursor.execute(f"ANALYZE {Message._meta.db_table}")


def drain(client: Client, channel: str, label: str) -> None:
    total = Message.objects.for_client(client).filter(channel=channel, state="queued").count()
    report = TickReport()
    started = time.perf_counter()
    with PeakRss() as rss:
        outbox_dispatch(client.pk, None, report)
    seconds = time.perf_counter() - started
    sent = report.dispatch.get("sent", 0)
    print(
        f"  {label}: {total:,} queued, {sent:,} sent in {seconds:.1f} s = "
        f"{sent / seconds:,.0f}/s ({report.dispatch}), peak RSS +{rss.delta_mib:.0f} MiB"
    )


def dispatch_rates(args) -> None:
    from consent.models import ConsentPurpose, ConsentRecord

    client = client_create(name=f"Бенчмарк отправки {time.time_ns()}", tier_code="enterprise")
    size = max(args.emails, args.sms, args.drain)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_customer (client_id, external_id, email, phone, first_name, "
            "last_name, city, attributes, first_seen, source, created_at, updated_at) "
            "SELECT %s, 'c' || i, 'user' || i || '@example.ru', '+7916' || lpad(i::text, 7, '0'), "
            "'Анна', '', 'Москва', '{}', now(), 'bench', now(), now() "
            "FROM generate_series(1, %s) AS i",
            [client.pk, size],
        )
        for code in ("email_marketing", "sms_marketing"):
            purpose = ConsentPurpose.objects.get(code=code)
            cursor.execute(
                "INSERT INTO consent_consentrecord (client_id, customer_id, subject_id, "
                "purpose_id, text_id, action, at, source, user_agent, url, form_id, details, "
                "prev_hash, hash, recorded_at) SELECT client_id, id, '', %s, NULL, %s, "
                "now() - interval '1 day', 'api', '', '', '', '{}', '', md5(id::text), now() "
                "FROM clients_customer WHERE client_id = %s",
                [purpose.pk, ConsentRecord.Action.GRANTED, client.pk],
            )
        cursor.execute("ANALYZE clients_customer; ANALYZE consent_consentrecord")
    CampaignSettings.objects.create(
        client=client, quiet_start=dt.time(0), quiet_end=dt.time(0), max_per_day=None,
        max_per_week=None, email_per_day=None, email_per_week=None, sms_per_day=None,
        sms_per_week=None,
    )  # fmt: skip
    with providers_process() as (smsru_url, email_url, _base):
        host, port = email_url.removeprefix("smtp://").split(":")
        with override_settings(
            SMSRU_BASE_URL=smsru_url, EMAIL_HOST=host, EMAIL_PORT=int(port),
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_USE_TLS=False,
            EMAIL_USE_SSL=False, EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD="",
        ):  # fmt: skip
            channel_settings_save(
                client=client, channel="sms", provider="smsru", sender="CVM-DEMO",
                credentials={"api_id": "test-smsru-api-id"},
            )  # fmt: skip
            print(f"\nDispatch (machine shared with the provider processes; {settings.TIME_ZONE})")
            queue(client, "email", args.emails)
            drain(client, "email", "email → local SMTP server (aiosmtpd)")
            queue_more = args.sms
            queue(client, "sms", queue_more)
            drain(client, "sms", "SMS → SMS.ru stub, 100 numbers a request")
            if args.drain > args.sms:
                Message.objects.for_client(client).filter(channel="sms").delete()
                Enrollment.objects.for_client(client).filter(chain__name="sms bench").delete()
                TriggerChain.objects.for_client(client).filter(name="sms bench").delete()
                MessageTemplate.objects.for_client(client).filter(name="sms bench").delete()
                queue(client, "sms", args.drain)
                drain(client, "sms", f"drain of {args.drain:,} SMS (memory stays bounded)")
