"""A real Celery worker (Redis broker of `make test`) SIGKILLed mid-dispatch: after recovery
every message was sent at most once, and every message ends in a final state."""

from __future__ import annotations

import datetime as dt
import time
from importlib import import_module

import pytest
from django.apps import apps
from django.db.models import Count
from django.utils import timezone

from campaigns.authoring import channel_settings_save
from campaigns.dispatch import outbox_recover
from campaigns.models import CampaignSettings, Message
from campaigns.services import chains_tick
from campaigns.tasks import chains_tick_task
from clients.services import client_create
from consent import services as consent_services
from tests.job_recovery import kill
from tests.stubs.smsru import SmsRuStub

from .conftest import chain, consent, make_customers, register

pytestmark = [
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


class SlowSmsRu(SmsRuStub):
    """SMS.ru that takes its time over each request, so a worker can be killed mid-batch."""

    def handle(self, request):
        time.sleep(0.25)
        return super().handle(request)


@pytest.fixture
def seeded_client(db):
    from clients.models import Tier
    from consent.models import ConsentPurpose

    if not Tier.objects.exists():
        import_module("clients.migrations.0002_seed_tiers").seed_tiers(apps, None)
    if not ConsentPurpose.objects.exists():
        import_module("consent.migrations.0002_seed_purposes").seed(apps, None)
        consent_services._PURPOSES.clear()
    return client_create(name="Цепочки Воркер", tier_code="advanced")


def test_sigkill_mid_dispatch_never_sends_twice(start_worker, seeded_client, settings):
    client = seeded_client
    with SlowSmsRu() as stub:
        settings.SMSRU_BASE_URL = stub.base_url
        channel_settings_save(
            client=client,
            channel="sms",
            provider="smsru",
            sender="CVM-DEMO",
            credentials=stub.credentials,
        )
        CampaignSettings.objects.create(
            client=client,
            quiet_start=dt.time(0, 0),
            quiet_end=dt.time(0, 0),  # no quiet hours: the test may run at any hour
            max_per_day=None,
            max_per_week=None,
            sms_per_day=None,
            sms_per_week=None,
        )
        people = make_customers(client, 1500)
        consent(client, people, purpose="sms_marketing")
        chain(client, holdout_percent=0, steps=(("sms", 0, "always"),))
        register(client, people, timezone.now() - dt.timedelta(minutes=30))
        chains_tick(client.pk, dispatch=False)  # enrol and queue here; the worker sends
        assert Message.objects.for_client(client).filter(state="queued").count() == 1500

        worker = start_worker()
        chains_tick_task.delay(client.pk)
        deadline = time.monotonic() + 90
        while len(stub.sent) < 300 and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker died by itself"
            time.sleep(0.05)
        assert len(stub.sent) >= 300, "the worker never got going"
        kill(worker)
        accepted_before = len(stub.sent)
        assert accepted_before < 1500  # killed mid-dispatch
        in_flight = Message.objects.for_client(client).filter(state="sending").count()

        # Recovery: what was handed over but not recorded is never resent blindly.
        result = outbox_recover(now=timezone.now() + dt.timedelta(minutes=11))
        assert result["requeued"] == 0
        assert result["unknown"] == in_flight

        second = start_worker()
        chains_tick_task.delay(client.pk)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = Message.objects.for_client(client).filter(
                state__in=("queued", "deferred", "sending")
            )
            if not left.exists():
                break
            assert second.poll() is None
            time.sleep(0.2)
    states = dict(Message.objects.for_client(client).values_list("state").annotate(n=Count("pk")))
    assert set(states) <= {"sent", "failed"}, states
    deliveries = stub.deliveries()
    assert max(deliveries.values()) == 1  # nobody got the SMS twice
    assert sum(deliveries.values()) <= 1500
    assert states.get("sent", 0) + in_flight >= sum(deliveries.values())
