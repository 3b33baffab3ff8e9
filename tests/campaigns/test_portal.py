"""The portal's trigger chains: the list with both arms' counts and the SRM warning, a chain's
funnel as a chart and a table (the same counts as the API), viewers may look, another client's
user gets 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import TriggerChain
from clients.models import ClientMembership, Tier

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer_a(django_user_model, client_a):
    user = django_user_model.objects.create_user(username="viewer-a", password="pass-12345")
    ClientMembership.objects.create(user=user, client=client_a, role="viewer")
    return user


def test_the_list_and_the_funnel(client, viewer_a, client_a, outbox_a, api_a):
    TriggerChain.objects.for_client(client_a).filter(pk=outbox_a.pk).update(srm_p_value=0.002)
    client.force_login(viewer_a)
    listed = client.get(reverse("portal:campaigns", args=[client_a.slug]))
    assert listed.status_code == 200
    html = listed.content.decode()
    assert "Скучаем" in html
    assert "srm-warning" in html
    assert reverse("portal:campaigns", args=[client_a.slug]) in html  # the menu link
    ((chain, funnel),) = listed.context["rows"]
    assert funnel["enrolled"] == {"treatment": 8, "holdout": 2, "total": 10}
    assert (funnel["totals"]["sent"], funnel["totals"]["opened"], funnel["totals"]["clicked"]) == (
        4,
        2,
        1,
    )

    detail = client.get(reverse("portal:campaign", args=[client_a.slug, outbox_a.pk]))
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "vendor/chartjs/chart.umd.min.js" in page
    assert "portal/campaigns.js" in page
    assert 'id="funnel-data"' in page
    chart = detail.context["chart"]
    assert (chart["sent"], chart["opened"], chart["clicked"]) == ([4, 0], [2, 0], [1, 0])
    # The same numbers as the API.
    api_funnel = api_a.get(f"/api/v1/chains/{outbox_a.pk}/").json()["funnel"]
    assert api_funnel["steps"] == detail.context["funnel"]["steps"]
    assert api_funnel["enrolled"] == detail.context["funnel"]["enrolled"]
    assert "нет согласия: 2" in page


def test_times_in_the_clients_zone(client, portal_owner_a, client_a, chain_a):
    import datetime as dt

    client_a.time_zone = "Asia/Vladivostok"
    client_a.save(update_fields=["time_zone"])
    moment = dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC)
    TriggerChain.objects.for_client(client_a).filter(pk=chain_a.pk).update(activated_at=moment)
    client.force_login(portal_owner_a)
    page = client.get(reverse("portal:campaign", args=[client_a.slug, chain_a.pk])).content
    assert "01.12.2026 10:30" in page.decode()


def test_other_clients_user_gets_404(client, django_user_model, client_b, client_a, chain_a):
    other = django_user_model.objects.create_user(username="owner-b", password="pass-12345")
    ClientMembership.objects.create(user=other, client=client_b, role="owner")
    client.force_login(other)
    assert client.get(reverse("portal:campaigns", args=[client_a.slug])).status_code == 404
    assert (
        client.get(reverse("portal:campaign", args=[client_a.slug, chain_a.pk])).status_code == 404
    )
    assert (
        client.get(reverse("portal:campaign", args=[client_b.slug, chain_a.pk])).status_code == 404
    )


def test_hidden_when_the_tier_has_no_chains(client, portal_owner_a, client_a):
    Tier.objects.filter(pk=client_a.tier_id).update(max_trigger_chains=0)
    client.force_login(portal_owner_a)
    dashboard = client.get(reverse("portal:dashboard", args=[client_a.slug])).content.decode()
    assert reverse("portal:campaigns", args=[client_a.slug]) not in dashboard
    assert client.get(reverse("portal:campaigns", args=[client_a.slug])).status_code == 404
