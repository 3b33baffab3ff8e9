"""Demo trigger chains for `make run`: each demo client gets the agency's presets running
(welcome series, 30 days without a purchase, the churn win-back; the cascade too where the tier
has omnichannel triggers), SMS.ru and RuStore push settings with the loopback stubs' demo
credentials (`make run` points SMSRU_BASE_URL and RUSTORE_BASE_URL at the stubs; email goes to
the local SMTP sink through EMAIL_URL), push devices for the customers who allowed push, and a
few registrations of the last hours so the welcome series has someone to greet; the chains
are given four days of history so the first run shows their later SMS and push steps too.
Celery beat runs the chains every minute: messages appear in the admin's outbox, in var/mail/
and in the SMS stub's log; the sink's simulated readers open and click a share of the emails,
which come back as opens and clicks."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
from django.db import transaction
from django.utils import timezone

from campaigns.authoring import channel_settings_save, template_update
from campaigns.models import CampaignSettings, MessageTemplate, PushDevice, TriggerChain
from campaigns.presets import EMAIL_FOOTER, chain_from_preset
from campaigns.services import chains_tick
from clients.models import Client, Customer, Event
from clients.tiers import tier_has
from consent.purposes import PUSH_MARKETING
from consent.selectors import customers_consented_for

# The stubs' demo credentials (tests/stubs: smsru.API_ID, rustore.PROJECT_ID/SERVICE_TOKEN).
DEMO_SMSRU = {"api_id": "test-smsru-api-id"}
DEMO_RUSTORE = {"project_id": "test-project", "service_token": "test-rustore-service-token"}
PRESETS = ("welcome", "no_purchase_30", "churn_winback")
REGISTRATIONS_SHARE = 0.01


def _recent_registrations(client: Client, rng: np.random.Generator) -> int:
    now = timezone.now()
    ids = list(Customer.objects.for_client(client).values_list("pk", flat=True))
    chosen = [pk for pk in ids if rng.random() < REGISTRATIONS_SHARE]
    Event.objects.bulk_create(
        [
            Event(
                client=client,
                customer_id=pk,
                external_id=f"demo-registration-{pk}",
                type=Event.Type.REGISTRATION,
                occurred_at=now - dt.timedelta(minutes=int(rng.integers(5, 600))),
                properties={"source": "demo"},
            )
            for pk in chosen
        ],
        ignore_conflicts=True,
    )
    return len(chosen)


def _push_devices(client: Client) -> int:
    allowed = customers_consented_for(Customer.objects.for_client(client), PUSH_MARKETING)
    devices = []
    for pk in allowed.values_list("pk", flat=True):
        token = f"demo-rustore-token-{client.pk}-{pk:08d}"
        devices.append(
            PushDevice(
                client=client,
                customer_id=pk,
                provider="rustore",
                token=token,
                token_hash=hashlib.sha256(token.encode()).hexdigest(),  # as push_device_register
            )
        )
    PushDevice.objects.bulk_create(devices, ignore_conflicts=True)
    return len(devices)


def demo_campaigns(*, client: Client, seed: int = 42) -> list[TriggerChain]:
    """Create (once) the client's demo chains and channels; returns the chains."""
    if TriggerChain.objects.for_client(client).exists():
        return list(TriggerChain.objects.for_client(client))
    rng = np.random.default_rng([seed, client.pk, 12])
    with transaction.atomic():
        # No quiet hours in the demo, so a first run shows mail at any hour of the day; a real
        # client keeps the default 21:00-09:00 in the recipient's zone.
        CampaignSettings.objects.update_or_create(
            client=client, defaults={"quiet_start": dt.time(0, 0), "quiet_end": dt.time(0, 0)}
        )
        presets = list(PRESETS)
        if tier_has(client=client, feature="omnichannel"):
            channel_settings_save(
                client=client, channel="sms", provider="smsru", sender="CVM-DEMO",
                credentials=DEMO_SMSRU, source="cli",
            )  # fmt: skip
            channel_settings_save(
                client=client, channel="push", provider="rustore", credentials=DEMO_RUSTORE,
                source="cli",
            )  # fmt: skip
            _push_devices(client)
            presets.append("cascade")
        _recent_registrations(client, rng)
        chains = [chain_from_preset(client, code, activate=True, source="cli") for code in presets]
    # The presets cannot know the client's shop: the demo's letters link to a made-up one, so
    # the simulated readers have a link to click (tracked through /t/c/).
    shop_link = (
        f'<p><a href="https://{client.slug}.example.ru/catalog?utm_source=email">'
        "Перейти в каталог</a></p>"
    )
    for template in MessageTemplate.objects.for_client(client).filter(channel="email"):
        if "/catalog" not in template.body:
            template_update(
                template=template,
                body=template.body.replace(EMAIL_FOOTER, shop_link + EMAIL_FOOTER),
            )
    # A few days of history: the chains started 5 days ago and their first tick ran 4 days ago
    # (enrolments and first steps), so the first run's ticks already send the later steps (the
    # win-back's SMS after 72 hours, its push after 96) besides today's welcome emails.
    started = timezone.now() - dt.timedelta(days=5)
    TriggerChain.objects.for_client(client).filter(pk__in=[c.pk for c in chains]).update(
        activated_at=started
    )
    chains_tick(client.pk, now=started + dt.timedelta(days=1), dispatch=False)
    return chains
