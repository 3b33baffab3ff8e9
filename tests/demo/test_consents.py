"""The demo seed gives every client published texts, a banner site and a consent history."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from clients.models import Client, Customer
from consent.models import ConsentPurpose, ConsentRecord, ConsentSite, ConsentText
from consent.selectors import customers_consented_for
from consent.services import consent_log_verify

pytestmark = pytest.mark.django_db


def test_seed_demo_writes_a_verifiable_consent_history(capsys):
    call_command("seed_demo", "--customers", "60")
    out = capsys.readouterr().out
    assert "записей о согласиях" in out
    purposes = ConsentPurpose.objects.count()
    for client in Client.objects.all():
        published = ConsentText.objects.for_client(client).filter(status="published").count()
        assert published == purposes
        assert ConsentSite.objects.for_client(client).filter(is_active=True).exists()
        records = ConsentRecord.objects.for_client(client)
        assert records.filter(action="granted").count() > 0
        assert consent_log_verify(client=client).ok
        consented = customers_consented_for(Customer.objects.for_client(client), "ad_audiences")
        share = consented.count() / Customer.objects.for_client(client).count()
        assert 0.3 < share < 0.85
    # Re-running does not rewrite the history.
    before = ConsentRecord.objects.unscoped().count()
    call_command("seed_demo", "--customers", "60")
    assert ConsentRecord.objects.unscoped().count() == before
