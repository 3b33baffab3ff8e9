"""The dashboard shows what the client's tier offers, and only what the platform has built:
features of the agency's offer that do not exist yet are never shown as the client's."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from clients.models import ClientMembership, Tier
from clients.services import client_create
from clients.tiers import FEATURES, LIMITS, tier_offer

pytestmark = pytest.mark.django_db

# Not built yet, in both languages the portal speaks (trigger chains and omnichannel triggers
# are built since the campaigns app).
NOT_BUILT = {
    "ru": ("Programmatic", "DMP", "MMM"),
    "en": ("Programmatic", "DMP", "MMM"),
}


def tier_table(html: str) -> str:
    match = re.search(r'<table id="tier-offer">(.*?)</table>', html, re.S)
    assert match, "the dashboard has its tier table"
    return match.group(1)


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(username="owner", password="pass-12345")


@pytest.mark.parametrize("tier_code", ["foundation", "advanced", "enterprise"])
@pytest.mark.parametrize("language", ["ru", "en"])
def test_each_tiers_dashboard_shows_no_feature_that_does_not_exist_yet(
    client, owner, tier_code, language
):
    customer = client_create(name=f"Клиент {tier_code}", tier_code=tier_code)
    ClientMembership.objects.create(user=owner, client=customer, role="owner")
    client.force_login(owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language

    response = client.get(reverse("portal:dashboard", args=[customer.slug]))

    assert response.status_code == 200
    table = tier_table(response.content.decode())
    for word in NOT_BUILT[language]:
        assert word.lower() not in table.lower(), (tier_code, word)
    # What is built is there, with the tier's answer.
    with translation.override(language):
        for item in tier_offer(client=customer):
            assert str(item.title) in table
    shown = {item.code for item in response.context["tier_offer"]}
    assert shown == {
        "segments",
        "trigger_chains",
        "predictive",
        "omnichannel",
        "value_bidding",
        "cohorts",
        "incrementality",
    }


def test_the_offer_is_read_from_the_tier_rows():
    foundation = client_create(name="Малый", tier_code="foundation")
    enterprise = client_create(name="Большой", tier_code="enterprise")

    small = {item.code: item for item in tier_offer(client=foundation)}
    big = {item.code: item for item in tier_offer(client=enterprise)}

    assert small["segments"].limit == Tier.objects.get(code="foundation").max_segments == 5
    assert big["segments"].limit is None  # unlimited
    assert not small["predictive"].available
    assert small["predictive"].upgrade == "Advanced CVM"
    assert big["predictive"].available
    assert big["predictive"].upgrade == ""
    # Turning a flag on in the admin shows at once.
    Tier.objects.filter(code="foundation").update(cohorts=True)
    foundation.refresh_from_db()
    foundation.tier.refresh_from_db()
    assert {i.code: i for i in tier_offer(client=foundation)}["cohorts"].available


def test_only_built_features_and_limits_are_offered():
    customer = client_create(name="Клиент", tier_code="enterprise")
    offered = {item.code for item in tier_offer(client=customer)}
    assert offered == {code for code, f in FEATURES.items() if f.built} | {
        code for code, lim in LIMITS.items() if lim.built
    }
    assert "programmatic" not in offered
    assert {"omnichannel", "trigger_chains"} <= offered  # built with the campaigns app
    assert "incrementality" in offered  # built with the reports app (#13)


def test_russian_dashboard_translates_the_tier_table(client, owner):
    customer = client_create(name="Клиент", tier_code="foundation")
    ClientMembership.objects.create(user=owner, client=customer, role="owner")
    client.force_login(owner)

    table = tier_table(
        client.get(reverse("portal:dashboard", args=[customer.slug])).content.decode()
    )

    assert "Ставки по ценности клиента" in table
    assert "с тарифа Advanced CVM" in table
    assert "до 5" in table
