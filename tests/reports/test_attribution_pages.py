"""The attribution pages: the admin's comparison (the staff member's clients only, the same 404
for a foreign or missing client) and the portal's page with its chart data and table."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from .test_attribution_api import journeys  # noqa: F401  (a fixture)

PERIOD = {"date_from": "2026-03-01", "date_to": "2026-03-31"}


def _compare(client_id):
    return reverse("admin:reports_attributionreport_compare", args=[client_id])


@pytest.mark.usefixtures("journeys")
def test_admin_list_shows_only_the_managers_clients(client, account_manager, client_a, client_b):
    client.force_login(account_manager)
    response = client.get(reverse("admin:reports_attributionreport_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert client_a.name in page
    assert _compare(client_a.pk) in page
    assert client_b.name not in page


@pytest.mark.usefixtures("journeys")
def test_admin_compare_page_shows_the_models_side_by_side(client, account_manager, client_a):
    client.force_login(account_manager)
    response = client.get(_compare(client_a.pk), PERIOD)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="attribution-table"' in page
    assert 'data-key="email"' in page
    assert 'data-key="direct/none"' in page
    assert 'id="total-revenue">1\xa0700,00 ₽<' in page  # Russian grouping
    table = response.context["table"]
    email = next(r for r in table["rows"] if r["key"] == "email")
    # Anna's journey: google/cpc 10 days and the email click 1 day before her 1000 ₽ order;
    # time decay: 2^(−1/7) / (2^(−10/7) + 2^(−1/7)) = 70.9136 %; two touches: 50/50.
    assert [str(c["revenue"]) for c in email["cells"]] == [
        "1000.00",
        "0.00",
        "500.00",
        "709.14",
        "500.00",
    ]


def test_admin_compare_page_answers_a_foreign_and_a_missing_client_alike(
    client, account_manager, client_b
):
    client.force_login(account_manager)
    foreign = client.get(_compare(client_b.pk))
    missing = client.get(_compare(987654))
    assert foreign.status_code == missing.status_code == 404
    assert client_b.name not in foreign.content.decode()


@pytest.mark.usefixtures("journeys")
def test_admin_compare_page_shows_form_errors(client, account_manager, client_a):
    client.force_login(account_manager)
    response = client.get(
        _compare(client_a.pk), {"date_from": "2026-03-31", "date_to": "2026-03-01"}
    )
    assert response.status_code == 200
    assert response.context["report"] is None
    assert "date_to" in response.context["form"].errors


@pytest.mark.usefixtures("journeys")
def test_admin_compare_page_refuses_dates_out_of_range(client, account_manager, client_a):
    client.force_login(account_manager)
    response = client.get(
        _compare(client_a.pk), {"date_from": "0001-01-01", "date_to": "0001-01-02"}
    )
    assert response.status_code == 200
    assert response.context["report"] is None
    assert "date_from" in response.context["form"].errors


def test_admin_is_for_staff_only(client, portal_owner_a, client_a):
    client.force_login(portal_owner_a)
    response = client.get(_compare(client_a.pk))
    assert response.status_code == 302  # to the admin's login
    assert "login" in response["Location"]


@pytest.mark.usefixtures("journeys")
def test_portal_page_has_the_chart_data_and_the_table(client, portal_owner_a, client_a):
    client.force_login(portal_owner_a)
    url = reverse("portal:attribution", kwargs={"client_slug": client_a.slug})
    response = client.get(url, PERIOD)
    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="{url}"' in page  # in the nav
    assert 'id="attribution-chart"' in page
    assert "portal/attribution.js" in page
    assert "<script>" not in page  # CSP: no inline scripts
    start = page.index('<script id="attribution-data" type="application/json">')
    data = json.loads(page[start:].split(">", 1)[1].split("</script>", 1)[0])
    assert len(data["series"]) == 5
    index = data["labels"].index("email")
    last_click = next(s for s in data["series"] if s["model"] == "last_click")
    assert last_click["data"][index] == 1000.0
    assert sum(last_click["data"]) == 1700.0
    assert 'data-key="google/cpc"' in page

    by_campaign = client.get(url, {**PERIOD, "by": "campaign"})
    assert "Брошенная корзина" in by_campaign.content.decode()


@pytest.mark.usefixtures("journeys")
def test_portal_page_shows_bad_dates_without_a_report(client, portal_owner_a, client_a):
    client.force_login(portal_owner_a)
    url = reverse("portal:attribution", kwargs={"client_slug": client_a.slug})
    response = client.get(url, {"date_from": "nonsense", "date_to": "2026-03-01"})
    assert response.status_code == 200
    assert response.context["report"] is None
    assert 'id="attribution-chart"' not in response.content.decode()


def test_portal_page_is_404_for_another_clients_user(client, portal_owner_a, client_b):
    client.force_login(portal_owner_a)
    url = reverse("portal:attribution", kwargs={"client_slug": client_b.slug})
    assert client.get(url, PERIOD).status_code == 404
