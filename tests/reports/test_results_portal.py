"""The portal's results: a chain's arms, uplift chart data and guards on the campaign page, the
month roll-up with the benchmark on the campaigns list; another client's user gets 404."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from campaigns.models import Enrollment

from .results_data import build_results_data, enrol, make_chain, make_people

pytestmark = pytest.mark.django_db


def test_campaign_page_shows_results_and_guards(client, portal_owner_a, client_a):
    chain = build_results_data(client_a)
    client.force_login(portal_owner_a)
    url = reverse("portal:campaign", args=[client_a.slug, chain.pk])
    page = client.get(url, {"from": "2026-03-01", "to": "2026-03-31"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="chain-results"' in html
    assert "1550.00" in html
    assert "1050.00" in html
    assert page.context["uplift_chart"]["point"][0] == pytest.approx(25.0)
    assert page.context["uplift_chart"]["interval"][0] == pytest.approx([-3.988, 53.988], abs=1e-3)
    assert 'id="uplift-data"' in html
    assert page.context["uplift_pp"]["absolute"] == pytest.approx(25.0)
    assert "portal/results.js" in html
    assert "<script>" not in html  # data through json_script only (CSP)
    bad = client.get(url, {"from": "2026-03-31", "to": "2026-03-01"})
    assert "period-error" in bad.content.decode()
    assert bad.context["results"]["treatment"]["n"] == 21  # everyone, not a broken period


def test_guards_are_shown(client, portal_owner_a, client_a):
    chain = make_chain(client_a, holdout_percent=10)
    enrol(chain, make_people(client_a, "t", 60), Enrollment.Arm.TREATMENT)
    enrol(chain, make_people(client_a, "h", 60), Enrollment.Arm.HOLDOUT)
    client.force_login(portal_owner_a)
    html = client.get(reverse("portal:campaign", args=[client_a.slug, chain.pk])).content.decode()
    assert "srm-warning" in html
    assert "not-enough-data" in html
    assert "verdict-sample_ratio_mismatch" in html
    # People who entered yesterday: their window is open, no verdict yet.
    fresh = make_chain(client_a, name="Свежая")
    yesterday = dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=1)
    enrol(fresh, make_people(client_a, "f", 3), Enrollment.Arm.TREATMENT, at=yesterday)
    html = client.get(reverse("portal:campaign", args=[client_a.slug, fresh.pk])).content.decode()
    assert "verdict-running" in html
    assert "вывод после" in html


def test_month_rollup_on_the_list(client, portal_owner_a, client_a):
    build_results_data(client_a)
    client.force_login(portal_owner_a)
    page = client.get(reverse("portal:campaigns", args=[client_a.slug]), {"month": "2026-03"})
    assert page.status_code == 200
    html = page.content.decode()
    assert page.context["rollup"]["triggered_revenue"] == "1500.00"
    assert 'id="share-data"' in html
    chart = page.context["share_chart"]
    assert chart["labels"] == ["2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
    assert chart["benchmark"] == [22.4] * 6
    assert chart["share"][-1] == pytest.approx(21.43)


def test_another_clients_user_gets_404(client, django_user_model, client_a, client_b):
    from clients.models import ClientMembership

    chain = build_results_data(client_a)
    user = django_user_model.objects.create_user(username="owner-b", password="pass-12345")
    ClientMembership.objects.create(user=user, client=client_b, role="owner")
    client.force_login(user)
    assert client.get(reverse("portal:campaign", args=[client_b.slug, chain.pk])).status_code == 404
